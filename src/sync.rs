//! The one way this crate takes a mutex: [`Locked::locked`] (and [`Locked::unlocked`] for its
//! data once the mutex is no longer shared).
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

    /// [`Mutex::into_inner`], poisoned or not.
    fn unlocked(self) -> T
    where
        Self: Sized,
        T: Sized;

    /// [`Mutex::get_mut`], poisoned or not.
    fn locked_mut(&mut self) -> &mut T;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unlocked(self) -> T
    where
        T: Sized,
    {
        self.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    fn locked_mut(&mut self) -> &mut T {
        self.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}
