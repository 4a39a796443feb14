//! What the integration tests (`tests/it`, `tests/lambda.rs`) reach below the command line:
//! a run assembled by hand (the engine over a CSV source, a Cognito client and a recorder, for
//! the faults only a test can inject between the parts), and the send ledger's stores driven
//! directly (two runs racing for one claim, a clock set back, a write that fails).
//!
//! Not an API for anyone else: the tool's contract is its command line, its files and its
//! metrics (docs/contract.md). Everything here is re-exported from the modules that own it, so
//! the crate's other items stay `pub(crate)` and `unreachable_pub` keeps them so.

pub use crate::cognito::{Cognito, Connection};
pub use crate::config::RetrySettings;
pub use crate::engine::{EngineConfig, SpendLimits, StopCause, run as run_engine};
pub use crate::job::{UserKey, fold_username};
pub use crate::ledger::dynamo::DynamoStore;
pub use crate::ledger::fleet::Share;
pub use crate::ledger::sqlite::SqliteStore;
pub use crate::ledger::{
    Claim, Clock, DayCaps, DayReservation, DaySpend, Finish, Folded, InDoubt, Ledger, LedgerError,
    LedgerTiming, Medium, Millis, Page, Rules, RunId, SpendCap, Spent, Stale, Stats, Store,
    now_millis,
};
pub use crate::outcome::Recorder;
pub use crate::outcome::report_writer::{IfExists, ReportWriter};
pub use crate::source::csv::CsvSource;
