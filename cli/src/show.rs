//! Text renderings of analyses: the `list` table and the `get` description.

use std::fmt::Write;

use golftracker_crds::analysis::{AnalysisResult, SwingAnalysis, SwingEvent, condition};
use golftracker_crds::conditions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// A table like `kubectl get`: left-aligned columns, three spaces apart.
pub fn table(analyses: &[SwingAnalysis], now: Timestamp) -> String {
    let header = [
        "NAME",
        "STACK",
        "PHASE",
        "TEMPO",
        "BACKSWING",
        "DOWNSWING",
        "AGE",
    ];
    let rows: Vec<[String; 7]> = analyses
        .iter()
        .map(|a| {
            let result = result(a);
            [
                a.name_any(),
                a.spec.stack_ref.name.clone(),
                phase(a).to_owned(),
                number(result.and_then(|r| r.tempo_ratio), 2, ""),
                number(result.and_then(|r| r.backswing_ms), 0, "ms"),
                number(result.and_then(|r| r.downswing_ms), 0, "ms"),
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or_else(|| "<unknown>".into(), |t| age(t.0, now)),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(text.join("   ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Everything a golfer or operator wants to know about one analysis.
pub fn describe(a: &SwingAnalysis) -> String {
    let mut out = String::new();
    let spec = &a.spec;
    let status = a.status.clone().unwrap_or_default();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{:<16}{value}", format!("{name}:"));
    };
    field("Name", &a.name_any());
    field("Namespace", &a.namespace().unwrap_or_default());
    field("Stack", &spec.stack_ref.name);
    field("Video", &spec.video);
    let golfer = &spec.golfer;
    let club = golfer
        .club
        .as_deref()
        .map_or(String::new(), |c| format!(", {c}"));
    field(
        "Golfer",
        &format!("{} ({}{club})", golfer.user_id, golfer.handedness.as_str()),
    );
    field("Camera view", spec.camera_view.as_str());
    field("Retention", &format!("{:?}", spec.retention));
    field("Phase", phase(a));
    if let Some(position) = status.queue_position {
        field("Queue position", &position.to_string());
    }
    if let Some(job) = &status.job_name {
        field("Job", &format!("{job} (attempts {})", status.attempts));
    }
    if let Some(failed) = conditions::find(&status.conditions, condition::FAILED)
        .filter(|c| c.status == conditions::TRUE)
    {
        field("Failure", &condition_text(failed));
    } else if !status.phase.is_finished() {
        // Why it waits: the first condition that does not hold.
        if let Some(waiting) = status
            .conditions
            .iter()
            .find(|c| c.status != conditions::TRUE && c.type_ != condition::ERASED)
        {
            field("Waiting", &condition_text(waiting));
        }
    }
    if let Some(result) = &status.result {
        out.push_str(&describe_result(result));
    }
    out
}

fn describe_result(result: &AnalysisResult) -> String {
    let mut out = String::new();
    let e = &result.events;
    let events: [(&str, &Option<SwingEvent>); 8] = [
        ("address", &e.address),
        ("toe-up", &e.toe_up),
        ("mid-backswing", &e.mid_backswing),
        ("top", &e.top),
        ("mid-downswing", &e.mid_downswing),
        ("impact", &e.impact),
        ("mid-follow-through", &e.mid_follow_through),
        ("finish", &e.finish),
    ];
    out.push_str("Events:\n");
    let _ = writeln!(
        out,
        "  {:<20}{:>6}{:>10}{:>12}",
        "EVENT", "FRAME", "TIME", "CONFIDENCE"
    );
    for (name, event) in events {
        match event {
            Some(ev) => {
                let _ = writeln!(
                    out,
                    "  {name:<20}{:>6}{:>9.3}s{:>12.2}",
                    ev.frame, ev.time_s, ev.confidence
                );
            }
            None => {
                let _ = writeln!(out, "  {name:<20}{:>6}{:>10}{:>12}", "-", "-", "-");
            }
        }
    }
    let _ = writeln!(
        out,
        "{:<16}{} (backswing {}, downswing {})",
        "Tempo:",
        number(result.tempo_ratio, 2, ""),
        number(result.backswing_ms, 0, " ms"),
        number(result.downswing_ms, 0, " ms"),
    );
    if !result.recommendations.is_empty() {
        out.push_str("Recommendations:\n");
        for r in &result.recommendations {
            let value = r.value.map_or(String::new(), |v| format!(" ({v:.2})"));
            let _ = writeln!(out, "  - {}: {}{value}", r.code, r.message);
        }
    }
    for (name, value) in [
        ("Report", &result.report_uri),
        ("Plot", &result.plot_uri),
        ("Model", &result.model),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "{:<16}{value}", format!("{name}:"));
        }
    }
    out
}

/// `Reason: message`, without repeating a reason the message already starts with.
pub fn condition_text(c: &Condition) -> String {
    if c.message.starts_with(&c.reason) {
        c.message.clone()
    } else {
        format!("{}: {}", c.reason, c.message)
    }
}

pub fn phase(a: &SwingAnalysis) -> &'static str {
    a.status
        .as_ref()
        .map(|s| s.phase)
        .unwrap_or_default()
        .as_str()
}

fn result(a: &SwingAnalysis) -> Option<&AnalysisResult> {
    a.status.as_ref().and_then(|s| s.result.as_deref())
}

fn number(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}{unit}"))
}

/// Age in kubectl's style: the largest unit that keeps the number small.
fn age(created: Timestamp, now: Timestamp) -> String {
    let seconds = (now.as_second() - created.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(value: serde_json::Value) -> SwingAnalysis {
        serde_json::from_value(value).unwrap()
    }

    fn succeeded() -> SwingAnalysis {
        analysis(serde_json::json!({
            "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
            "metadata": {"name": "user-42-driver-1", "namespace": "default",
                         "creationTimestamp": "2026-11-26T10:00:00Z"},
            "spec": {"stackRef": {"name": "quickstart"}, "video": "videos/user-42/driver.mp4",
                     "golfer": {"userId": "user-42", "club": "driver"}, "retention": "Erase"},
            "status": {"phase": "Succeeded", "jobName": "swing-user-42-driver-1", "attempts": 1,
                "result": {
                    "events": {
                        "address": {"frame": 12, "timeS": 0.4, "confidence": 0.9},
                        "top": {"frame": 40, "timeS": 1.333, "confidence": 0.8},
                        "impact": {"frame": 48, "timeS": 1.6, "confidence": 0.85},
                        "toeUp": null, "midBackswing": null, "midDownswing": null,
                        "midFollowThrough": null, "finish": null
                    },
                    "tempoRatio": 3.5, "backswingMs": 933.3, "downswingMs": 266.7,
                    "recommendations": [{"code": "tempo-slow", "message": "Backswing is slow for your downswing", "value": 3.5}],
                    "reportUri": "s3://golftracker-quickstart/reports/default/user-42-driver-1/uid/report.json",
                    "plotUri": "s3://golftracker-quickstart/reports/default/user-42-driver-1/uid/report.png"
                }}
        }))
    }

    fn pending() -> SwingAnalysis {
        analysis(serde_json::json!({
            "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
            "metadata": {"name": "waiting-for-a-long-name", "namespace": "default",
                         "creationTimestamp": "2026-11-24T09:00:00Z"},
            "spec": {"stackRef": {"name": "quickstart"}, "video": "videos/u/w.mp4",
                     "golfer": {"userId": "u", "handedness": "left"}},
            "status": {"phase": "Pending", "conditions": [{
                "type": "StackReady", "status": "False", "reason": "StackNotReady",
                "message": "stack quickstart is not Ready", "lastTransitionTime": "2026-11-24T09:00:01Z"}]}
        }))
    }

    #[test]
    fn describe_failed_gives_the_reason_once() {
        let failed = analysis(serde_json::json!({
            "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
            "metadata": {"name": "empty", "namespace": "default"},
            "spec": {"stackRef": {"name": "e2e"}, "video": "videos/u/empty.mp4", "golfer": {"userId": "u"}},
            "status": {"phase": "Failed", "jobName": "swing-empty-1", "attempts": 1, "conditions": [{
                "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "BackoffLimitExceeded: InvalidVideo: not a readable media file",
                "lastTransitionTime": "2026-11-24T09:00:01Z"}]}
        }));
        insta::assert_snapshot!(describe(&failed));
    }

    #[test]
    fn list_table() {
        let now: Timestamp = "2026-11-26T10:05:30Z".parse().unwrap();
        insta::assert_snapshot!(table(&[succeeded(), pending()], now));
    }

    #[test]
    fn describe_succeeded() {
        insta::assert_snapshot!(describe(&succeeded()));
    }

    #[test]
    fn describe_pending_says_why() {
        insta::assert_snapshot!(describe(&pending()));
    }

    #[test]
    fn ages() {
        let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let ago = |s: i64| age(Timestamp::from_second(now.as_second() - s).unwrap(), now);
        assert_eq!(
            [ago(5), ago(150), ago(4 * 3600), ago(3 * 86400)],
            ["5s", "2m", "4h", "3d"]
        );
    }
}
