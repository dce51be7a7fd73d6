//! `cargo xtask eval-swings DIR`: runs the worker over every labelled real swing
//! in `DIR/labels.csv` and scores it the way the labels' README defines:
//! an event is right when the worker's frame lies in `[lo − t, hi + t]` with
//! GolfDB's tolerance `t = max(round((impact − address) / 30), 1)`; the tempo
//! ratio is right within 25 % of the labelled one. The four events a person does
//! not label (toe-up, mid-backswing, mid-downswing, mid-follow-through) are
//! checked for order. The worker runs as a user would run it (`analyze`, one
//! process per clip), so each clip's time includes loading the model.
//!
//! The output is what a closing note quotes: one block per clip, then totals
//! (per event, tempo, refusals, order, and the faults found on swings of
//! professionals, which should be almost none).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use golftracker_results_db::{Report, SwingEvent};
use serde::Deserialize;

/// The labelled events, in swing order.
const LABELLED: [SwingEvent; 4] = [
    SwingEvent::Address,
    SwingEvent::Top,
    SwingEvent::Impact,
    SwingEvent::Finish,
];
/// How far off the labelled tempo ratio may be.
const TEMPO_TOLERANCE: f64 = 0.25;

/// One row of `labels.csv` (extra columns are ignored; `split` and `golfer`
/// are optional, as in the reference set that has neither).
#[derive(Debug, Deserialize)]
struct LabelRow {
    file: String,
    view: String,
    handedness: String,
    slow_motion: String,
    #[serde(default)]
    split: String,
    #[serde(default)]
    golfer: String,
    address: Option<u64>,
    address_lo: Option<u64>,
    address_hi: Option<u64>,
    top: Option<u64>,
    top_lo: Option<u64>,
    top_hi: Option<u64>,
    impact: Option<u64>,
    impact_lo: Option<u64>,
    impact_hi: Option<u64>,
    finish: Option<u64>,
    finish_lo: Option<u64>,
    finish_hi: Option<u64>,
}

/// One labelled event: best frame and the labeller's inclusive range.
#[derive(Debug, Clone, Copy)]
struct Label {
    best: u64,
    lo: u64,
    hi: u64,
}

impl LabelRow {
    fn label(&self, event: SwingEvent) -> Option<Label> {
        let (best, lo, hi) = match event {
            SwingEvent::Address => (self.address, self.address_lo, self.address_hi),
            SwingEvent::Top => (self.top, self.top_lo, self.top_hi),
            SwingEvent::Impact => (self.impact, self.impact_lo, self.impact_hi),
            SwingEvent::Finish => (self.finish, self.finish_lo, self.finish_hi),
            _ => return None,
        };
        let best = best?;
        Some(Label {
            best,
            lo: lo.unwrap_or(best),
            hi: hi.unwrap_or(best),
        })
    }

    /// GolfDB's tolerance in frames, from the labelled address and impact.
    fn tolerance(&self) -> u64 {
        match (self.address, self.impact) {
            (Some(a), Some(i)) => ((i.saturating_sub(a) as f64 / 30.0).round() as u64).max(1),
            _ => 1,
        }
    }

    /// `(top − address) / (impact − top)` from the best labels.
    fn tempo(&self) -> Option<f64> {
        let (a, t, i) = (self.address?, self.top?, self.impact?);
        (i > t && t > a).then(|| (t - a) as f64 / (i - t) as f64)
    }
}

/// What became of one clip.
struct ClipOutcome {
    row: LabelRow,
    seconds: f64,
    result: Result<Report, String>,
}

/// Totals over the clips scored.
#[derive(Default)]
struct Totals {
    clips: usize,
    refused: usize,
    /// Per labelled event: (right, labelled).
    events: BTreeMap<SwingEvent, (usize, usize)>,
    tempo: (usize, usize),
    in_order: usize,
    pro_swings: usize,
    pro_with_faults: usize,
    seconds: Vec<f64>,
}

pub fn run(dir: &Path, split: Option<&str>, worker: Option<PathBuf>) -> anyhow::Result<()> {
    let labels = dir.join("labels.csv");
    let mut reader =
        csv::Reader::from_path(&labels).with_context(|| format!("reading {}", labels.display()))?;
    let rows: Vec<LabelRow> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", labels.display()))?;
    let rows: Vec<LabelRow> = rows
        .into_iter()
        .filter(|r| split.is_none_or(|s| r.split == s))
        .collect();
    if rows.is_empty() {
        bail!("no clips to evaluate in {}", labels.display());
    }
    let worker = match worker {
        Some(path) => path,
        None => build_worker()?,
    };
    let out = tempfile::tempdir()?;
    let mut totals = Totals::default();
    println!(
        "eval-swings: {} clips from {}{}",
        rows.len(),
        labels.display(),
        split.map_or(String::new(), |s| format!(" (split {s})"))
    );
    for row in rows {
        let outcome = analyze(&worker, dir, out.path(), row)?;
        print!("{}", score(&outcome, &mut totals));
    }
    print!("{}", summary(&totals));
    Ok(())
}

/// Builds the worker binary and returns its path (cargo's own JSON messages
/// name it, whatever the target directory).
fn build_worker() -> anyhow::Result<PathBuf> {
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "golftracker-worker",
            "--bin",
            "golftracker-worker",
            "--message-format=json",
        ])
        .output()
        .context("building the worker")?;
    if !output.status.success() {
        bail!(
            "building the worker failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|m| m.get("executable")?.as_str().map(PathBuf::from))
        .next_back()
        .context("cargo named no worker executable")
}

fn analyze(worker: &Path, dir: &Path, out: &Path, row: LabelRow) -> anyhow::Result<ClipOutcome> {
    let json = out.join(format!("{}.json", row.file));
    let started = Instant::now();
    let output = Command::new(worker)
        .arg("analyze")
        .arg(dir.join(&row.file))
        .arg("--json")
        .arg(&json)
        .output()
        .with_context(|| format!("running {}", worker.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let result = if output.status.success() {
        let bytes = std::fs::read(&json)?;
        Ok(serde_json::from_slice(&bytes).with_context(|| format!("report of {}", row.file))?)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(stderr
            .lines()
            .rfind(|l| l.starts_with("error"))
            .unwrap_or("failed without an error line")
            .to_string())
    };
    Ok(ClipOutcome {
        row,
        seconds,
        result,
    })
}

/// The block of one clip, adding it to `totals`.
fn score(outcome: &ClipOutcome, totals: &mut Totals) -> String {
    let row = &outcome.row;
    let mut text = String::new();
    totals.clips += 1;
    totals.seconds.push(outcome.seconds);
    let _ = writeln!(
        text,
        "\n{}  ({}, {}-handed, slow motion: {}{})  {:.1} s",
        row.file,
        row.view,
        row.handedness,
        row.slow_motion,
        if row.golfer.is_empty() {
            String::new()
        } else {
            format!(", {}", row.golfer)
        },
        outcome.seconds
    );
    let tolerance = row.tolerance();
    let report = match &outcome.result {
        Ok(report) => report,
        Err(reason) => {
            totals.refused += 1;
            for event in LABELLED {
                if row.label(event).is_some() {
                    totals.events.entry(event).or_default().1 += 1;
                }
            }
            totals.tempo.1 += usize::from(row.tempo().is_some());
            let _ = writeln!(text, "  REFUSED: {reason}");
            return text;
        }
    };
    for event in LABELLED {
        let Some(label) = row.label(event) else {
            continue;
        };
        let found = report.events.get(event).frame;
        let right = found + tolerance >= label.lo && found <= label.hi + tolerance;
        let entry = totals.events.entry(event).or_default();
        entry.0 += usize::from(right);
        entry.1 += 1;
        let off = found as i64 - label.best as i64;
        let _ = writeln!(
            text,
            "  {:<8} {:>5}  label {:>4} [{}, {}] ±{tolerance}  {:+}  {}",
            event.as_str(),
            found,
            label.best,
            label.lo,
            label.hi,
            off,
            if right { "hit" } else { "MISS" }
        );
    }
    if let Some(truth) = row.tempo() {
        let tempo = report.tempo_ratio.unwrap_or(f64::NAN);
        let right = ((tempo - truth) / truth).abs() <= TEMPO_TOLERANCE;
        totals.tempo.0 += usize::from(right);
        totals.tempo.1 += 1;
        let _ = writeln!(
            text,
            "  tempo    {tempo:>5.2}  label {truth:.2}  {:+.0} %  {}",
            (tempo / truth - 1.0) * 100.0,
            if right { "hit" } else { "MISS" }
        );
    }
    let frames: Vec<u64> = report.events.iter().map(|(_, m)| m.frame).collect();
    let in_order = frames.windows(2).all(|w| w[0] <= w[1]);
    totals.in_order += usize::from(in_order);
    let _ = writeln!(
        text,
        "  order    {}  ({})",
        if in_order { "ok" } else { "OUT OF ORDER" },
        report
            .events
            .iter()
            .map(|(e, m)| format!("{} {}", e.as_str(), m.frame))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        text,
        "  view     {} (label {}); tempo {:.0}/{:.0} ms; advice: {}",
        report.view,
        row.view,
        report.backswing_ms.unwrap_or(f64::NAN),
        report.downswing_ms.unwrap_or(f64::NAN),
        if report.recommendations.is_empty() {
            "none".to_string()
        } else {
            report
                .recommendations
                .iter()
                .map(|r| r.code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if row.golfer == "pro" {
        totals.pro_swings += 1;
        totals.pro_with_faults += usize::from(!report.recommendations.is_empty());
    }
    text
}

fn percent(right: usize, total: usize) -> String {
    if total == 0 {
        return "-".to_string();
    }
    format!(
        "{right}/{total} ({:.0} %)",
        100.0 * right as f64 / total as f64
    )
}

fn summary(totals: &Totals) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "\nTotals over {} clips", totals.clips);
    let (mut right, mut all) = (0, 0);
    for event in LABELLED {
        let (r, a) = totals.events.get(&event).copied().unwrap_or_default();
        right += r;
        all += a;
        let _ = writeln!(text, "  {:<22} {}", event.as_str(), percent(r, a));
    }
    let _ = writeln!(text, "  {:<22} {}", "four events", percent(right, all));
    let _ = writeln!(
        text,
        "  {:<22} {}",
        "tempo within 25 %",
        percent(totals.tempo.0, totals.tempo.1)
    );
    let _ = writeln!(
        text,
        "  {:<22} {}",
        "refused",
        percent(totals.refused, totals.clips)
    );
    let analysed = totals.clips - totals.refused;
    let _ = writeln!(
        text,
        "  {:<22} {}",
        "eight events in order",
        percent(totals.in_order, analysed)
    );
    if totals.pro_swings > 0 {
        let _ = writeln!(
            text,
            "  {:<22} {}",
            "pro swings with faults",
            percent(totals.pro_with_faults, totals.pro_swings)
        );
    }
    let mut seconds = totals.seconds.clone();
    seconds.sort_by(f64::total_cmp);
    if let Some(median) = seconds.get(seconds.len() / 2) {
        let _ = writeln!(
            text,
            "  {:<22} median {median:.1} s, max {:.1} s",
            "time per clip",
            seconds.last().copied().unwrap_or_default()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(csv_text: &str) -> LabelRow {
        csv::Reader::from_reader(csv_text.as_bytes())
            .deserialize()
            .next()
            .unwrap()
            .unwrap()
    }

    const HEADER: &str = "file,view,handedness,slow_motion,address,address_lo,address_hi,top,top_lo,top_hi,impact,impact_lo,impact_hi,finish,finish_lo,finish_hi,notes\n";

    #[test]
    fn tolerance_and_tempo_come_from_the_best_labels() {
        let r = row(&format!(
            "{HEADER}a.mp4,down-the-line,right,no,108,104,113,161,157,163,172,172,173,199,195,206,\"x, y\"\n"
        ));
        assert_eq!(r.tolerance(), 2);
        assert!((r.tempo().unwrap() - 53.0 / 11.0).abs() < 1e-9);
        assert_eq!(r.label(SwingEvent::Finish).unwrap().hi, 206);
        assert!(r.label(SwingEvent::ToeUp).is_none());
    }

    #[test]
    fn a_clip_cut_after_impact_has_no_finish_label() {
        let r = row(&format!(
            "{HEADER}b.mp4,face-on,left,no,10,9,11,40,39,41,48,48,48,,,,\n"
        ));
        assert!(r.label(SwingEvent::Finish).is_none());
        assert_eq!(r.tolerance(), 1);
    }

    #[test]
    fn a_frame_within_the_range_plus_tolerance_is_a_hit_and_one_beyond_a_miss() {
        let r = row(&format!(
            "{HEADER}c.mp4,down-the-line,right,no,10,9,11,40,39,41,48,48,48,60,58,62,\n"
        ));
        let mut report: Report = serde_json::from_value(serde_json::json!({
            "fps": 30.0, "frames": 90, "width": 640, "height": 480, "view": "down-the-line",
            "model": "m", "tempo_ratio": 3.75, "backswing_ms": 1000.0, "downswing_ms": 266.0,
            "metrics": {}, "recommendations": [],
            "events": events_json([8, 20, 25, 40, 45, 49, 52, 63]),
        }))
        .unwrap();
        let outcome = |report: &Report| ClipOutcome {
            row: row(&format!(
                "{HEADER}c.mp4,down-the-line,right,no,10,9,11,40,39,41,48,48,48,60,58,62,\n"
            )),
            seconds: 1.0,
            result: Ok(report.clone()),
        };
        let mut totals = Totals::default();
        let text = score(&outcome(&report), &mut totals);
        assert!(!text.contains("MISS"), "{text}");
        assert_eq!(totals.events[&SwingEvent::Impact], (1, 1));
        report.events.impact.frame = 50;
        report.events.address.frame = 7;
        let text = score(&outcome(&report), &mut totals);
        assert_eq!(text.matches("MISS").count(), 2, "{text}");
        assert_eq!(totals.events[&SwingEvent::Impact], (1, 2));
        assert_eq!(r.tolerance(), 1);
    }

    /// The `events` object of a report with the eight events at `frames`.
    fn events_json(frames: [u64; 8]) -> serde_json::Value {
        let events = SwingEvent::ALL.iter().zip(frames).map(|(event, frame)| {
            let mark = serde_json::json!({"frame": frame, "time_s": frame as f64 / 30.0, "confidence": 0.9});
            (event.as_str().to_string(), mark)
        });
        serde_json::Value::Object(events.collect())
    }
}
