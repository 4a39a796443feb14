//! The user pool as a source: `ListUsers` with `cognito:user_status = "UNCONFIRMED"` (and, with
//! `--status`, `"FORCE_CHANGE_PASSWORD"`: one listing per status, as a filter names one value),
//! page by page (60 users a page), filtered to a creation window, streamed through a bounded
//! channel. Each user's status picks its job's action.
//!
//! Used by `discover` (which writes the users as backfill CSV or sends them to a queue) and by
//! `backfill --from-pool` (which runs them straight through the engine, with no file between).
//! ListUsers has a low quota of its own (shared with the pool's other readers), so discovery
//! has its own rate limit (`--list-rate`) and backs off on throttling through the one retry
//! layer. Paging ahead stops when the channel is full: discovery never runs far ahead of the
//! sends.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cognito::admin::{PoolAdmin, PoolUser};
use crate::engine::rate::RateLimiter;
use crate::engine::resend_policy::{RetryPolicy, pool_call};
use crate::job::{
    Input, Job, NothingToSettle, Origin, ResendRequest, Settle, Source, Unreadable, Window,
    check_username,
};
use crate::sync::Locked;

/// The ListUsers filter of `status`: Cognito filters by status on its side; the window is ours.
pub(crate) fn status_filter(status: &str) -> String {
    format!("cognito:user_status = \"{status}\"")
}

/// What discovery needs.
#[derive(Clone)]
pub(crate) struct Discovery {
    /// The signed pool client.
    pub admin: PoolAdmin,
    /// The creation window.
    pub window: Window,
    /// Attributes to ask ListUsers for (empty: all).
    pub attributes: Vec<String>,
    /// ListUsers calls per second (`None`: no limit).
    pub list_rate: Option<f64>,
    /// Backoff and budget per page.
    pub retry: RetryPolicy,
    /// The statuses listed, in turn (`--status`).
    pub statuses: Vec<&'static str>,
}

/// Discovered users, as they come.
pub(crate) struct Discovered {
    /// Users in the window, in ListUsers' order.
    pub users: mpsc::Receiver<PoolUser>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Discovered {
    /// Why discovery ended before the last page, if it did.
    pub(crate) fn take_failure(&self) -> Option<String> {
        self.failure.locked().take()
    }
}

/// Starts listing the pool's users of the statuses asked for, in the window.
pub(crate) fn discover(d: Discovery, stop: CancellationToken) -> Discovered {
    let (tx, rx) = mpsc::channel(120);
    let failure = Arc::new(Mutex::new(None));
    let failed = failure.clone();
    tokio::spawn(async move {
        let limiter = RateLimiter::unreported(d.list_rate);
        let (mut pages, mut listed, mut admitted) = (0u64, 0u64, 0u64);
        for status in &d.statuses {
            let filter = status_filter(status);
            let mut token: Option<String> = None;
            loop {
                let page = pool_call(&d.retry, &limiter, &stop, "ListUsers", || {
                    d.admin.list_page(&filter, &d.attributes, token.clone())
                })
                .await;
                let (users, next) = match page {
                    None => return, // stopped
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        *failed.locked() = Some(format!(
                            "ListUsers on {} failed after {pages} pages ({listed} users listed): \
                             {e}",
                            d.admin.pool_id()
                        ));
                        return;
                    }
                };
                pages += 1;
                let now = SystemTime::now();
                for user in users {
                    listed += 1;
                    // The filter asks for the status; a user whose status changed since is
                    // skipped too.
                    if user.status != *status || !d.window.admits(user.created, now) {
                        continue;
                    }
                    admitted += 1;
                    if tx.send(user).await.is_err() {
                        return; // the reader is gone
                    }
                }
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        tracing::info!(
            pages,
            listed,
            in_window = admitted,
            "discovery done: {admitted} {} users in the window ({listed} listed)",
            d.statuses.join(" or ")
        );
    });
    Discovered { users: rx, failure }
}

/// `backfill --from-pool`: discovered users as jobs.
pub(crate) struct PoolSource {
    discovered: Discovered,
    next_index: u64,
}

impl PoolSource {
    /// Starts discovery.
    pub(crate) fn start(d: Discovery, stop: CancellationToken) -> Self {
        Self {
            discovered: discover(d, stop),
            next_index: 0,
        }
    }
}

impl Source for PoolSource {
    fn label(&self) -> &'static str {
        "pool"
    }

    async fn next(&mut self) -> Option<Input> {
        let user = self.discovered.users.recv().await?;
        self.next_index += 1;
        let origin = Origin::Pool {
            index: self.next_index,
        };
        // The pool is a source like any other: a username Cognito holds but its own pattern
        // refuses (created before a stricter rule, or by an import) is `invalid`, not a call.
        if let Err(reason) = check_username(&user.username) {
            return Some(Input::Unreadable(Unreadable {
                origin,
                reason: format!("user {}: {reason}", self.next_index),
                username: Some(user.username),
            }));
        }
        Some(Input::Job(Job {
            origin,
            request: ResendRequest {
                action: crate::job::Action::for_status(&user.status),
                username: user.username,
                ..ResendRequest::default()
            },
            attributes: Some(user.attributes),
        }))
    }

    fn settler(&self) -> Arc<dyn Settle> {
        Arc::new(NothingToSettle)
    }

    fn take_failure(&mut self) -> Option<String> {
        self.discovered.take_failure()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_window_bounds_creation_dates() {
        let now = at(10_000);
        let w = Window {
            created_after: Some(at(1_000)),
            created_before: Some(at(5_000)),
            older_than: None,
        };
        assert!(!w.admits(Some(at(999)), now));
        assert!(w.admits(Some(at(1_000)), now), "after is inclusive");
        assert!(w.admits(Some(at(4_999)), now));
        assert!(!w.admits(Some(at(5_000)), now), "before is exclusive");
        assert!(!w.admits(None, now), "no date, bounded window: out");

        let young = Window {
            older_than: Some(Duration::from_secs(3_600)),
            ..Window::default()
        };
        assert!(young.admits(Some(at(6_400)), now));
        assert!(!young.admits(Some(at(6_401)), now));
        assert!(Window::default().admits(None, now));
    }
}
