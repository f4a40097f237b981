//! The one owner of background work. A [`Dispatcher`] runs its jobs on one
//! thread every interval and stops them through one path
//! ([`Dispatcher::stop`], also on drop), so no background work outlives the
//! engine. Today it runs the `flush.ms` check; tiering, retention and the
//! orphan reaper join it as jobs.

pub mod remote_log_manager;

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A background job: called every interval until the dispatcher stops.
pub type Job = Box<dyn FnMut() + Send + 'static>;

/// Runs jobs periodically on one named thread.
pub struct Dispatcher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("running", &self.handle.is_some())
            .finish()
    }
}

impl Dispatcher {
    /// Start running `jobs` every `interval`.
    pub fn start(interval: Duration, mut jobs: Vec<Job>) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("tierlog-tasks".into())
            .spawn(move || {
                let (lock, cvar) = &*signal;
                loop {
                    {
                        let Ok(stopped) = lock.lock() else { return };
                        let Ok((stopped, _)) = cvar.wait_timeout_while(stopped, interval, |s| !*s)
                        else {
                            return;
                        };
                        if *stopped {
                            return;
                        }
                    }
                    for job in jobs.iter_mut() {
                        job();
                    }
                }
            })?;
        Ok(Dispatcher {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop the jobs and wait for the thread to finish.
    pub fn stop(&mut self) {
        let (lock, cvar) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        cvar.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_jobs_until_stopped() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let mut d = Dispatcher::start(
            Duration::from_millis(1),
            vec![Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            })],
        )
        .unwrap();
        while count.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        d.stop();
        let after = count.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            count.load(Ordering::SeqCst),
            after,
            "no job runs after stop"
        );
    }
}
