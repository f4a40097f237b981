//! `tierlog serve`: open the engine and run until told to stop.

use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use tierlog::broker::BrokerSettings;
use tierlog::config::BrokerConfig;
use tierlog::{Engine, EngineConfig, Error};

/// Flags of `tierlog serve`; each also reads a `TIERLOG_*` variable.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Settings file (default: ./tierlog.toml when it exists).
    #[arg(long, env = "TIERLOG_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (partitions, catalog).
    #[arg(long, env = "TIERLOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the Kafka listener.
    #[arg(long, env = "TIERLOG_LISTEN")]
    listen: Option<String>,
    /// The remote tier: file://DIR or s3://BUCKET[/PREFIX] (default:
    /// file://<data-dir>/remote). S3 settings come from the AWS_* variables.
    #[arg(long, env = "TIERLOG_REMOTE")]
    remote: Option<String>,
    /// Create the remote bucket if it does not exist (s3:// only).
    #[arg(long)]
    create_bucket: bool,
    /// host:port clients are told to connect to (default: the listen address).
    #[arg(long, env = "TIERLOG_ADVERTISED_LISTENER")]
    advertised_listener: Option<String>,
    /// host:port of the metrics endpoint: /metrics, /healthz, /readyz and
    /// the status page at / (default: 127.0.0.1:9644; "off" turns it off).
    #[arg(long, env = "TIERLOG_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, env = "TIERLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Connections served at once (Kafka's max.connections).
    #[arg(long, env = "TIERLOG_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
    /// Connections one client address may hold (Kafka's max.connections.per.ip).
    #[arg(long, env = "TIERLOG_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<u32>,
    /// Close connections idle this long (Kafka's connections.max.idle.ms).
    #[arg(long, env = "TIERLOG_CONNECTIONS_MAX_IDLE_MS")]
    connections_max_idle_ms: Option<u64>,
    /// Close a connection whose request frame takes longer than this to arrive.
    #[arg(long, env = "TIERLOG_REQUEST_READ_TIMEOUT_MS")]
    request_read_timeout_ms: Option<u64>,
    /// Between catalog snapshots in the bucket (catalog.snapshot.interval.ms;
    /// -1: none).
    #[arg(
        long,
        env = "TIERLOG_CATALOG_SNAPSHOT_INTERVAL_MS",
        allow_hyphen_values = true
    )]
    catalog_snapshot_interval_ms: Option<i64>,
    /// A Kafka listener, PROTOCOL://host:port with PROTOCOL one of
    /// PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; repeat for several
    /// (replaces `listeners` of the file; TIERLOG_LISTENERS is
    /// comma-separated).
    #[arg(long = "listener", env = "TIERLOG_LISTENERS", value_delimiter = ',')]
    listeners: Vec<String>,
    /// Advertised address per listener protocol, PROTOCOL://host:port
    /// (Kafka's advertised.listeners); repeatable, comma-separated in the
    /// variable.
    #[arg(
        long = "advertised-listeners",
        env = "TIERLOG_ADVERTISED_LISTENERS",
        value_delimiter = ','
    )]
    advertised_listeners: Vec<String>,
    /// Kafka's ssl.keystore.type (PEM only).
    #[arg(long, env = "TIERLOG_SSL_KEYSTORE_TYPE")]
    ssl_keystore_type: Option<String>,
    /// PEM file with the private key and certificate chain (Kafka's
    /// ssl.keystore.location); reloaded on SIGHUP.
    #[arg(long, env = "TIERLOG_SSL_KEYSTORE_LOCATION")]
    ssl_keystore_location: Option<PathBuf>,
    /// PEM CA bundle client certificates must chain to (Kafka's
    /// ssl.truststore.location).
    #[arg(long, env = "TIERLOG_SSL_TRUSTSTORE_LOCATION")]
    ssl_truststore_location: Option<PathBuf>,
    /// none, requested or required (Kafka's ssl.client.auth).
    #[arg(long, env = "TIERLOG_SSL_CLIENT_AUTH")]
    ssl_client_auth: Option<String>,
    /// SASL mechanisms offered (Kafka's sasl.enabled.mechanisms),
    /// comma-separated.
    #[arg(long, env = "TIERLOG_SASL_ENABLED_MECHANISMS", value_delimiter = ',')]
    sasl_enabled_mechanisms: Vec<String>,
    /// Longest SASL session before re-authentication (KIP-368's
    /// connections.max.reauth.ms; 0: never).
    #[arg(long, env = "TIERLOG_CONNECTIONS_MAX_REAUTH_MS")]
    connections_max_reauth_ms: Option<u64>,
    /// When no ACL names a resource, everyone may use it (Kafka's
    /// allow.everyone.if.no.acl.found; default true).
    #[arg(long, env = "TIERLOG_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    allow_everyone_if_no_acl_found: Option<bool>,
    /// Principals allowed everything (Kafka's super.users):
    /// "User:admin;User:ops".
    #[arg(long, env = "TIERLOG_SUPER_USERS")]
    super_users: Option<String>,
    /// Client quota rates are measured over this many windows (Kafka's
    /// quota.window.num).
    #[arg(long, env = "TIERLOG_QUOTA_WINDOW_NUM")]
    quota_window_num: Option<u32>,
    /// Length of one client quota window in seconds (Kafka's
    /// quota.window.size.seconds).
    #[arg(long, env = "TIERLOG_QUOTA_WINDOW_SIZE_SECONDS")]
    quota_window_size_seconds: Option<u32>,
}

/// How `serve` writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (tracing-subscriber's json format: the
    /// fields, the level, the target and the current spans).
    Json,
}

/// Settings file, then variables and flags on top.
pub fn broker_config(args: &ServeArgs) -> Result<BrokerConfig, Error> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None => {
            let default = PathBuf::from(BrokerConfig::DEFAULT_FILE);
            if default.exists() {
                BrokerConfig::load(&default)?
            } else {
                BrokerConfig::default()
            }
        }
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    if let Some(r) = &args.remote {
        config.remote_url = Some(r.clone());
    }
    if let Some(a) = &args.advertised_listener {
        config.advertised_listener = Some(a.clone());
    }
    if let Some(m) = &args.metrics_listen {
        config.metrics_listen = Some(m.clone());
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_ip {
        config.max_connections_per_ip = n;
    }
    if let Some(ms) = args.connections_max_idle_ms {
        config.connections_max_idle_ms = ms;
    }
    if let Some(ms) = args.request_read_timeout_ms {
        config.request_read_timeout_ms = ms;
    }
    if let Some(ms) = args.catalog_snapshot_interval_ms {
        config.catalog_snapshot_interval_ms = ms;
    }
    if !args.listeners.is_empty() {
        config.listeners = args.listeners.clone();
    }
    if !args.advertised_listeners.is_empty() {
        config.advertised_listeners = args.advertised_listeners.clone();
    }
    if let Some(t) = &args.ssl_keystore_type {
        config.ssl_keystore_type = t.clone();
    }
    if let Some(p) = &args.ssl_keystore_location {
        config.ssl_keystore_location = Some(p.clone());
    }
    if let Some(p) = &args.ssl_truststore_location {
        config.ssl_truststore_location = Some(p.clone());
    }
    if let Some(a) = &args.ssl_client_auth {
        config.ssl_client_auth = a.clone();
    }
    if !args.sasl_enabled_mechanisms.is_empty() {
        config.sasl_enabled_mechanisms = args.sasl_enabled_mechanisms.clone();
    }
    if let Some(ms) = args.connections_max_reauth_ms {
        config.connections_max_reauth_ms = ms;
    }
    if let Some(allow) = args.allow_everyone_if_no_acl_found {
        config.allow_everyone_if_no_acl_found = allow;
    }
    if let Some(users) = &args.super_users {
        config.super_users = users.clone();
    }
    if let Some(n) = args.quota_window_num {
        config.quota_window_num = n;
    }
    if let Some(s) = args.quota_window_size_seconds {
        config.quota_window_size_seconds = s;
    }
    config.validate()?;
    Ok(config)
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let config = broker_config(&args)?;
    let create_bucket = args.create_bucket;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tierlog-broker")
        .build()
        .map_err(|e| {
            Error::new(
                tierlog::ErrorKind::Internal,
                format!("cannot start runtime: {e}"),
            )
        })?;
    if create_bucket {
        let url = config.remote_url.clone().unwrap_or_default();
        runtime.block_on(async {
            match tierlog::remote::admin::S3Admin::from_url(&url).await? {
                Some(admin) => {
                    if admin.create_bucket_if_missing().await? {
                        tracing::info!(remote = %url.split('?').next().unwrap_or_default(), "created the bucket");
                    }
                    Ok(())
                }
                None => Err(Error::invalid("--create-bucket needs an s3:// --remote URL")),
            }
        })?;
    }
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: BrokerConfig) -> Result<(), Error> {
    // Every listener is bound (and the TLS files read) before the engine
    // opens: a busy port or a bad certificate stops serve here.
    let mut listeners = Vec::new();
    let mut first_bound = None;
    for spec in config.listener_specs()? {
        let listener = tokio::net::TcpListener::bind(&spec.bind)
            .await
            .map_err(|e| {
                Error::new(
                    tierlog::ErrorKind::Unavailable,
                    format!("cannot listen on {}://{}: {e}", spec.protocol, spec.bind),
                )
            })?;
        let bound = listener.local_addr().map_err(|e| {
            Error::new(
                tierlog::ErrorKind::Unavailable,
                format!("cannot read the listen address: {e}"),
            )
        })?;
        first_bound.get_or_insert(bound);
        let advertised = match &spec.advertised {
            Some(a) => tierlog::broker::split_host_port(a)?,
            None if bound.ip().is_unspecified() => {
                return Err(Error::invalid(format!(
                    "listener {}://{bound} is a wildcard address: set advertised.listeners \
                     (--advertised-listeners, TIERLOG_ADVERTISED_LISTENERS)",
                    spec.protocol
                )))
            }
            None => (bound.ip().to_string(), i32::from(bound.port())),
        };
        listeners.push(tierlog::broker::BoundListener {
            listener,
            protocol: spec.protocol,
            advertised: Some(advertised),
        });
    }
    let bound = first_bound.ok_or_else(|| Error::invalid("no listener configured"))?;
    let tls = match config.tls_files()? {
        Some(files) => Some(Arc::new(tierlog::security::tls::TlsReloader::new(files)?)),
        None => None,
    };
    // The first listener's address is the default advertised one; each
    // listener carries its own.
    let mut plaintext_config = config.clone();
    plaintext_config.advertised_listener = Some(format!(
        "{}:{}",
        listeners[0]
            .advertised
            .as_ref()
            .map(|a| a.0.clone())
            .unwrap_or_default(),
        listeners[0]
            .advertised
            .as_ref()
            .map(|a| a.1)
            .unwrap_or_default()
    ));
    let settings = BrokerSettings::from_config(&plaintext_config, bound)?;
    // The metrics endpoint answers /healthz and /readyz while the engine
    // opens (recovery can take a while); its pages come once it is open.
    // A busy port stops serve here, naming the setting, before any file
    // is touched.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine_config = EngineConfig::from_broker(&config);
    let endpoint = Arc::new(tierlog::metrics::Endpoint::new(Arc::clone(
        &engine_config.readiness,
    )));
    let metrics_task = match config.metrics_address() {
        None => None,
        Some(addr) => {
            let metrics_listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Error::new(
                    tierlog::ErrorKind::Unavailable,
                    format!(
                        "cannot listen on {addr} (metrics_listen; default {}): {e}; set --metrics-listen / TIERLOG_METRICS_LISTEN / metrics_listen to another host:port, or \"off\"",
                        tierlog::config::METRICS_LISTEN_DEFAULT
                    ),
                )
            })?;
            // Owned here like the broker task, stopped by the same signal
            // and awaited below.
            Some(tokio::spawn(tierlog::metrics::serve(
                metrics_listener,
                Arc::clone(&endpoint),
                stop_rx.clone(),
            )))
        }
    };
    // Kafka asks operators to raise the open-file limit; tierlog raises the
    // soft limit to the hard one itself, and keeps segment handles within
    // half of it (tierlog::log::file_handles).
    if let Some((before, after)) = tierlog::log::file_handles::raise_open_file_limit() {
        tracing::info!(
            open_file_limit = after,
            raised_from = before,
            segment_handles_max = tierlog::log::file_handles::capacity(),
            "open file limit"
        );
    }
    let engine = tokio::task::spawn_blocking(move || Engine::open(engine_config))
        .await
        .map_err(|e| {
            Error::new(
                tierlog::ErrorKind::Internal,
                format!("engine open failed: {e}"),
            )
        })??;
    let engine = Arc::new(engine);
    for (partition, report) in engine.recovery_reports() {
        tracing::warn!(%partition, recovered = report.segments_recovered, truncated_bytes = report.truncated_bytes, "recovered after an unclean shutdown");
    }
    // Before "engine ready": a SIGTERM right after it must find the
    // handler installed, not the default disposition.
    let signal = shutdown_signal().map_err(|e| {
        Error::new(
            tierlog::ErrorKind::Internal,
            format!("cannot install signal handlers: {e}"),
        )
    })?;
    tracing::info!(data_dir = %config.data_dir.display(), topics = engine.topics().len(), "engine ready");
    endpoint.attach(engine.endpoint_pages());
    let broker = tokio::spawn(tierlog::broker::serve_listeners(
        listeners,
        tls,
        Arc::clone(&engine),
        settings,
        stop_rx,
    ));
    signal.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    match broker.await {
        Ok(result) => result?,
        Err(e) => tracing::error!(error = %e, "broker task failed"),
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .map_err(|e| {
            Error::new(
                tierlog::ErrorKind::Internal,
                format!("engine shutdown failed: {e}"),
            )
        })?
}

/// Install the SIGTERM and Ctrl-C handlers now (before the listener says
/// it is ready, so a signal right after that is never lost to the default
/// disposition) and return a future that ends on the first signal.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
