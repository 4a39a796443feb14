//! The one way this crate takes a mutex: [`Locked::locked`].
//!
//! A panicking job is caught and ends `failed` (`internal_error`) while the run goes on, so a
//! mutex it held may be poisoned. Every critical section in this crate leaves its data
//! consistent at each step (a counter bumped, an entry inserted or removed), so a poisoned lock
//! is taken as it is rather than spreading the panic to every other job.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`], poisoned or not.
pub(crate) trait Locked<T: ?Sized> {
    /// The guard, also when another thread panicked while holding it.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
