//! `check`: the settings as they were resolved (secrets redacted), so an operator can see what a
//! run would use before it sends anything; with `--user-pool-id`, the pool profile too (read as
//! every command reads it, and checked against the settings the same way).

use super::parts::pool_access;
use super::{Finished, RunError, done};
use crate::config::Settings;

/// Runs `check`.
pub(super) async fn run(settings: &Settings) -> Result<Finished, RunError> {
    // Read first: a profile that refuses the settings (a secret missing, a contradicting
    // --case-sensitive-usernames) is the answer, exit 2.
    let pool = pool_access(settings).await?;
    print!("{}", settings.render_redacted());
    if let Some(pool) = pool {
        // As comments, so the output still loads back as a settings file.
        println!();
        println!("# The pool profile (DescribeUserPool, DescribeUserPoolClient):");
        for line in pool.profile.to_string().lines() {
            println!("# {line}");
        }
    }
    if settings.cognito.client_id.is_none() {
        eprintln!(
            "note: --client-id is not set; sending works only if every job carries its own client_id, \
             one of those given with --allow-client-id"
        );
    }
    done()
}
