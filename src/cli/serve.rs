//! `tierlog serve`: open the engine and run until told to stop.

use std::path::PathBuf;
use std::process::ExitCode;

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
    config.validate()?;
    Ok(config)
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Error> {
    let config = broker_config(&args)?;
    let engine = Engine::open(EngineConfig::from_broker(&config))?;
    for (partition, report) in engine.recovery_reports() {
        tracing::warn!(%partition, recovered = report.segments_recovered, truncated_bytes = report.truncated_bytes, "recovered after an unclean shutdown");
    }
    tracing::info!(
        data_dir = %config.data_dir.display(),
        topics = engine.topics().len(),
        "engine ready; the Kafka listener is not implemented yet (issue: Kafka wire-protocol broker). Ctrl-C to stop"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                tierlog::ErrorKind::Internal,
                format!("cannot start runtime: {e}"),
            )
        })?;
    runtime.block_on(wait_for_signal());
    tracing::info!("shutting down");
    engine.shutdown()?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
