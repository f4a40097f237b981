//! The one owner of background work (SlateDB's dispatcher, in our shape).
//!
//! Every periodic job and long-lived task of an engine is registered with
//! its [`TaskExecutor`]: the flush job, the remote log manager's copy,
//! expiration and reaper rounds, the catalog snapshot, local retention, the broker's group tick
//! and committed-offset expiry, the metrics listener, and (through a
//! [`TaskTracker`]) remote prefetches. The executor starts each, keeps a
//! panicking job running (logged, counted), and stops and joins them all on
//! one path ([`TaskExecutor::stop`], from `Engine::shutdown` and on drop),
//! so no background work outlives the engine.
//!
//! Periodic jobs run on their own named thread each, so a long tiering
//! round never delays an fsync. A job gets the engine clock's now and
//! decides itself whether its work is due (tests move a manual clock and
//! call the same work directly). Must never hold engine state itself:
//! jobs capture what they need (a `&LogManager`, the catalog, the clock).

pub(crate) mod catalog_snapshot;
pub mod log_cleaner;
pub(crate) mod remote_log_manager;
pub(crate) mod retention;
pub mod tiered_compaction;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::sync::{lock, TaskTracker};

/// How long `stop` waits for a service to end by itself.
const SERVICE_STOP_WAIT: Duration = Duration::from_secs(10);

/// A periodic job: called with the clock's now every interval until the
/// executor stops.
pub type Job = Box<dyn FnMut(i64) + Send + 'static>;

/// How one registered job is doing, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub name: String,
    /// Times it ran.
    pub runs: u64,
    /// Times it panicked (it keeps running).
    pub panics: u64,
}

#[derive(Default)]
struct Counters {
    runs: AtomicU64,
    panics: AtomicU64,
}

struct Periodic {
    name: String,
    counters: Arc<Counters>,
    handle: Option<JoinHandle<()>>,
}

struct Service {
    name: String,
    handle: tokio::task::JoinHandle<()>,
}

/// Owns an engine's background work.
pub struct TaskExecutor {
    clock: SharedClock,
    /// Set once by `stop`; every periodic thread waits on it.
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// Turned true by `stop`; services watch it.
    stop_services: tokio::sync::watch::Sender<bool>,
    periodic: Mutex<Vec<Periodic>>,
    services: Mutex<Vec<Service>>,
    tracker: TaskTracker,
}

impl std::fmt::Debug for TaskExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskExecutor")
            .field("jobs", &self.status())
            .finish()
    }
}

impl TaskExecutor {
    /// An executor whose jobs see `clock`.
    pub fn new(clock: SharedClock) -> Self {
        TaskExecutor {
            clock,
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            stop_services: tokio::sync::watch::channel(false).0,
            periodic: Mutex::new(Vec::new()),
            services: Mutex::new(Vec::new()),
            tracker: TaskTracker::default(),
        }
    }

    /// Short-lived tasks (remote prefetches) stopped with the executor.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Run `job` every `interval` on its own thread named
    /// `tierlog-<name>`, until [`TaskExecutor::stop`]. A panic in the job
    /// is logged and counted, and the job runs again next interval.
    pub fn periodic(&self, name: &str, interval: Duration, mut job: Job) -> std::io::Result<()> {
        let signal = Arc::clone(&self.stop);
        let clock = Arc::clone(&self.clock);
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let job_name = name.to_string();
        let handle = std::thread::Builder::new()
            .name(format!("tierlog-{name}"))
            .spawn(move || loop {
                {
                    let (stopped, cvar) = &*signal;
                    let Ok(stopped) = stopped.lock() else { return };
                    let Ok((stopped, _)) = cvar.wait_timeout_while(stopped, interval, |s| !*s)
                    else {
                        return;
                    };
                    if *stopped {
                        return;
                    }
                }
                let now = clock.now_ms();
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(now)));
                c.runs.fetch_add(1, Ordering::Relaxed);
                if ran.is_err() {
                    c.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(job = %job_name, "background job panicked; it runs again next interval");
                }
            })?;
        lock(&self.periodic).push(Periodic {
            name: name.to_string(),
            counters,
            handle: Some(handle),
        });
        Ok(())
    }

    /// Run a long-lived async task (a listener) on `runtime` until stop:
    /// `make` gets a receiver that turns true when the task must end.
    pub fn service<F>(
        &self,
        name: &str,
        runtime: &tokio::runtime::Handle,
        make: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let handle = runtime.spawn(make(self.stop_services.subscribe()));
        lock(&self.services).push(Service {
            name: name.to_string(),
            handle,
        });
    }

    /// Run `job(now)` every `interval` (the first run at once) as an async
    /// task on `runtime`, until `until` turns true or the executor stops; a
    /// run under way finishes first. A panicking run is logged and the job
    /// runs again next interval. The returned receiver completes when the
    /// loop has ended, so the registrant can wait for its last run.
    pub fn periodic_async<F, Fut>(
        &self,
        name: &str,
        runtime: &tokio::runtime::Handle,
        interval: Duration,
        mut until: tokio::sync::watch::Receiver<bool>,
        mut job: F,
    ) -> tokio::sync::oneshot::Receiver<()>
    where
        F: FnMut(i64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use futures::FutureExt;
        let clock = Arc::clone(&self.clock);
        let (done, finished) = tokio::sync::oneshot::channel();
        let job_name = name.to_string();
        self.service(name, runtime, move |mut stop| async move {
            #[allow(clippy::disallowed_methods)] // the executor owns the timers
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if *stop.borrow() || *until.borrow() {
                    break;
                }
                tokio::select! {
                    _ = ticker.tick() => {}
                    changed = stop.changed() => {
                        if changed.is_err() { break; }
                        continue;
                    }
                    changed = until.changed() => {
                        if changed.is_err() { break; }
                        continue;
                    }
                }
                let run = std::panic::AssertUnwindSafe(job(clock.now_ms()));
                if run.catch_unwind().await.is_err() {
                    tracing::error!(job = %job_name, "background job panicked; it runs again next interval");
                }
            }
            let _ = done.send(());
        });
        finished
    }

    /// Every registered periodic job and service, with its counters.
    pub fn status(&self) -> Vec<JobStatus> {
        let mut out: Vec<JobStatus> = lock(&self.periodic)
            .iter()
            .map(|p| JobStatus {
                name: p.name.clone(),
                runs: p.counters.runs.load(Ordering::Relaxed),
                panics: p.counters.panics.load(Ordering::Relaxed),
            })
            .collect();
        out.extend(lock(&self.services).iter().map(|s| JobStatus {
            name: s.name.clone(),
            runs: u64::from(!s.handle.is_finished()),
            panics: 0,
        }));
        out
    }

    /// Stop everything and wait for it: periodic threads finish their
    /// current run, services see the stop signal (and are aborted if they
    /// have not ended within 10 s), prefetches are aborted. Idempotent.
    pub fn stop(&self) {
        {
            let (stopped, cvar) = &*self.stop;
            *lock(stopped) = true;
            cvar.notify_all();
        }
        let _ = self.stop_services.send(true);
        let periodic: Vec<Periodic> = std::mem::take(&mut *lock(&self.periodic));
        for mut p in periodic {
            if let Some(h) = p.handle.take() {
                if h.join().is_err() {
                    tracing::error!(job = %p.name, "background job thread ended with a panic");
                }
            }
        }
        let services: Vec<Service> = std::mem::take(&mut *lock(&self.services));
        for s in services {
            // Polled from this (blocking) thread: the service runs on its
            // own runtime's workers.
            let mut waited = Duration::ZERO;
            while !s.handle.is_finished() && waited < SERVICE_STOP_WAIT {
                std::thread::sleep(Duration::from_millis(5));
                waited += Duration::from_millis(5);
            }
            if !s.handle.is_finished() {
                tracing::warn!(service = %s.name, "service did not stop in time; aborting it");
                s.handle.abort();
            }
        }
        self.tracker.close();
    }
}

impl Drop for TaskExecutor {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runs_jobs_with_the_clock_until_stopped_and_survives_a_panic() {
        let clock = ManualClock::new(42);
        let executor = TaskExecutor::new(Arc::new(clock));
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        executor
            .periodic(
                "test",
                Duration::from_millis(1),
                Box::new(move |now| {
                    assert_eq!(now, 42);
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("first run fails");
                    }
                }),
            )
            .unwrap();
        while count.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        let status = executor.status();
        assert_eq!(status[0].name, "test");
        assert_eq!(status[0].panics, 1);
        executor.stop();
        let after = count.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            count.load(Ordering::SeqCst),
            after,
            "no job runs after stop"
        );
        assert!(executor.status().is_empty(), "stopped jobs are gone");
    }

    #[test]
    fn services_see_the_stop_signal_and_are_joined() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let executor = TaskExecutor::new(Arc::new(ManualClock::new(0)));
        let ended = Arc::new(AtomicUsize::new(0));
        let e = Arc::clone(&ended);
        executor.service("listener", rt.handle(), move |mut stop| async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
            e.fetch_add(1, Ordering::SeqCst);
        });
        let e = Arc::clone(&ended);
        rt.block_on(async {
            executor.tracker().spawn(async move {
                std::future::pending::<()>().await;
                e.fetch_add(100, Ordering::SeqCst); // never: aborted
            })
        });
        executor.stop();
        assert_eq!(ended.load(Ordering::SeqCst), 1, "the service ended itself");
        assert!(executor.tracker().is_empty());
        assert!(
            !rt.block_on(async { executor.tracker().spawn(async {}) }),
            "closed"
        );
    }
}
