//! `cognito-resend report FILE...`: what the runs behind these reports did, for someone who was
//! not at the terminal. Reads the files ([`crate::report::summary`]), then prints the summary as
//! text or JSON, or the jobs in doubt as CSV, and writes the HTML page if asked.
//!
//! Usernames are personal data: the text summary and the page name nobody; only `--list
//! in-doubt`, an explicit request on the operator's own files, prints them.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Finished, RunError, done};
use crate::report::{Aggregator, html, summary, text};

/// Runs `report`: `list_in_doubt` prints the jobs in doubt (as CSV, or inside the JSON).
pub(super) fn run(
    files: &[PathBuf],
    json: bool,
    html_out: Option<&Path>,
    list_in_doubt: bool,
) -> Result<Finished, RunError> {
    let mut agg = Aggregator::new();
    for path in files {
        agg.read_file(path)
            .map_err(|e| RunError::Usage(format!("cannot read the report {e}")))?;
    }
    let summary = agg.finish(list_in_doubt);
    if summary.jobs == 0 && summary.unreadable_lines > 0 {
        return Err(RunError::Usage(format!(
            "no report lines in {} (JSON Lines as --report writes them): {} lines are something \
             else",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            summary.unreadable_lines
        )));
    }
    if let Some(out) = html_out {
        let page = html::page(&summary, &summary::now_rfc3339());
        std::fs::write(out, page).map_err(|e| {
            RunError::Fatal(anyhow::anyhow!("writing the page {}: {e}", out.display()))
        })?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &summary)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
    } else if list_in_doubt {
        text::in_doubt_csv(&summary, &mut out).map_err(std::io::Error::from)
    } else {
        out.write_all(text::render(&summary).as_bytes())
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| RunError::Fatal(anyhow::anyhow!("writing to stdout: {e}")))?;
    if summary.unreadable_lines > 0 {
        tracing::warn!(
            "{} lines of the reports are not report lines and were skipped (see the summary)",
            summary.unreadable_lines
        );
    }
    done()
}
