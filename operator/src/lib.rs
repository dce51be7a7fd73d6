//! The GolfTracker operator: controllers for `GolfTrackerStack` and `SwingAnalysis`.

pub mod analysis;
pub mod error;
pub mod external;
pub mod http;
pub mod predicates;
pub mod stack;
pub mod telemetry;
