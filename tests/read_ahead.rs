//! Read-ahead of catch-up readers through a store that answers like S3
//! (first-byte latency per request): many partitions read at once stay
//! within the broker's cap on chunk GETs in flight, fetch every chunk once,
//! and leave no prefetch bytes in flight.

// Tests drive readers on their own threads; the one-owner rules of
// clippy.toml are for the library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{batch_with_ts, configs, open_with_remote, read_all_checked};
use tierlog::catalog::RemoteState;
use tierlog::clock::ManualClock;
use tierlog::remote::faults::FaultStore;
use tierlog::remote::fetcher::FetchSettings;
use tierlog::remote::profile::StoreProfile;
use tierlog::remote::uploader::UploadSettings;
use tierlog::RemoteSettings;

const T0: i64 = 1_700_000_000_000;
const CHUNK: u64 = 8 * 1024;
const PARTITIONS: u32 = 4;
const MAX_GETS: usize = 3;

#[test]
fn partitions_read_together_share_the_get_cap_and_fetch_each_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let inner: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let counting = Arc::new(FaultStore::new(StoreProfile::new(2, 0.0).wrap(inner)));
    let faults = Arc::clone(&counting.faults);
    let engine = Arc::new(open_with_remote(
        dir.path(),
        &clock,
        RemoteSettings {
            task_interval_ms: 0,
            upload: UploadSettings {
                part_size: 5 << 20,
                crc_block_bytes: 4096,
                ..Default::default()
            },
            fetch: FetchSettings {
                chunk_bytes: CHUNK,
                prefetch_chunks: 2,
                cache_bytes: 4 << 20,
                max_concurrent_gets: MAX_GETS,
                ..Default::default()
            },
            store: Some(counting),
            ..RemoteSettings::new("test://store")
        },
    ));
    engine
        .create_topic(
            "t",
            PARTITIONS,
            &configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "40000"),
                ("local.retention.bytes", "0"),
                ("retention.ms", "-1"),
            ]),
        )
        .unwrap();
    let mut ends = vec![];
    for p in 0..PARTITIONS {
        let mut next = 0;
        for _ in 0..150 {
            let mut b = batch_with_ts(next, 5, 300, |o| T0 + 10 * o);
            next = engine.append("t", p, &mut b).unwrap().last_offset + 1;
        }
        ends.push(next);
    }
    for _ in 0..3 {
        engine.run_remote_round().unwrap();
    }
    let mut chunks = 0;
    for p in 0..PARTITIONS {
        let local_start = engine.offsets("t", p).unwrap().local_log_start_offset;
        assert!(
            local_start > 0,
            "partition {p} has tiered data only the bucket holds"
        );
        chunks += engine
            .remote_segments("t", p)
            .unwrap()
            .iter()
            .filter(|s| s.state == RemoteState::CopyFinished && s.base_offset < local_start)
            .map(|s| s.log_size.div_ceil(CHUNK))
            .sum::<u64>();
    }

    let gets_before = faults.gets.load(Ordering::SeqCst);
    let readers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || read_all_checked(&engine, "t", p, 0).len() as i64)
        })
        .collect();
    let counts: Vec<i64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(counts, ends, "every record of every partition, in order");

    let fetcher = engine.remote_fetcher().unwrap();
    // The last reads' prefetches (past the tiered data there are none, but
    // wait for any still running) end with nothing in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fetcher.prefetches_in_flight() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = fetcher.stats();
    assert_eq!(stats.prefetch_bytes_in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(stats.gets_in_flight.load(Ordering::SeqCst), 0);
    let max_gets = stats.max_gets_in_flight.load(Ordering::SeqCst);
    assert!(
        (1..=MAX_GETS as u64).contains(&max_gets),
        "at most remote.fetch.max.concurrent.gets = {MAX_GETS} chunk GETs in flight, saw {max_gets}"
    );
    assert!(
        stats.prefetches.load(Ordering::SeqCst) > 0,
        "reads were read ahead"
    );
    let chunk_gets = stats.chunk_gets.load(Ordering::SeqCst);
    let index_gets = stats.index_gets.load(Ordering::SeqCst);
    assert_eq!(
        chunk_gets, chunks,
        "{chunks} chunks below the local starts: one GET each, none wasted"
    );
    assert_eq!(
        faults.gets.load(Ordering::SeqCst) - gets_before,
        chunk_gets + index_gets
    );
    engine.shutdown().unwrap();
}
