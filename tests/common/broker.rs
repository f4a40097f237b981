//! An in-process broker on an ephemeral port for client tests.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;

use tierlog::broker::{serve, BrokerSettings, GroupTicks, TxnTicks};
use tierlog::clock::SharedClock;
use tierlog::config::BrokerConfig;
use tierlog::{Engine, EngineConfig};

pub struct TestBroker {
    pub addr: String,
    pub engine: Arc<Engine>,
    /// Runs a group coordinator tick now (after moving a manual clock).
    pub group_ticks: GroupTicks,
    /// Runs a transaction coordinator tick now (timeouts checked).
    pub txn_ticks: TxnTicks,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBroker {
    /// Start a broker on `data_dir` with `config` tweaks applied.
    pub fn start_with(data_dir: &Path, tweak: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        Self::start_with_store(data_dir, tweak, None)
    }

    /// Like [`TestBroker::start_with`], with the remote tier on `store`
    /// (a client for a test S3 server) instead of the config's URL.
    pub fn start_with_store(
        data_dir: &Path,
        tweak: impl FnOnce(&mut BrokerConfig),
        store: Option<Arc<dyn object_store::ObjectStore>>,
    ) -> TestBroker {
        Self::start_full(data_dir, tweak, store, None)
    }

    /// Like [`TestBroker::start_with`], with the engine (and so the group
    /// coordinator) on `clock`.
    pub fn start_with_clock(
        data_dir: &Path,
        tweak: impl FnOnce(&mut BrokerConfig),
        clock: SharedClock,
    ) -> TestBroker {
        Self::start_full(data_dir, tweak, None, Some(clock))
    }

    fn start_full(
        data_dir: &Path,
        tweak: impl FnOnce(&mut BrokerConfig),
        store: Option<Arc<dyn object_store::ObjectStore>>,
        clock: Option<SharedClock>,
    ) -> TestBroker {
        let mut config = BrokerConfig {
            data_dir: data_dir.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            ..BrokerConfig::default()
        };
        tweak(&mut config);
        super::init_tracing();
        let mut engine_config = EngineConfig::from_broker(&config);
        if let (Some(store), Some(remote)) = (store, engine_config.remote.as_mut()) {
            remote.url = "test://store".into();
            remote.store = Some(store);
        }
        if let Some(clock) = clock {
            engine_config = engine_config.with_clock(clock);
        }
        let engine = Arc::new(Engine::open(engine_config).expect("engine opens"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Bound with std so this works from inside a test's own runtime.
        let listener = std::net::TcpListener::bind(&config.listen).unwrap();
        listener.set_nonblocking(true).unwrap();
        let bound = listener.local_addr().unwrap();
        let settings = BrokerSettings::from_config(&config, bound).unwrap();
        let group_ticks = settings.group_ticks.clone();
        let txn_ticks = settings.txn_ticks.clone();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let e = Arc::clone(&engine);
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                serve(listener, e, settings, stop_rx).await.unwrap();
            });
        });
        TestBroker {
            addr: bound.to_string(),
            engine,
            group_ticks,
            txn_ticks,
            stop,
            thread: Some(thread),
        }
    }

    pub fn start(data_dir: &Path) -> TestBroker {
        Self::start_with(data_dir, |_| {})
    }

    /// Stop serving and shut the engine down cleanly.
    pub fn stop(mut self) {
        self.halt();
        self.engine.shutdown().unwrap();
    }

    fn halt(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.halt();
    }
}
