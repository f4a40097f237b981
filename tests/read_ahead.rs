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

/// An engine on a store answering after 2 ms, with `PARTITIONS`
/// partitions of `batches` batches each tiered and dropped locally;
/// returns the engine, the store's counters, each partition's end and the
/// chunks below the local starts.
fn tiered(
    dir: &std::path::Path,
    clock: &ManualClock,
    fetch: FetchSettings,
    batches: usize,
) -> (
    Arc<tierlog::Engine>,
    Arc<tierlog::remote::faults::Faults>,
    Vec<i64>,
    u64,
) {
    let inner: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let counting = Arc::new(FaultStore::new(StoreProfile::new(2, 0.0).wrap(inner)));
    let faults = Arc::clone(&counting.faults);
    let chunk = fetch.chunk_bytes;
    let engine = Arc::new(open_with_remote(
        dir,
        clock,
        RemoteSettings {
            task_interval_ms: 0,
            upload: UploadSettings {
                part_size: 5 << 20,
                crc_block_bytes: 4096,
                ..Default::default()
            },
            fetch,
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
        for _ in 0..batches {
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
            .map(|s| s.log_size.div_ceil(chunk))
            .sum::<u64>();
    }
    (engine, faults, ends, chunks)
}

/// Wait (up to 30 s) until no prefetch is in flight.
fn prefetches_done(fetcher: &tierlog::remote::fetcher::RemoteFetcher) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fetcher.prefetches_in_flight() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn partitions_read_together_share_the_get_cap_and_fetch_each_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let fetch = FetchSettings {
        chunk_bytes: CHUNK,
        prefetch_chunks: 2,
        cache_bytes: 4 << 20,
        max_concurrent_gets: MAX_GETS,
        ..Default::default()
    };
    let (engine, faults, ends, chunks) = tiered(dir.path(), &clock, fetch, 150);

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
    prefetches_done(fetcher);
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

/// Readers at different speeds through a chunk cache with room for only
/// a few chunks per partition: the chunks each reader has read to their end
/// leave the cache, so the fast readers never evict what was loaded ahead
/// for the slow one, and every chunk is still fetched once.
#[test]
fn chunks_read_to_their_end_make_room_for_chunks_loaded_ahead() {
    const BIG_CHUNK: u64 = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let fetch = FetchSettings {
        chunk_bytes: BIG_CHUNK,
        prefetch_chunks: 1,
        // Room for 4 readers' chunks and windows, to the chunk (each
        // partition's share is 16 / 4 - 1 = 3 ahead of the one it reads).
        // Segments of 40000 bytes end in a partial chunk: until a read
        // reaching a segment's end dropped that chunk too, they piled up
        // outside every claim, the LRU evicted for them (about 25 times a
        // run) and now and then took a chunk loaded ahead (193 GETs).
        // Without drop-behind: 176 evictions.
        cache_bytes: 16 * BIG_CHUNK,
        max_concurrent_gets: 64,
        ..Default::default()
    };
    let (engine, faults, ends, chunks) = tiered(dir.path(), &clock, fetch, 400);
    let gets_before = faults.gets.load(Ordering::SeqCst);
    let readers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                let end = engine.offsets("t", p).unwrap().log_end_offset;
                let mut next = 0;
                while next < end {
                    // Reads smaller than a chunk; the last partition's
                    // reader is slow.
                    let read = engine.read("t", p, next, 4096).expect("read");
                    let records = tierlog::format::decode_records(&read.records).expect("decode");
                    next = records.last().expect("records").offset + 1;
                    if p == PARTITIONS - 1 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                next
            })
        })
        .collect();
    let reached: Vec<i64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(reached, ends, "every partition read to its end");
    let fetcher = engine.remote_fetcher().unwrap();
    prefetches_done(fetcher);
    let stats = fetcher.stats();
    let chunk_gets = stats.chunk_gets.load(Ordering::SeqCst);
    assert_eq!(
        chunk_gets,
        chunks,
        "{chunks} chunks below the local starts: one GET each, none loaded ahead and evicted unread ({} evicted, {} dropped behind)",
        fetcher.cache().chunk_evictions(),
        stats.dropped_behind.load(Ordering::SeqCst)
    );
    assert_eq!(
        fetcher.cache().chunk_evictions(),
        0,
        "the windows and the chunks read fit the cache: nothing evicted for room"
    );
    assert!(stats.dropped_behind.load(Ordering::SeqCst) > 0);
    let index_gets = stats.index_gets.load(Ordering::SeqCst);
    assert_eq!(
        faults.gets.load(Ordering::SeqCst) - gets_before,
        chunk_gets + index_gets
    );
    engine.shutdown().unwrap();
}

/// A read with something to return never waits for a GET: without
/// read-ahead, a read asking for far more than a chunk gets the batches of
/// the first chunk (the one it had to load), and the next reads go on from
/// there, each loading one chunk, until every record is read in order.
#[test]
fn a_read_answers_with_what_is_loaded_and_the_next_goes_on_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let fetch = FetchSettings {
        chunk_bytes: CHUNK,
        prefetch_chunks: 0,
        cache_bytes: 4 << 20,
        ..Default::default()
    };
    let (engine, _faults, ends, _chunks) = tiered(dir.path(), &clock, fetch, 150);
    let local_start = engine.offsets("t", 0).unwrap().local_log_start_offset;
    let first = engine.read("t", 0, 0, 1 << 20).expect("read");
    assert!(
        !first.records.is_empty() && first.records.len() as u64 <= CHUNK,
        "only the first chunk's batches: {} bytes, chunks of {CHUNK}",
        first.records.len()
    );
    let fetcher = engine.remote_fetcher().unwrap();
    assert_eq!(fetcher.stats().chunk_gets.load(Ordering::SeqCst), 1);
    let mut next = 0;
    let mut reads = 0;
    while next < local_start {
        let read = engine.read("t", 0, next, 1 << 20).expect("read");
        for r in tierlog::format::decode_records(&read.records).expect("decode") {
            if r.offset >= next {
                assert_eq!(r.offset, next, "offsets are dense");
                next += 1;
            }
        }
        reads += 1;
    }
    assert!(reads > 2, "one chunk per read: {reads} reads");
    assert_eq!(
        common::read_all_checked(&engine, "t", 0, 0).len() as i64,
        ends[0]
    );
    engine.shutdown().unwrap();
}

/// A remote read returns its batches as slices of the cached chunks, not
/// copies: one slice per chunk it touches (a batch across a chunk boundary
/// is cut in two), each pointing into the chunk the cache holds, and
/// together they are whole, valid batches from the offset asked.
#[test]
fn a_remote_read_returns_slices_of_the_cached_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let fetch = FetchSettings {
        chunk_bytes: CHUNK,
        prefetch_chunks: 4,
        cache_bytes: 4 << 20,
        ..Default::default()
    };
    let (engine, _faults, _ends, _chunks) = tiered(dir.path(), &clock, fetch, 150);
    let fetcher = engine.remote_fetcher().unwrap();
    // Load the first chunks: a small read, then its read-ahead.
    assert!(!engine.read("t", 0, 0, 100).unwrap().records.is_empty());
    prefetches_done(fetcher);
    let max_bytes = 3 * CHUNK as usize;
    let tierlog::ReadStart::Remote(read) =
        engine.start_read("t", 0, 0, max_bytes, true, true).unwrap()
    else {
        panic!("offset 0 is only in the bucket");
    };
    let read = futures::executor::block_on(engine.read_remote(read)).unwrap();
    let parts = read.batches.parts().to_vec();
    // The read-ahead after it ends first.
    prefetches_done(fetcher);
    let gets = fetcher.stats().chunk_gets.load(Ordering::SeqCst);
    assert!(
        parts.len() >= 3,
        "{} bytes over {CHUNK}-byte chunks come as a slice of each: {} parts",
        read.batches.len(),
        parts.len()
    );
    // The segment holding offset 0 starts at position 0 of its object:
    // every slice but the last ends at a chunk boundary.
    let mut pos = 0u64;
    for p in &parts[..parts.len() - 1] {
        pos += p.len() as u64;
        assert_eq!(pos % CHUNK, 0, "a slice ends at a chunk's end");
    }
    // Each slice lies in the chunk the cache holds (no copy; a chunk
    // loaded again would be another buffer, while the slice holds the old).
    let seg = Arc::new(
        engine
            .remote_segments("t", 0)
            .unwrap()
            .into_iter()
            .find(|s| s.base_offset == 0)
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (n, p) in parts.iter().enumerate() {
        let chunk = rt.block_on(fetcher.chunk(&seg, n as u64)).unwrap();
        let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        assert!(
            range.contains(&(p.as_ptr() as usize)),
            "slice {n} points into chunk {n}"
        );
    }
    assert_eq!(
        fetcher.stats().chunk_gets.load(Ordering::SeqCst),
        gets,
        "no chunk was fetched again: the slices are of the cached ones"
    );
    // Together: whole batches from offset 0, their CRCs valid.
    let bytes = read.batches.to_vec();
    assert!(bytes.len() <= max_bytes);
    let mut next = 0;
    for b in tierlog::format::Batches::new(&bytes) {
        let (_, h, batch) = b.expect("a whole batch");
        tierlog::format::BatchHeader::validate(batch).expect("its CRC");
        assert_eq!(h.base_offset, next);
        next = h.next_offset();
    }
    assert_eq!(read.batches.next_offset(), Some(next));
    assert!(read.batches.holds_records());
    engine.shutdown().unwrap();
}
