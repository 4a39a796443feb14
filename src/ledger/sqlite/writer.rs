//! The writer thread: the one place the SQLite store writes, in groups.
//!
//! It takes whatever has queued up, runs each operation in one `BEGIN IMMEDIATE` transaction
//! and commits once: one fsync for a group of claims and results instead of one each (group
//! commit). Each operation is a closure over the connection with its own typed answer
//! ([`request`]): the answer waits in the operation until the commit, and only then goes back,
//! so nobody acts on a write that is not on disk, and no caller has to pick its answer out of
//! a shared enum.

use std::sync::{Arc, mpsc};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

/// Most operations one transaction takes.
const GROUP_MAX: usize = 512;

/// Why an operation got no answer from the file.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum WriteError {
    /// The group's transaction could not begin: nothing of it ran.
    #[error("cannot begin a transaction: {0}")]
    Begin(Arc<rusqlite::Error>),
    /// The operation itself failed (the rest of its group still commits).
    #[error("{0}")]
    Op(Arc<rusqlite::Error>),
    /// The group ran but its commit failed: none of it is on disk.
    #[error("commit failed: {0}")]
    Commit(Arc<rusqlite::Error>),
    /// The writer thread is gone.
    #[error("its writer thread has stopped")]
    Stopped,
}

/// One operation queued for the writer, its answer type erased.
pub(super) trait Task: Send {
    /// Runs the operation inside the group's transaction, keeping its answer.
    fn apply(&mut self, db: &Connection);
    /// Sends the kept answer, or `failed` when the group did not commit (or never began).
    fn answer(self: Box<Self>, failed: Option<&WriteError>);
}

/// An operation with its typed answer and where the answer goes.
struct Op<T, F> {
    work: Option<F>,
    done: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<Result<T, WriteError>>,
}

impl<T, F> Task for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn apply(&mut self, db: &Connection) {
        if let Some(work) = self.work.take() {
            self.done = Some(work(db));
        }
    }

    fn answer(self: Box<Self>, failed: Option<&WriteError>) {
        let answer = match (failed, self.done) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(done)) => done.map_err(|e| WriteError::Op(Arc::new(e))),
            // Every task of a committed group was applied first.
            (None, None) => Err(WriteError::Stopped),
        };
        let _ = self.reply.send(answer);
    }
}

/// `work` as a task for the writer, and where its answer will come.
pub(super) fn request<T, F>(work: F) -> (Box<dyn Task>, oneshot::Receiver<Result<T, WriteError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let task = Op {
        work: Some(work),
        done: None,
        reply,
    };
    (Box::new(task), answer)
}

/// The writer thread: group commit until every sender is gone.
pub(super) fn writer(mut conn: Connection, rx: mpsc::Receiver<Box<dyn Task>>, described: &str) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(t) => t,
            Err(e) => {
                let e = WriteError::Begin(Arc::new(e));
                for task in group {
                    task.answer(Some(&e));
                }
                continue;
            }
        };
        for task in &mut group {
            task.apply(&txn);
        }
        if let Err(e) = txn.commit() {
            tracing::error!("ledger {described}: commit failed: {e}");
            let e = WriteError::Commit(Arc::new(e));
            for task in group {
                task.answer(Some(&e));
            }
            continue;
        }
        for task in group {
            task.answer(None);
        }
    }
}
