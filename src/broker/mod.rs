//! The Kafka wire-protocol broker.
//!
//! Owns: the TCP listener, per-connection framing (4-byte size prefix,
//! `socket.request.max.bytes`), request decoding and response encoding with
//! the `kafka-protocol` crate, and one handler file per API family. Each
//! connection is served in order, one request at a time, as Kafka does.
//! Handlers call the engine on tokio's blocking pool (`Ctx::blocking`;
//! Produce's append in place with `block_in_place`, or on the worker
//! itself when it is small and its partitions append quickly:
//! `Ctx::blocking_in_place`), never directly on an async worker otherwise; the broker never
//! touches files itself. A malformed frame closes only its connection.

mod acls;
mod api_versions;
mod authz;
mod budget;
mod client_quotas;
mod codec;
mod configs;
mod connection;
mod connection_quotas;
mod delete_records;
mod errors;
mod fetch;
mod fetch_sessions;
mod group_driver;
mod groups;
mod leader_epochs;
mod limits;
mod list_offsets;
mod log_dirs;
mod logging;
mod metadata;
mod offsets;
mod partitions;
mod produce;
mod producer_states;
mod producers;
mod quota_manager;
mod records_send;
mod response_errors;
mod sasl;
mod throttling;
mod topics;
mod transactions;
mod txn_driver;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use codec::Response;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::BrokerConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::security::tls::TlsReloader;
use crate::security::{SaslMechanism, SecurityProtocol};
use crate::Engine;

pub use crate::coordinator::GroupSettings;
pub use api_versions::SUPPORTED_APIS;
#[doc(hidden)]
pub use group_driver::GroupTicks;
pub use limits::{MAX_REQUEST_ENTRIES, MAX_REQUEST_TOTAL_ENTRIES};
#[doc(hidden)]
pub use logging::{escape, Admit, WarnLimiter};
pub use sasl::ListenerSecurity;
#[doc(hidden)]
pub use txn_driver::TxnTicks;

/// The broker's node id: tierlog is one broker.
pub const NODE_ID: i32 = 0;

/// What the broker needs to know besides the engine.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Host and port clients are told to connect to (Metadata).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Create unknown topics on Metadata requests that allow it.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: u32,
    /// Largest Fetch response (`fetch.max.bytes`), whatever a client asks.
    pub fetch_max_bytes: usize,
    /// Fetched local records go to plaintext sockets with `sendfile(2)`
    /// (`socket.sendfile.enable`).
    pub sendfile: bool,
    /// Request bytes all connections may hold at once
    /// (`queued.max.request.bytes`, see `budget.rs`).
    pub queued_max_request_bytes: usize,
    /// Connections served at once, in all and from one address
    /// (`max.connections`, `max.connections.per.ip`).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Per-address exceptions (`max.connections.per.ip.overrides`).
    pub max_connections_per_ip_overrides: std::collections::HashMap<std::net::IpAddr, usize>,
    /// Close a connection idle this long (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// A request frame begun must arrive within this long.
    pub request_read_timeout_ms: u64,
    /// Incremental fetch sessions kept at most
    /// (`max.incremental.fetch.session.cache.slots`; 0: none).
    pub fetch_session_cache_slots: usize,
    /// The group coordinator's timeouts.
    pub groups: GroupSettings,
    /// The transaction coordinator's settings.
    pub transactions: crate::coordinator::TransactionSettings,
    /// SASL mechanisms offered on SASL listeners
    /// (`sasl.enabled.mechanisms`).
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Client quota sampling: `quota.window.num` windows of
    /// `quota.window.size.seconds`.
    pub quota_windows: quota_manager::QuotaWindows,
    /// `connections.max.reauth.ms` (KIP-368; 0: sessions never expire).
    pub connections_max_reauth_ms: u64,
    /// Largest frame before authentication (`sasl.server.max.receive.size`).
    pub sasl_server_max_receive_size: usize,
    /// `super.users` and `allow.everyone.if.no.acl.found`.
    pub authorizer: Arc<crate::security::acl::AuthorizerConfig>,
    /// Every broker setting, as DescribeConfigs reports the broker resource.
    pub described: Arc<Vec<crate::config::DescribedSetting>>,
    /// Test hook: run a group coordinator tick now.
    #[doc(hidden)]
    pub group_ticks: GroupTicks,
    /// Test hook: run a transaction coordinator tick now.
    #[doc(hidden)]
    pub txn_ticks: TxnTicks,
}

impl BrokerSettings {
    /// Settings from the broker config; `bound` is the listener's actual
    /// address (used when no advertised listener is set).
    pub fn from_config(config: &BrokerConfig, bound: SocketAddr) -> Result<Self> {
        let (host, port) = match &config.advertised_listener {
            Some(a) => split_host_port(a)?,
            // A wildcard address cannot be advertised: clients would
            // bootstrap, be told 127.0.0.1 and retry their own host forever.
            None if bound.ip().is_unspecified() => {
                return Err(Error::invalid(format!(
                    "listen {bound} is a wildcard address: set advertised_listener \
                     (--advertised-listener, TIERLOG_ADVERTISED_LISTENER) to the host:port \
                     clients should connect to"
                )))
            }
            None => (bound.ip().to_string(), i32::from(bound.port())),
        };
        Ok(BrokerSettings {
            advertised_host: host,
            advertised_port: port,
            max_request_bytes: config.socket_request_max_bytes,
            auto_create_topics: config.auto_create_topics_enable,
            num_partitions: config.num_partitions,
            fetch_max_bytes: config.fetch_max_bytes,
            sendfile: config.socket_sendfile_enable,
            queued_max_request_bytes: config.queued_max_request_bytes,
            max_connections: config.max_connections as usize,
            max_connections_per_ip: config.max_connections_per_ip as usize,
            max_connections_per_ip_overrides: config
                .connections_per_ip_overrides()?
                .into_iter()
                .map(|(ip, n)| (ip, n as usize))
                .collect(),
            connections_max_idle_ms: config.connections_max_idle_ms,
            request_read_timeout_ms: config.request_read_timeout_ms,
            fetch_session_cache_slots: config.max_incremental_fetch_session_cache_slots as usize,
            groups: GroupSettings {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                offsets_retention_ms: config.offsets_retention_ms(),
                offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            },
            transactions: crate::coordinator::TransactionSettings {
                max_timeout_ms: config.transaction_max_timeout_ms,
                id_expiration_ms: config.transactional_id_expiration_ms,
                abort_cleanup_interval_ms: config
                    .transaction_abort_timed_out_transaction_cleanup_interval_ms,
            },
            sasl_mechanisms: config.sasl_mechanisms()?,
            connections_max_reauth_ms: config.connections_max_reauth_ms,
            quota_windows: quota_manager::QuotaWindows::new(
                config.quota_window_num,
                config.quota_window_size_seconds,
            ),
            sasl_server_max_receive_size: config.sasl_server_max_receive_size,
            authorizer: Arc::new(config.authorizer()?),
            described: Arc::new(config.described()),
            group_ticks: GroupTicks::default(),
            txn_ticks: TxnTicks::default(),
        })
    }
}

pub fn split_host_port(s: &str) -> Result<(String, i32)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| Error::invalid(format!("advertised listener '{s}' is not host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| Error::invalid(format!("advertised listener '{s}' has a bad port")))?;
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        i32::from(port),
    ))
}

/// Shared by every connection.
pub(crate) struct Ctx {
    pub engine: Arc<Engine>,
    pub settings: BrokerSettings,
    pub groups: Arc<crate::coordinator::GroupCoordinator>,
    /// The transaction coordinator.
    pub txns: Arc<crate::coordinator::TransactionCoordinator>,
    /// Serialises transaction coordinator operations (written) against
    /// transactional produces (read): see `txn_driver.rs`.
    pub txn_lock: Arc<tokio::sync::RwLock<()>>,
    /// Request bytes held by all connections (`queued.max.request.bytes`).
    pub budget: Arc<budget::RequestBudget>,
    /// The rate limit of per-connection warnings.
    pub warnings: Arc<logging::WarnLimiter>,
    /// What this context's listener asks of its clients (one `Ctx` per
    /// listener; `settings` carries the listener's advertised address).
    pub security: ListenerSecurity,
    /// Incremental fetch sessions (KIP-227), one cache for every listener.
    pub fetch_sessions: Arc<fetch_sessions::FetchSessions>,
    /// Client quotas in force and the rates measured against them.
    pub quotas: Arc<quota_manager::ClientQuotas>,
    /// Fetch responses may send local records from their segment files
    /// (`records_send.rs`): `socket.sendfile.enable` on a listener without
    /// TLS.
    pub sendfile: bool,
}

impl Ctx {
    /// May a per-connection warning (or a line a client can cause at will)
    /// be logged now? `Some(n)`: yes, and `n` were suppressed before it
    /// (put it in the line); `None`: no, it is counted instead.
    pub fn warn_admit(&self) -> Option<u64> {
        match self.warnings.admit() {
            logging::Admit::Log { suppressed } => Some(suppressed),
            logging::Admit::Suppress => {
                self.engine.metrics().log_warnings_suppressed.inc();
                None
            }
        }
    }

    /// Run engine work (synchronous, may wait on a partition lock, the
    /// disk or the catalog) on the blocking pool, so the connection's task
    /// keeps watching its socket meanwhile: a request whose client left is
    /// abandoned at its next await (`connection.rs`).
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T> {
        let engine = Arc::clone(&self.engine);
        self.on_blocking_pool(move || f(&engine)).await
    }

    /// Run an append (short: it never waits on the catalog or a client)
    /// without the blocking pool. With `quick` (a small request to
    /// partitions that append quickly now: [`Engine::appends_quickly`]), on
    /// this worker itself: no thread hand-off at all. Otherwise in place
    /// with `block_in_place` on a multi-thread runtime (the broker's): this
    /// worker's other tasks are handed to another thread first (a thread
    /// woken from the blocking pool), so an append that waits on its
    /// partition's lock, an fsync or the disk holds up only its own
    /// request. Either way the produce goes on without waiting for a
    /// blocking-pool thread to wake and then for a worker to poll it again
    /// (two thread wake-ups per request that each took milliseconds while
    /// a consumer kept both cores busy: `kafka-perf mixed`); the hand-off
    /// of `block_in_place` itself still took 1-26 ms in 35-62 of the
    /// produce requests of a `mixed` run (the thread it woke ran while the
    /// request waited), on the worker itself none. The connection's task
    /// does not watch its socket meanwhile, which is why other engine work
    /// uses [`Ctx::blocking`]. On a current-thread runtime, which cannot
    /// hand its tasks over, on the blocking pool unless `quick`.
    pub async fn blocking_in_place<T: Send + 'static>(
        self: &Arc<Self>,
        quick: bool,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T> {
        if quick {
            // A panic in engine code unwinds through this connection's
            // task and ends it, as on the blocking pool.
            return Ok(f(&self.engine));
        }
        let engine = Arc::clone(&self.engine);
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return Ok(tokio::task::block_in_place(move || f(&engine)));
        }
        self.on_blocking_pool(move || f(&engine)).await
    }

    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        match tokio::task::spawn_blocking(f).await {
            Ok(v) => Ok(v),
            // A panic in engine code ends this connection (its task), never
            // a made-up empty response; other connections go on.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::new(
                ErrorKind::Internal,
                format!("engine task failed: {e}"),
            )),
        }
    }
}

/// A bound Kafka listener, ready for [`serve_listeners`].
pub struct BoundListener {
    pub listener: TcpListener,
    pub protocol: SecurityProtocol,
    /// `host:port` clients are told to connect to on this listener;
    /// `None`: `BrokerSettings::advertised_host`/`advertised_port`.
    pub advertised: Option<(String, i32)>,
}

/// Serve Kafka clients on one PLAINTEXT `listener` until `shutdown` turns
/// true (see [`serve_listeners`]).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    settings: BrokerSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let plaintext = BoundListener {
        listener,
        protocol: SecurityProtocol::Plaintext,
        advertised: None,
    };
    serve_listeners(vec![plaintext], None, engine, settings, shutdown).await
}

/// Serve Kafka clients on every listener until `shutdown` turns true, then
/// close every connection and return. The engine is not shut down here.
/// `tls` serves the SSL and SASL_SSL listeners (required when there is
/// one); on SIGHUP its files are read again for new connections.
pub async fn serve_listeners(
    listeners: Vec<BoundListener>,
    tls: Option<Arc<TlsReloader>>,
    engine: Arc<Engine>,
    settings: BrokerSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    if listeners.is_empty() {
        return Err(Error::invalid("no listener to serve"));
    }
    if tls.is_none() {
        if let Some(l) = listeners.iter().find(|l| l.protocol.uses_tls()) {
            return Err(Error::invalid(format!(
                "listener {} needs ssl.keystore.location",
                l.protocol
            )));
        }
    }
    let groups = Arc::new(crate::coordinator::GroupCoordinator::new(
        settings.groups,
        engine.now_ms(),
    ));
    let txns = Arc::new(crate::coordinator::TransactionCoordinator::new(
        settings.transactions,
    ));
    let txn_lock = Arc::new(tokio::sync::RwLock::new(()));
    let budget = Arc::new(budget::RequestBudget::new(
        settings.queued_max_request_bytes,
        Arc::clone(engine.metrics()),
    ));
    let warnings = Arc::new(logging::WarnLimiter::new(engine.clock()));
    let fetch_sessions = Arc::new(fetch_sessions::FetchSessions::new(
        settings.fetch_session_cache_slots,
    ));
    let client_quotas = Arc::new(quota_manager::ClientQuotas::new(settings.quota_windows));
    {
        let engine = Arc::clone(&engine);
        let stored = tokio::task::spawn_blocking(move || engine.client_quotas())
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot load client quotas: {e}"),
                )
            })??;
        client_quotas.load(&stored);
    }
    // One context per listener: the same engine, coordinator, budget and
    // warning limiter, each with its listener's address and security.
    let ctxs: Vec<Arc<Ctx>> = listeners
        .iter()
        .map(|l| {
            let mut settings = settings.clone();
            if let Some((host, port)) = &l.advertised {
                settings.advertised_host = host.clone();
                settings.advertised_port = *port;
            }
            let security = ListenerSecurity {
                protocol: l.protocol,
                mechanisms: settings.sasl_mechanisms.clone(),
                reauth_ms: settings.connections_max_reauth_ms,
                max_unauthenticated_bytes: settings.sasl_server_max_receive_size,
            };
            let sendfile = settings.sendfile && !l.protocol.uses_tls();
            Arc::new(Ctx {
                engine: Arc::clone(&engine),
                settings,
                groups: Arc::clone(&groups),
                txns: Arc::clone(&txns),
                txn_lock: Arc::clone(&txn_lock),
                budget: Arc::clone(&budget),
                warnings: Arc::clone(&warnings),
                security,
                fetch_sessions: Arc::clone(&fetch_sessions),
                quotas: Arc::clone(&client_quotas),
                sendfile,
            })
        })
        .collect();
    let ctx = Arc::clone(&ctxs[0]);
    // Stored groups are back before anyone is served.
    group_driver::load(&ctx).await?;
    ctx.settings.group_ticks.install(&ctx);
    // So are stored transactions; prepared ones are completed.
    txn_driver::load(&ctx).await?;
    ctx.settings.txn_ticks.install(&ctx);
    let txn_driver_done = {
        let job_ctx = Arc::clone(&ctx);
        ctx.engine.tasks().periodic_async(
            "transaction-coordinator",
            &tokio::runtime::Handle::current(),
            txn_driver::TICK_INTERVAL,
            shutdown.clone(),
            move |now| {
                let ctx = Arc::clone(&job_ctx);
                async move { txn_driver::step(&ctx, now).await }
            },
        )
    };
    // The coordinator's clock (sessions, rebalance timeouts, offset
    // expiry), a job of the engine's task executor: it stops when
    // `shutdown` turns true and is awaited below, so no catalog write of
    // it outlives `serve`.
    let group_driver_done = {
        let job_ctx = Arc::clone(&ctx);
        let stop = shutdown.clone();
        ctx.engine.tasks().periodic_async(
            "group-coordinator",
            &tokio::runtime::Handle::current(),
            group_driver::TICK_INTERVAL,
            shutdown.clone(),
            move |now| {
                let (ctx, stop) = (Arc::clone(&job_ctx), stop.clone());
                async move { group_driver::step(&ctx, now, Some(&stop)).await }
            },
        )
    };
    let quotas = connection_quotas::ConnectionQuotas::new(
        ctx.settings.max_connections,
        ctx.settings.max_connections_per_ip,
    )
    .with_overrides(ctx.settings.max_connections_per_ip_overrides.clone());
    let mut reload_signal = match &tls {
        Some(_) => Some(tls_reload_signal()?),
        None => None,
    };
    let mut connections = JoinSet::new();
    // `/readyz`: groups are reloaded, the listener accepts from here on.
    ctx.engine.readiness().set_listener_bound(true);
    for (l, c) in listeners.iter().zip(&ctxs) {
        tracing::info!(
            listener = %l.protocol,
            listen = %l.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            advertised = %format!("{}:{}", c.settings.advertised_host, c.settings.advertised_port),
            "Kafka listener ready"
        );
    }
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            _ = next_reload(&mut reload_signal) => {
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => tracing::info!("TLS certificates reloaded (SIGHUP)"),
                        Err(e) => tracing::error!(error = %e, "TLS certificates not reloaded (SIGHUP): the previous ones stay in use"),
                    }
                }
            }
            (i, accepted) = accept_any(&listeners) => {
                let ctx = &ctxs[i];
                match accepted {
                    Ok((stream, peer)) => {
                        // Over max.connections(.per.ip): closed before a
                        // byte is read (the stream drops here).
                        let slot = match quotas.try_acquire(peer.ip()) {
                            Ok(slot) => slot,
                            Err(refused) => {
                                ctx.engine.metrics().connections_rejected.inc();
                                if let Some(suppressed) = ctx.warn_admit() {
                                    tracing::warn!(%peer, reason = %refused, suppressed, "connection refused");
                                }
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        let ctx = Arc::clone(ctx);
                        let stop = shutdown.clone();
                        let tls_config = match (&tls, ctx.security.protocol.uses_tls()) {
                            (Some(tls), true) => Some(tls.current()),
                            _ => None,
                        };
                        connections.spawn(async move {
                            let _slot = slot;
                            let served = match tls_config {
                                Some(config) => connection::tls(ctx, config, stream, peer, stop).await,
                                None => connection::plain(ctx, stream, peer, stop).await,
                            };
                            if let Err(e) = served {
                                tracing::debug!(%peer, error = %logging::escape(&e.to_string()), "connection closed");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        if let Some(suppressed) = ctx.warn_admit() {
                            tracing::warn!(error = %e, suppressed, "accept failed");
                        }
                        crate::clock::monotonic_sleep(Duration::from_millis(50)).await;
                    }
                }
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        }
    }
    ctx.engine.readiness().set_listener_bound(false);
    drop(listeners);
    // Connections see the shutdown flag and finish their current request.
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
    let _ = group_driver_done.await;
    let _ = txn_driver_done.await;
    Ok(())
}

/// The next connection on any listener, with the listener's index
/// (`accept` is cancel-safe: one not taken now is taken next time).
async fn accept_any(
    listeners: &[BoundListener],
) -> (usize, std::io::Result<(tokio::net::TcpStream, SocketAddr)>) {
    let accepts = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Box::pin(async move { (i, l.listener.accept().await) }));
    futures::future::select_all(accepts).await.0
}

#[cfg(unix)]
type ReloadSignal = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type ReloadSignal = ();

/// SIGHUP, which reloads the TLS certificates.
fn tls_reload_signal() -> Result<ReloadSignal> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot install the SIGHUP handler (TLS reload): {e}"),
            )
        })
    }
    #[cfg(not(unix))]
    {
        Ok(())
    }
}

/// Resolves on the next reload signal; never without one.
async fn next_reload(signal: &mut Option<ReloadSignal>) {
    #[cfg(unix)]
    if let Some(s) = signal {
        if s.recv().await.is_some() {
            return;
        }
    }
    #[cfg(not(unix))]
    let _ = signal;
    std::future::pending::<()>().await
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request of {size} bytes exceeds socket.request.max.bytes ({limit})")]
    TooLarge { size: i64, limit: usize },
    #[error("unsupported request: {0}")]
    Unsupported(String),
    #[error("idle for connections.max.idle.ms ({ms} ms)")]
    Idle { ms: u64 },
    #[error("{what} not received within request_read_timeout_ms ({ms} ms)")]
    ReadTimeout { what: &'static str, ms: u64 },
    #[error(
        "request with more than {} array entries in all (limits.rs)",
        limits::MAX_REQUEST_TOTAL_ENTRIES
    )]
    OverEntryLimit,
    #[error("acks=0 produce failed with error {0}: closing so the client refreshes its metadata")]
    AcksZeroFailed(i16),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
}

/// Decode one request and produce its encoded response (header included);
/// `None` when the request wants no response (acks=0 produce).
async fn handle(
    ctx: &Arc<Ctx>,
    frame: &mut Bytes,
    peer: SocketAddr,
    principal: &str,
) -> std::result::Result<Option<Response>, ConnError> {
    let (api_key_raw, version) = codec::peek_api(frame)?;
    ctx.engine.metrics().request(api_key_raw);
    let api_key = ApiKey::try_from(api_key_raw)
        .map_err(|_| ConnError::Unsupported(format!("unknown API key {api_key_raw}")))?;
    if api_key == ApiKey::ApiVersions {
        if api_versions::unsupported(version) {
            // KIP-511's answer to a newer client: counted like any error.
            ctx.engine.metrics().request_error(
                api_key_raw,
                kafka_protocol::ResponseError::UnsupportedVersion.code(),
            );
        }
        return api_versions::handle(frame, version).map(Response::some);
    }
    let Some(&(_, min, max)) = SUPPORTED_APIS.iter().find(|(k, _, _)| *k == api_key) else {
        if let Some(suppressed) = ctx.warn_admit() {
            tracing::info!(%peer, api = ?api_key, version, suppressed, "request for an API tierlog does not implement");
        }
        ctx.engine.metrics().request_error(
            api_key_raw,
            kafka_protocol::ResponseError::UnsupportedVersion.code(),
        );
        return codec::unsupported_api(frame, api_key, version).map(|r| r.map(Response::from));
    };
    if version < min || version > max {
        return Err(ConnError::Unsupported(format!(
            "{api_key:?} v{version} (supported: v{min} to v{max})"
        )));
    }
    let header: RequestHeader = codec::decode_header(frame, api_key, version)?;
    let c = header.correlation_id;
    // Too many entries: refused before the body is decoded (limits.rs).
    if let Some(entries) = limits::leading_entries(api_key, version, frame) {
        if entries > limits::MAX_REQUEST_ENTRIES {
            let over = limits::Over::Leading(entries);
            if let Some(response) = limits::over_limit_response(api_key, version, c, over) {
                warn_over_limit(ctx, peer, api_key, &header, over);
                return response.map(Response::some);
            }
        }
    }
    // One span per request (debug): every line logged while it is handled
    // carries the API, the client id and the correlation id.
    let span = tracing::debug_span!(
        "request",
        api = ?api_key,
        version,
        client_id = %logging::escape(header.client_id.as_deref().unwrap_or("")),
        correlation_id = c,
        %peer,
    );
    // Too many entries in all its arrays: the decoder stopped at the limit
    // (codec::decode), before any work.
    let auth = authz::Authz::new(
        ctx.engine.acls(),
        Arc::clone(&ctx.settings.authorizer),
        principal,
        peer,
    );
    let handled = dispatch(ctx, api_key, version, header.clone(), frame, &auth)
        .instrument(span.clone())
        .await;
    tracing::debug!(parent: &span, ok = handled.is_ok(), "request handled");
    match handled {
        Err(ConnError::OverEntryLimit) => {
            let over = limits::Over::Total;
            let response = limits::over_limit_response(api_key, version, c, over)
                .ok_or(ConnError::OverEntryLimit)?;
            warn_over_limit(ctx, peer, api_key, &header, over);
            response.map(Response::some)
        }
        other => other,
    }
}

/// The (rate-limited) warning about a request refused over an entry
/// limit, and its INVALID_REQUEST counted.
fn warn_over_limit(
    ctx: &Ctx,
    peer: SocketAddr,
    api_key: ApiKey,
    header: &RequestHeader,
    over: limits::Over,
) {
    ctx.engine.metrics().request_error(
        api_key as i16,
        kafka_protocol::ResponseError::InvalidRequest.code(),
    );
    if let Some(suppressed) = ctx.warn_admit() {
        tracing::warn!(
            %peer,
            api = ?api_key,
            ?over,
            leading_limit = limits::MAX_REQUEST_ENTRIES,
            total_limit = limits::MAX_REQUEST_TOTAL_ENTRIES,
            client_id = %logging::escape(header.client_id.as_deref().unwrap_or("")),
            suppressed,
            "request over the per-request entry limit: answered INVALID_REQUEST"
        );
    }
}

/// Decode the body of a checked request, call its handler and encode the
/// response.
async fn dispatch(
    ctx: &Arc<Ctx>,
    api_key: ApiKey,
    version: i16,
    header: RequestHeader,
    frame: &mut Bytes,
    auth: &authz::Authz,
) -> std::result::Result<Option<Response>, ConnError> {
    let c = header.correlation_id;
    let peer = auth.peer;
    match api_key {
        ApiKey::Metadata => {
            let resp = metadata::metadata(ctx, auth, codec::decode(frame, version)?, version).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeCluster => {
            let resp = metadata::describe_cluster(ctx, auth, codec::decode(frame, version)?);
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::Produce => {
            let started = crate::clock::monotonic_now();
            // The body is the produce's now: its record bytes are patched
            // and appended where the socket read them.
            let (req, records) = produce::decode(std::mem::take(frame), version)?;
            let acks = req.acks;
            let resp = produce::produce(ctx, auth, req, records).await;
            ctx.engine.metrics().produce_duration.observe_since(started);
            if acks == 0 {
                // No answer, but its refusals count; and none can carry
                // the error: close, as Kafka does, so the client
                // refreshes its metadata and sees the problem.
                count_errors(ctx, api_key, &resp);
                return match produce::first_error(&resp) {
                    Some(code) => Err(ConnError::AcksZeroFailed(code)),
                    None => Ok(None),
                };
            }
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::Fetch => {
            let zero_copy = ctx.sendfile && !throttling::in_quota_scope();
            let (resp, regions) =
                fetch::fetch(ctx, auth, codec::decode(frame, version)?, zero_copy).await;
            // Without file regions or large records in memory, encoded
            // the ordinary way.
            let large = |resp: &kafka_protocol::messages::FetchResponse| {
                resp.responses.iter().flat_map(|t| &t.partitions).any(|p| {
                    p.records
                        .as_ref()
                        .is_some_and(records_send::sent_from_memory)
                })
            };
            if regions.is_empty() && !(zero_copy && large(&resp)) {
                return respond(ctx, api_key, version, c, &resp).map(Response::some);
            }
            match records_send::fetch_send(version, c, &resp, regions.clone()) {
                Ok(send) => {
                    count_errors(ctx, api_key, &resp);
                    Ok(Some(Response::Send(send)))
                }
                Err(e) => {
                    // Copied after all (never expected for what fetch builds).
                    tracing::debug!(error = %e, "fetch response encoded without file regions");
                    let resp = records_send::resolve(resp, regions)
                        .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
                    respond(ctx, api_key, version, c, &resp).map(Response::some)
                }
            }
        }
        ApiKey::ListOffsets => {
            let resp =
                list_offsets::list_offsets(ctx, auth, codec::decode(frame, version)?, version)
                    .await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::CreateTopics => {
            let resp = topics::create_topics(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DeleteTopics => {
            let resp = topics::delete_topics(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeConfigs => {
            let resp =
                configs::describe_configs(ctx, auth, codec::decode(frame, version)?, version).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::AlterConfigs => {
            let resp = configs::alter_configs(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::IncrementalAlterConfigs => {
            let resp =
                configs::incremental_alter_configs(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::FindCoordinator => {
            let resp = groups::find_coordinator(ctx, auth, codec::decode(frame, version)?, version);
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::JoinGroup => {
            let client_id = header.client_id.as_deref().unwrap_or("").to_string();
            let host = format!("/{}", peer.ip());
            let req = codec::decode(frame, version)?;
            let resp = groups::join_group(ctx, auth, req, version, &client_id, &host).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::SyncGroup => {
            let resp = groups::sync_group(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::Heartbeat => {
            let resp = groups::heartbeat(ctx, auth, codec::decode(frame, version)?);
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::LeaveGroup => {
            let resp =
                groups::leave_group(ctx, auth, codec::decode(frame, version)?, version).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::OffsetCommit => {
            let resp = offsets::offset_commit(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::OffsetFetch => {
            let resp =
                offsets::offset_fetch(ctx, auth, codec::decode(frame, version)?, version).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::OffsetDelete => {
            let resp = offsets::offset_delete(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::ListGroups => {
            let resp = groups::list_groups(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeGroups => {
            let resp = groups::describe_groups(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::CreatePartitions => {
            let resp =
                partitions::create_partitions(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeProducers => {
            let resp =
                producer_states::describe_producers(ctx, auth, codec::decode(frame, version)?)
                    .await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DeleteRecords => {
            let resp =
                delete_records::delete_records(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let resp =
                leader_epochs::offset_for_leader_epoch(ctx, auth, codec::decode(frame, version)?)
                    .await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeLogDirs => {
            let resp = log_dirs::describe_log_dirs(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::InitProducerId => {
            let resp = producers::init_producer_id(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::AddPartitionsToTxn => {
            let req = codec::decode(frame, version)?;
            let resp = transactions::add_partitions_to_txn(ctx, auth, req, version).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::AddOffsetsToTxn => {
            let resp =
                transactions::add_offsets_to_txn(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::TxnOffsetCommit => {
            let resp =
                transactions::txn_offset_commit(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::EndTxn => {
            let resp = transactions::end_txn(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::ListTransactions => {
            let resp = transactions::list_transactions(ctx, auth, codec::decode(frame, version)?);
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeTransactions => {
            let resp =
                transactions::describe_transactions(ctx, auth, codec::decode(frame, version)?);
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DeleteGroups => {
            let resp = groups::delete_groups(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::AlterUserScramCredentials => {
            let req = codec::decode(frame, version)?;
            let resp = users::alter_user_scram_credentials(ctx, auth, req, peer).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeUserScramCredentials => {
            let req = codec::decode(frame, version)?;
            let resp = users::describe_user_scram_credentials(ctx, auth, req).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::CreateAcls => {
            let resp = acls::create_acls(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeAcls => {
            let resp = acls::describe_acls(auth, codec::decode(frame, version)?);
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DeleteAcls => {
            let resp = acls::delete_acls(ctx, auth, codec::decode(frame, version)?).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::DescribeClientQuotas => {
            let req = codec::decode(frame, version)?;
            let resp = client_quotas::describe_client_quotas(ctx, auth, req).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        ApiKey::AlterClientQuotas => {
            let req = codec::decode(frame, version)?;
            let resp = client_quotas::alter_client_quotas(ctx, auth, req).await;
            respond(ctx, api_key, version, c, &resp).map(Response::some)
        }
        other => Err(ConnError::Unsupported(format!("{other:?} has no handler"))),
    }
}

/// Count the error codes of `resp` (`tierlog_request_errors_total`).
fn count_errors<T: response_errors::ErrorCodes>(ctx: &Ctx, api_key: ApiKey, resp: &T) {
    let metrics = ctx.engine.metrics();
    resp.error_codes(&mut |code| metrics.request_error(api_key as i16, code));
}

/// Count the error codes of `resp`, then encode it (header included),
/// with the throttle time of the client's quotas (`throttling.rs`).
fn respond<
    T: response_errors::ErrorCodes + kafka_protocol::protocol::Encodable + throttling::ThrottleTime,
>(
    ctx: &Ctx,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &T,
) -> std::result::Result<bytes::BytesMut, ConnError> {
    count_errors(ctx, api_key, resp);
    let encoded = codec::respond(api_key, version, correlation_id, resp)?;
    throttling::on_response(ctx, api_key, version, correlation_id, resp, encoded)
}
