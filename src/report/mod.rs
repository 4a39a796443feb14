//! Reading run reports back: `cognito-resend report` adds up one or more JSON Lines reports (of
//! any command, of this version or another) into what an operator asks first — jobs per outcome
//! and reason, codes per medium, waves, users in doubt, failures, wall time and rate, calls and
//! their latency — and shows it as text, JSON or one self-contained HTML page.
//!
//! # Layout
//! - [`summary`]: reading lines (loosely) and adding them up into a [`summary::Summary`]; nothing here
//!   knows how it is shown.
//! - [`text`]: the summary for a terminal, and the list of jobs in doubt as CSV.
//! - [`html`]: the page, over [`chart`] (inline SVG bar charts).
//!
//! The report's line format is [`crate::outcome::report_writer`]'s (docs/contract.md, *Report*).

mod chart;
pub(crate) mod html;
pub(crate) mod summary;
pub(crate) mod text;

pub(crate) use summary::Aggregator;
