//! How jobs end. Every job ends in exactly one [`Outcome`]; the [`Recorder`] is the one place that
//! counts it (metrics, summary), writes it (report) and shows it (progress). The source is told
//! first (a queue deletes the message), so a job is reported done only once its source agrees.

pub(crate) mod jobs_left;
pub(crate) mod progress;
pub(crate) mod recorder;
pub(crate) mod report_writer;
pub(crate) mod run_record;

pub use recorder::Recorder;
pub(crate) use recorder::Tally;

// The outcome types themselves live with the job types, below every layer that makes them.
pub(crate) use crate::job::{Delivery, DoubtCause, Outcome, OutcomeKind, Reason};
