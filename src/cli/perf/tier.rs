//! `tierlog perf tier`: tiering throughput against plain uploads of the
//! same bytes to the same store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlog::clock::SystemClock;
use tierlog::{Engine, EngineConfig, Error};

use super::{batch_pool, delete_prefix};
use crate::cli::parse_size;

#[derive(clap::Args)]
pub struct TierArgs {
    /// Directory for the generated log (a scratch subdirectory is removed
    /// afterwards).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store: file://DIR or s3://BUCKET[/PREFIX] (AWS_* variables apply).
    #[arg(long)]
    remote: String,
    /// Bytes of log to generate and tier.
    #[arg(long, value_parser = parse_size, default_value = "512MiB")]
    total_bytes: u64,
    /// Segment size of the generated log.
    #[arg(long, value_parser = parse_size, default_value = "512MiB")]
    segment_bytes: u64,
    /// Multipart part size (grows on large segments: at most 16 parts).
    #[arg(long, value_parser = parse_size, default_value = "16MiB")]
    part_bytes: u64,
    /// S3 profile of the store, for the engine and the raw baseline alike
    /// (off by default).
    #[command(flatten)]
    store_profile: super::store_profile::StoreProfileArgs,
}

/// Upload `files` plainly (one PUT each, the `.log` in parts like the
/// uploader) under `prefix`; returns (bytes, elapsed).
async fn raw_uploads(
    store: &tierlog::remote::RemoteStore,
    files: &[PathBuf],
    prefix: &str,
    part_size: usize,
) -> Result<(u64, Duration), Error> {
    use object_store::{ObjectStoreExt, WriteMultipart};
    let mut bytes = 0u64;
    let start = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(f).map_err(|e| Error::io_public("cannot read", f, e))?;
        bytes += data.len() as u64;
        let key = object_store::path::Path::from(format!("{prefix}/{i}"));
        let fail = |e: object_store::Error| {
            Error::new(
                tierlog::ErrorKind::Unavailable,
                format!("raw upload of {key}: {e}"),
            )
        };
        if data.len() <= part_size {
            store.store.put(&key, data.into()).await.map_err(fail)?;
        } else {
            let part = tierlog::remote::uploader::part_size_for(data.len() as u64, part_size);
            let upload = store.store.put_multipart(&key).await.map_err(fail)?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, part);
            for chunk in data.chunks(part) {
                w.wait_for_capacity(4).await.map_err(fail)?;
                w.write(chunk);
            }
            w.finish().await.map_err(fail)?;
        }
    }
    Ok((bytes, start.elapsed()))
}

pub(super) fn tier(args: TierArgs) -> Result<ExitCode, Error> {
    use tierlog::remote::faults::FaultStore;
    use tierlog::remote::uploader::UploadSettings;
    use tierlog::RemoteSettings;

    let scratch = args.data_dir.join(format!(
        "tierlog-perf-tier-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::io_public("cannot create", &scratch, e))?;
    let run_prefix = format!("perf-{}", uuid::Uuid::new_v4().simple());
    // The run's own prefix, before any ?query.
    let (location, query) = args
        .remote
        .split_once('?')
        .map_or((args.remote.as_str(), ""), |(l, q)| (l, q));
    let tier_url = format!(
        "{}/{run_prefix}{}{query}",
        location.trim_end_matches('/'),
        if query.is_empty() { "" } else { "?" }
    );
    // The engine's store is wrapped to count write requests; the raw
    // baseline uses a client of its own.
    let tier_store = args.store_profile.store(&tier_url)?;
    let counting = Arc::new(FaultStore::new(Arc::clone(&tier_store.store)));
    let faults = Arc::clone(&counting.faults);
    let raw_store = args.store_profile.store(&tier_url)?;
    let part_size = args.part_bytes as usize;

    let result = (|| -> Result<(), Error> {
        let mut config =
            EngineConfig::new(scratch.join("engine")).with_clock(Arc::new(SystemClock));
        config.flush_check_interval = None;
        config.remote = Some(RemoteSettings {
            url: tier_url.clone(),
            task_interval_ms: i64::MAX,
            upload: UploadSettings {
                part_size,
                ..UploadSettings::default()
            },
            fetch: Default::default(),
            orphan_grace_ms: i64::MAX,
            max_segments_per_round: 10_000,
            admin: None,
            store: Some(counting.clone()),
            catalog_snapshot_interval_ms: -1,
            ..RemoteSettings::new(tier_url.clone())
        });
        let engine = Engine::open(config)?;
        let topic_configs = [
            ("remote.storage.enable".to_string(), "true".to_string()),
            ("segment.bytes".to_string(), args.segment_bytes.to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
        ]
        .into();
        engine.create_topic("perf-tier", 1, &topic_configs)?;
        let mut pool = batch_pool(1024, 16)?;
        let n = pool.len() as u64;
        let mut written = 0u64;
        let mut i = 0u64;
        while written < args.total_bytes {
            let b = &mut pool[(i % n) as usize];
            engine.append("perf-tier", 0, b)?;
            written += b.len() as u64;
            i += 1;
        }
        engine.with_log("perf-tier", 0, |l| {
            let now = tierlog::clock::Clock::now_ms(&SystemClock);
            l.roll(now)?;
            l.flush()
        })?;
        let files: Vec<PathBuf> = engine.with_log("perf-tier", 0, |l| {
            let count = l.segment_count() - 1;
            Ok(l.segments()
                .take(count)
                .flat_map(|s| s.file_paths())
                .collect())
        })?;
        let segments = files.len() / 4;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(
                    tierlog::ErrorKind::Internal,
                    format!("cannot start a runtime: {e}"),
                )
            })?;

        let (raw1_bytes, raw1) =
            runtime.block_on(raw_uploads(&raw_store, &files, "raw-1", part_size))?;
        faults.puts.store(0, std::sync::atomic::Ordering::SeqCst);
        let start = Instant::now();
        let report = engine.run_remote_round()?;
        let tier_elapsed = start.elapsed();
        let tier_requests = faults.puts.load(std::sync::atomic::Ordering::SeqCst);
        if report.uploaded != segments {
            return Err(Error::new(
                tierlog::ErrorKind::Unavailable,
                format!(
                    "tiered {} of {segments} segments ({report:?}); see the log for the cause",
                    report.uploaded
                ),
            ));
        }
        let (raw2_bytes, raw2) =
            runtime.block_on(raw_uploads(&raw_store, &files, "raw-2", part_size))?;
        let tiered: u64 = engine
            .remote_segments("perf-tier", 0)?
            .iter()
            .map(|r| r.total_size())
            .sum();
        engine.shutdown()?;

        let tier_mbps = tiered as f64 / 1e6 / tier_elapsed.as_secs_f64();
        let raw_mbps = (raw1_bytes + raw2_bytes) as f64 / 1e6 / (raw1 + raw2).as_secs_f64();
        println!(
            "tier: {:.1} MiB in {segments} segments of up to {} MiB, part size {} MiB, store {}",
            tiered as f64 / (1u64 << 20) as f64,
            args.segment_bytes >> 20,
            part_size >> 20,
            args.remote
        );
        println!("tier: {}", args.store_profile.describe());
        println!("tier.MBps={tier_mbps:.1}");
        println!("raw_put.MBps={raw_mbps:.1}");
        println!("tier.put_requests={tier_requests}");
        println!("tier.ratio_vs_raw_put={:.3}", tier_mbps / raw_mbps);
        println!(
            "tier.put_requests_per_gib={:.1}",
            tier_requests as f64 / (tiered as f64 / (1u64 << 30) as f64)
        );
        Ok(())
    })();
    // Leave nothing behind: local scratch and every object of the run.
    let cleanup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    if let Ok(rt) = cleanup {
        rt.block_on(delete_prefix(&raw_store, None));
    }
    if let Some(dir) = tier_url.strip_prefix("file://") {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| ExitCode::SUCCESS)
}
