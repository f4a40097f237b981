//! The `tierlog` binary: `inspect` on good, cleaned and damaged segments, `serve`
//! starting on a data directory and shutting down cleanly on SIGTERM, and
//! clear errors for bad settings.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{batch, configs, open};
use tierlog::clock::ManualClock;
use tierlog::log::paths::{partition_dir, segment_file, LOG_EXT};

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");

fn segment_with_batches(dir: &std::path::Path) -> std::path::PathBuf {
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = open(dir, &clock);
    engine.create_topic("t", 1, &configs(&[])).unwrap();
    let mut next = 0;
    for i in 0..5 {
        let mut b = batch(next, 1 + i, 20, 1_700_000_000_000);
        next = engine.append("t", 0, &mut b).unwrap().last_offset + 1;
    }
    engine.shutdown().unwrap();
    segment_file(&partition_dir(dir, "t", 0), 0, LOG_EXT)
}

#[test]
fn inspect_dumps_batches_and_flags_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let seg = segment_with_batches(dir.path());
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&seg)
        .arg("--records")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("baseOffset: 0 lastOffset: 0 count: 1"),
        "{text}"
    );
    assert!(
        text.contains("baseOffset: 10 lastOffset: 14 count: 5"),
        "{text}"
    );
    assert_eq!(text.matches("crc: ok").count(), 5, "{text}");
    assert!(
        text.contains("| offset: 12 ") && text.contains("value: value-12-"),
        "{text}"
    );
    assert!(
        text.contains("batches: 5 records: 15 problems: 0"),
        "{text}"
    );

    let index = seg.with_extension("index");
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&index)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("offset: 0 position: 0"));

    // Flip a CRC-covered byte and cut the file mid-batch.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[70] ^= 0xff;
    bytes.truncate(bytes.len() - 7);
    std::fs::write(&seg, &bytes).unwrap();
    let out = Command::new(BIN).arg("inspect").arg(&seg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "damage is a failure exit: {text}");
    assert!(text.contains("crc: BAD (CRC mismatch"), "{text}");
    assert!(
        text.contains("CORRUPT at position") && text.contains("truncated batch"),
        "{text}"
    );

    let out = Command::new(BIN)
        .arg("inspect")
        .arg(dir.path().join("nope.log"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// A compacted partition cleaned once: its first segment, cleaned, holds
/// batches of keys [a b c d] [a b x y] [x z] [c d] from offset 0 minus what
/// the cleaner removed: the first batch whole (offsets 0–3) and x at 6
/// from the second.
fn cleaned_segment(dir: &std::path::Path) -> std::path::PathBuf {
    use tierlog::format::{BatchBuilder, Record};
    let clock = ManualClock::new(1_700_000_000_000);
    let engine = open(dir, &clock);
    engine
        .create_topic("c", 1, &configs(&[("cleanup.policy", "compact")]))
        .unwrap();
    for keys in [
        &["a", "b", "c", "d"][..],
        &["a", "b", "x", "y"],
        &["x", "z"],
        &["c", "d"],
    ] {
        let mut b = BatchBuilder::new();
        for k in keys {
            b.push(Record::new(
                Some(k.as_bytes().to_vec()),
                Some(format!("{k}-value").into_bytes()),
                1_700_000_000_000,
            ));
        }
        engine.append("c", 0, &mut b.build().unwrap()).unwrap();
    }
    engine
        .with_log("c", 0, |l| l.roll(1_700_000_000_000))
        .unwrap();
    engine.flush().unwrap();
    assert_eq!(engine.run_log_cleaner().partitions_cleaned, 1);
    engine.shutdown().unwrap();
    segment_file(&partition_dir(dir, "c", 0), 0, LOG_EXT)
}

#[test]
fn inspect_reads_a_cleaned_segment_and_counts_the_offsets_removed() {
    let dir = tempfile::tempdir().unwrap();
    let seg = cleaned_segment(dir.path());
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&seg)
        .arg("--records")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("baseOffset: 4 lastOffset: 7 count: 3")
            && text.contains("gap: 4 offsets before it thinned: 1 offsets removed inside"),
        "{text}"
    );
    assert!(
        text.contains("baseOffset: 8 lastOffset: 9 count: 2")
            && text.contains("baseOffset: 10 lastOffset: 11 count: 2"),
        "{text}"
    );
    assert!(
        text.contains("| offset: 7 ") && !text.contains("| offset: 6 "),
        "{text}"
    );
    assert!(
        text.contains(
            "offsets removed (as by the log cleaner): 5 (4 between batches, 1 inside batches)"
        ),
        "{text}"
    );
    assert!(text.contains("batches: 3 records: 7 problems: 0"), "{text}");

    // Offsets that go backwards are still a problem: the first batch again
    // at the end.
    let mut bytes = std::fs::read(&seg).unwrap();
    let first = tierlog::format::batch::Batches::new(&bytes)
        .next()
        .unwrap()
        .unwrap()
        .2
        .to_vec();
    bytes.extend_from_slice(&first);
    std::fs::write(&seg, &bytes).unwrap();
    let out = Command::new(BIN).arg("inspect").arg(&seg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("OUT OF ORDER (base offset below 12") && text.contains("problems: 1"),
        "{text}"
    );
}

#[test]
fn serve_opens_the_data_dir_and_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("TIERLOG_CONFIG")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines.next().expect("serve logs until ready").unwrap();
        if line.contains("engine ready") {
            break;
        }
        assert!(Instant::now() < deadline, "serve did not get ready");
    }
    assert!(data.join("catalog.db").exists());
    // The shell's kill builtin: no procps needed.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    assert!(
        data.join(".clean-shutdown").exists(),
        "clean-shutdown marker written"
    );
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tierlog.toml");
    std::fs::write(&config, "[topic_defaults]\n\"segment.bytes\" = \"tiny\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("segment.bytes") && err.contains("tiny"),
        "{err}"
    );

    std::fs::write(&config, "data_dri = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("data_dri"), "{err}");

    let out = Command::new(BIN)
        .args(["perf", "append", "--dir", "/tmp", "--total-bytes", "lots"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("'lots' is not a size"),
        "{err}"
    );
}

#[test]
fn perf_append_prints_the_ratio_last() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "perf",
            "append",
            "--total-bytes",
            "2MiB",
            "--record-size",
            "1024",
            "--rounds",
            "1",
            "--dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let last = text.lines().last().unwrap();
    let ratio: f64 = last
        .strip_prefix("append.ratio_vs_raw_write=")
        .unwrap_or_else(|| panic!("last line is the ratio: {last}"))
        .parse()
        .unwrap();
    assert!(ratio > 0.0 && ratio.is_finite());
    assert!(
        text.contains("append.engine.MBps=") && text.contains("append.raw_write.records_per_sec=")
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch files removed"
    );
}

#[test]
fn perf_tier_prints_requests_per_gib_last_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "perf",
            "tier",
            "--total-bytes",
            "3MiB",
            "--segment-bytes",
            "1MiB",
            "--data-dir",
        ])
        .arg(dir.path())
        .arg("--remote")
        .arg(format!("file://{}", remote.path().display()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap();
    let per_gib: f64 = last
        .strip_prefix("tier.put_requests_per_gib=")
        .unwrap_or_else(|| panic!("last line is requests per GiB: {last}"))
        .parse()
        .unwrap();
    assert!(per_gib > 0.0);
    assert!(
        text.contains("tier.ratio_vs_raw_put=") && text.contains("raw_put.MBps="),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch removed"
    );
    assert_eq!(
        std::fs::read_dir(remote.path()).unwrap().count(),
        0,
        "objects removed"
    );
}

/// The figures of a `perf compact` run's output, by name.
fn perf_figure(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn perf_compact_prints_the_ratio_last_locally_and_tiered() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "perf",
                "compact",
                "--keys",
                "100",
                "--updates",
                "3000",
                "--value-size",
                "100",
                "--segment-bytes",
                "64KiB",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figure = |name: &str| perf_figure(&text, name);
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("compact.ratio_vs_raw_rw="),
        "the ratio is last: {text}"
    );
    let ratio = figure("compact.ratio_vs_raw_rw");
    assert!(ratio > 0.0 && ratio.is_finite(), "{text}");
    assert!(figure("compact.MBps") > 0.0 && figure("raw_rw.MBps") > 0.0);
    // 100 keys left of 3000 records: about 1/30 of the bytes.
    let after = figure("compact.bytes_after_ratio");
    assert!(after > 0.0 && after < 0.1, "{text}");
    assert!(figure("compact.peak_rss_mib") >= 1.0, "{text}");
    assert!(!text.contains("compact.remote_"), "{text}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch removed"
    );

    // Tiered: the same log cleaned in the bucket, with its requests per GiB.
    let url = format!("file://{}", bucket.path().display());
    let out = run(&["--remote", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figure = |name: &str| perf_figure(&text, name);
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("compact.ratio_vs_raw_rw="),
        "the ratio is last: {text}"
    );
    let ratio = figure("compact.ratio_vs_raw_rw");
    assert!(ratio > 0.0 && ratio.is_finite(), "{text}");
    assert!(figure("compact.MBps") > 0.0 && figure("raw_rw.MBps") > 0.0);
    let after = figure("compact.bytes_after_ratio");
    assert!(after > 0.0 && after < 0.1, "{text}");
    // The pass read the tiered segments and uploaded cleaned ones.
    assert!(
        figure("compact.remote_get_requests_per_gib") > 0.0,
        "{text}"
    );
    assert!(
        figure("compact.remote_put_requests_per_gib") > 0.0,
        "{text}"
    );
    assert!(figure("compact.peak_rss_mib") >= 1.0, "{text}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch removed"
    );
    assert_eq!(
        std::fs::read_dir(bucket.path()).unwrap().count(),
        0,
        "objects removed"
    );
}

#[test]
fn restore_rebuilds_from_a_file_remote_and_refuses_a_used_directory() {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&remote_dir).unwrap();
    let url = format!("file://{}", remote_dir.display());
    let clock = ManualClock::new(1_700_000_000_000);
    let mut config = tierlog::EngineConfig::new(dir.path().join("old"));
    config.clock = std::sync::Arc::new(clock.clone());
    config.flush_check_interval = None;
    config.remote = Some(tierlog::RemoteSettings {
        task_interval_ms: 0,
        ..tierlog::RemoteSettings::new(url.clone())
    });
    let engine = tierlog::Engine::open(config).unwrap();
    engine
        .create_topic(
            "t",
            1,
            &configs(&[("remote.storage.enable", "true"), ("segment.bytes", "2000")]),
        )
        .unwrap();
    let mut next = 0;
    for _ in 0..20 {
        let mut b = batch(next, 5, 50, 1_700_000_000_000);
        next = engine.append("t", 0, &mut b).unwrap().last_offset + 1;
    }
    engine.run_remote_round().unwrap();
    let tiered = engine.offsets("t", 0).unwrap().last_tiered_offset.unwrap();
    engine.shutdown().unwrap();
    drop(engine);

    let fresh = dir.path().join("new");
    let run = || {
        Command::new(BIN)
            .args(["restore", "--data-dir"])
            .arg(&fresh)
            .args(["--remote", &url])
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("t-0: offsets 0..{} in the bucket", tiered + 1)),
        "{stdout}"
    );
    assert!(
        stdout.contains("restored 1 topics, 1 partitions"),
        "{stdout}"
    );
    // An engine without background jobs wrote no catalog snapshot: the
    // summary says what that leaves out.
    assert!(
        stdout.contains(
            "catalog snapshot: none usable in the bucket; restored the tiered segments only"
        ),
        "{stdout}"
    );
    let again = run();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("without topics"), "{stderr}");
}

/// `inspect` prints a `.txnindex` entry by entry (Kafka's fields), and a
/// garbled one is a failure naming the file.
#[test]
fn inspect_prints_a_txnindex_and_refuses_a_garbled_one() {
    use tierlog::format::producer_snapshot::AbortedTxn;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000000000000000000.txnindex");
    let entry = AbortedTxn {
        producer_id: 7,
        first_offset: 3,
        last_offset: 9,
        last_stable_offset: 10,
    };
    std::fs::write(
        &path,
        tierlog::format::txn_index::encode_txn_index(&[entry]),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("producerId: 7 firstOffset: 3 lastOffset: 9 lastStableOffset: 10"),
        "{text}"
    );
    assert!(text.contains("entries: 1"), "{text}");
    std::fs::write(&path, [0u8; 35]).unwrap();
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("00000000000000000000.txnindex") && err.contains("34-byte"),
        "{err}"
    );
}
