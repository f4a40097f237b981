//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod broker;
pub mod s3;
pub mod server;
pub mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;

use tierlog::clock::ManualClock;
use tierlog::format::{decode_records, BatchBuilder, Record};
use tierlog::{Engine, EngineConfig, RemoteSettings};

/// The value every test stores at `offset`, padded to `len` bytes.
pub fn value_for(offset: i64, len: usize) -> Vec<u8> {
    let mut v = format!("value-{offset}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

/// One batch of `count` records whose values are `value_for(first + i)`,
/// timestamps `ts + i`.
pub fn batch(first: i64, count: usize, value_len: usize, ts: i64) -> Vec<u8> {
    batch_with_ts(first, count, value_len, |off| ts + (off - first))
}

/// Like [`batch`], with the timestamp of each offset from `ts_of`.
pub fn batch_with_ts(
    first: i64,
    count: usize,
    value_len: usize,
    ts_of: impl Fn(i64) -> i64,
) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..count {
        let off = first + i as i64;
        b.push(Record::new(
            Some(format!("key-{off}").into_bytes()),
            Some(value_for(off, value_len)),
            ts_of(off),
        ));
    }
    b.build().expect("non-empty batch")
}

/// `batch` made transactional: producer `pid`, epoch 0, base sequence
/// `seq`, its CRC recomputed (as a transactional producer sends it).
pub fn transactional(mut batch: Vec<u8>, pid: i64, seq: i32) -> Vec<u8> {
    batch[22] |= 0x10;
    batch[43..51].copy_from_slice(&pid.to_be_bytes());
    batch[51..53].copy_from_slice(&0i16.to_be_bytes());
    batch[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

pub fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Logs in the test output when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn test_config(dir: &std::path::Path, clock: &ManualClock) -> EngineConfig {
    let mut config = EngineConfig::new(dir).with_clock(Arc::new(clock.clone()));
    config.flush_check_interval = None;
    config
}

/// An engine on `dir` with a manual clock at `now` and no background task.
pub fn open(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    Engine::open(test_config(dir, clock)).expect("engine opens")
}

/// Like [`open`], with the remote tier `remote` (rounds run only when a
/// test asks, with `Engine::run_remote_round`).
pub fn open_with_remote(
    dir: &std::path::Path,
    clock: &ManualClock,
    remote: RemoteSettings,
) -> Engine {
    init_tracing();
    let mut config = test_config(dir, clock);
    config.remote = Some(remote);
    Engine::open(config).expect("engine opens")
}

/// Read every record of a partition from `from`, checking that offsets are
/// dense and each value is `value_for(offset)`. Returns the records.
pub fn read_all_checked(engine: &Engine, topic: &str, partition: u32, from: i64) -> Vec<Record> {
    let end = engine
        .offsets(topic, partition)
        .expect("offsets")
        .log_end_offset;
    let mut out = Vec::new();
    let mut next = from;
    while next < end {
        let read = engine
            .read(topic, partition, next, 64 * 1024)
            .expect("read");
        assert!(
            !read.records.is_empty(),
            "empty read at {next} before the end {end}"
        );
        let records = decode_records(&read.records).expect("stored batches decode");
        for r in records {
            if r.offset < next {
                continue; // the first batch may start before `next`
            }
            assert_eq!(r.offset, next, "offsets are dense");
            let value = r.value.as_deref().expect("value");
            let expected = value_for(r.offset, value.len());
            assert_eq!(value, expected.as_slice(), "value at offset {}", r.offset);
            next += 1;
            out.push(r);
        }
    }
    out
}
