//! Lock helpers shared by every module.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, taking the data of a poisoned lock as it is: a panic while
/// holding a lock leaves the data as it was at the last completed write,
/// and the log's own invariants are re-checked on open.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Short-lived async tasks (remote prefetches) that the background-work
/// owner can abort and wait for at shutdown, instead of detached spawns.
#[derive(Debug, Clone, Default)]
pub struct TaskTracker {
    inner: std::sync::Arc<Mutex<TrackerState>>,
}

#[derive(Debug, Default)]
struct TrackerState {
    closed: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TaskTracker {
    /// Spawn `fut` on the current runtime, tracked; `false` (and nothing
    /// spawned) once the tracker is closed.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
        let mut state = lock(&self.inner);
        if state.closed {
            return false;
        }
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(tokio::spawn(fut));
        true
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        let mut state = lock(&self.inner);
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.len()
    }

    /// No task is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuse new tasks, abort the running ones and wait for them to end.
    pub fn close(&self) {
        let tasks = {
            let mut state = lock(&self.inner);
            state.closed = true;
            std::mem::take(&mut state.tasks)
        };
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            // Aborted: resolves as soon as the task's runtime polls it.
            let _ = futures::executor::block_on(t);
        }
    }
}
