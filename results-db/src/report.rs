//! The report JSON the worker uploads next to its PNG, and stores in `analyses.report`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The eight GolfDB swing events, in swing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwingEvent {
    Address,
    ToeUp,
    MidBackswing,
    Top,
    MidDownswing,
    Impact,
    MidFollowThrough,
    Finish,
}

impl SwingEvent {
    /// All events in swing order (the order GolfDB labels them in).
    pub const ALL: [SwingEvent; 8] = [
        SwingEvent::Address,
        SwingEvent::ToeUp,
        SwingEvent::MidBackswing,
        SwingEvent::Top,
        SwingEvent::MidDownswing,
        SwingEvent::Impact,
        SwingEvent::MidFollowThrough,
        SwingEvent::Finish,
    ];

    /// The JSON key / database value of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            SwingEvent::Address => "address",
            SwingEvent::ToeUp => "toe_up",
            SwingEvent::MidBackswing => "mid_backswing",
            SwingEvent::Top => "top",
            SwingEvent::MidDownswing => "mid_downswing",
            SwingEvent::Impact => "impact",
            SwingEvent::MidFollowThrough => "mid_follow_through",
            SwingEvent::Finish => "finish",
        }
    }
}

/// Where one event was found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EventMark {
    /// Frame index in decode order.
    pub frame: u64,
    /// Presentation time of that frame.
    pub time_s: f64,
    /// 0..=1: how sure the detector is about this event.
    pub confidence: f32,
}

/// The eight events of one swing; a struct rather than a map so none can be missing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SwingEvents {
    pub address: EventMark,
    pub toe_up: EventMark,
    pub mid_backswing: EventMark,
    pub top: EventMark,
    pub mid_downswing: EventMark,
    pub impact: EventMark,
    pub mid_follow_through: EventMark,
    pub finish: EventMark,
}

impl SwingEvents {
    /// Builds the events from marks given in [`SwingEvent::ALL`] order.
    pub fn from_ordered(marks: [EventMark; 8]) -> Self {
        let [
            address,
            toe_up,
            mid_backswing,
            top,
            mid_downswing,
            impact,
            mid_follow_through,
            finish,
        ] = marks;
        SwingEvents {
            address,
            toe_up,
            mid_backswing,
            top,
            mid_downswing,
            impact,
            mid_follow_through,
            finish,
        }
    }

    pub fn get(&self, event: SwingEvent) -> EventMark {
        match event {
            SwingEvent::Address => self.address,
            SwingEvent::ToeUp => self.toe_up,
            SwingEvent::MidBackswing => self.mid_backswing,
            SwingEvent::Top => self.top,
            SwingEvent::MidDownswing => self.mid_downswing,
            SwingEvent::Impact => self.impact,
            SwingEvent::MidFollowThrough => self.mid_follow_through,
            SwingEvent::Finish => self.finish,
        }
    }

    /// `(event, mark)` pairs in swing order.
    pub fn iter(&self) -> impl Iterator<Item = (SwingEvent, EventMark)> + '_ {
        SwingEvent::ALL
            .into_iter()
            .map(|event| (event, self.get(event)))
    }
}

/// One measured quantity, reported only where the camera view makes it measurable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub value: f64,
    /// e.g. `deg`, `ms`, `px/s`, `ratio`, `body_heights`.
    pub unit: String,
    /// 0..=1: keypoint confidence and view suitability combined.
    pub confidence: f32,
}

/// A plain-language advice with the number that triggered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Stable machine-readable code, e.g. `tempo_fast_backswing`.
    pub code: String,
    pub message: String,
    pub value: f64,
}

/// The whole report of one analysed swing video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub fps: f64,
    pub frames: u64,
    pub width: u32,
    pub height: u32,
    /// Camera view: `down-the-line`, `face-on` or `unknown`.
    pub view: String,
    pub model: String,
    pub events: SwingEvents,
    /// Backswing time over downswing time (address→top : top→impact).
    pub tempo_ratio: Option<f64>,
    pub backswing_ms: Option<f64>,
    pub downswing_ms: Option<f64>,
    pub metrics: BTreeMap<String, Metric>,
    pub recommendations: Vec<Recommendation>,
    /// Set when the video plays slower than real time: the backswing and
    /// downswing milliseconds above are then real time, the frames and
    /// `time_s` of the events the video's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_motion: Option<SlowMotion>,
    /// Full swings seen in the clip; the last one is the one analysed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swings_seen: Option<u32>,
}

/// How much slower than real time a video plays, and how that was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowMotion {
    /// Video seconds per real second (e.g. 4 for 120 fps played at 30).
    pub factor: f64,
    /// 0..=1.
    pub confidence: f32,
    /// What the factor comes from, e.g. `downswing_duration`.
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(frame: u64) -> EventMark {
        EventMark {
            frame,
            time_s: frame as f64 / 30.0,
            confidence: 0.9,
        }
    }

    #[test]
    fn report_json_has_the_documented_shape() {
        let report = Report {
            fps: 30.0,
            frames: 90,
            width: 1920,
            height: 1080,
            view: "down-the-line".into(),
            model: "blazepose-full".into(),
            events: SwingEvents::from_ordered(std::array::from_fn(|i| mark(i as u64 * 10))),
            tempo_ratio: Some(3.0),
            backswing_ms: Some(900.0),
            downswing_ms: Some(300.0),
            metrics: BTreeMap::from([(
                "head_sway".to_string(),
                Metric {
                    value: 0.05,
                    unit: "body_heights".into(),
                    confidence: 0.8,
                },
            )]),
            recommendations: vec![Recommendation {
                code: "head_sway".into(),
                message: "keep the head still".into(),
                value: 0.05,
            }],
            slow_motion: None,
            swings_seen: Some(1),
        };
        let json = serde_json::to_value(&report).unwrap();
        let events = json["events"].as_object().unwrap();
        let keys: Vec<&str> = events.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = SwingEvent::ALL.iter().map(|e| e.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["events"]["mid_follow_through"]["frame"], 60);
        assert_eq!(json["recommendations"][0]["code"], "head_sway");
        assert!(json.get("slow_motion").is_none(), "left out at real speed");
        assert_eq!(json["swings_seen"], 1);
        assert_eq!(json["tempo_ratio"], 3.0);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn event_names_match_serde() {
        for event in SwingEvent::ALL {
            assert_eq!(serde_json::to_value(event).unwrap(), event.as_str());
        }
    }
}
