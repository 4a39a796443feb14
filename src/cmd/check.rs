//! `check`: the settings as they were resolved (secrets redacted), so an operator can see what a
//! run would use before it sends anything.

use super::{Finished, RunError, done};
use crate::config::Settings;

/// Runs `check`.
pub(super) fn run(settings: &Settings) -> Result<Finished, RunError> {
    print!("{}", settings.render_redacted());
    if settings.cognito.client_id.is_none() {
        eprintln!(
            "note: --client-id is not set; sending works only if every job carries its own client_id, \
             one of those given with --allow-client-id"
        );
    }
    done()
}
