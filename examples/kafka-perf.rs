//! Broker throughput with a real Kafka client (librdkafka), against the
//! engine's own path on the same data in the same run.
//!
//! ```text
//! cargo run --release --example kafka-perf -- produce --bootstrap ADDR --topic T --records N --record-size 1024
//! cargo run --release --example kafka-perf -- produce --transactional --bootstrap ADDR --topic T --records N --txn-records 1000
//! cargo run --release --example kafka-perf -- consume --bootstrap ADDR --topic T --records N
//! cargo run --release --example kafka-perf -- consume --cold --partitions 16 --store-latency-ms 30 --store-stream-mbps 90
//! cargo run --release --example kafka-perf -- mixed --store-latency-ms 30 --store-stream-mbps 90
//! ```
//!
//! `produce` sends N records with acks=1 and measures MB/s, records/s and
//! per-record delivery latency (p50/p99); then it appends the same records
//! in batches of the size librdkafka sent through `Engine::append` in a
//! scratch directory, and prints `produce.ratio_vs_engine_append`; with
//! `--broker-pid` (a local `tierlog serve`) it also reads the broker's CPU
//! time from /proc during the produce rounds and prints
//! `produce.broker_cpu_ms_per_gib`, `append.cpu_ms_per_gib` (the appending
//! thread's CPU) and last `produce.cpu_ratio_vs_engine_append`.
//! `consume` reads N records from the beginning of T with a librdkafka
//! consumer, then reads the same amount back through `Engine::read`, and
//! prints `consume.ratio_vs_engine_read` last. `consume --cold` starts a
//! broker in this process on a file:// remote tier wrapped in an S3
//! profile (each request waits `--store-latency-ms` for its first byte and
//! streams at `--store-stream-mbps`), writes the same batches to a tiered
//! topic (tiered, local copy dropped) and to a local one, reads both with
//! one librdkafka consumer over all partitions, and prints the CPU each
//! read cost this process per GiB (`consume.cold_cpu_ms_per_gib`,
//! `consume.hot_cpu_ms_per_gib`: the broker's side and librdkafka's apart)
//! and `consume.cold_ratio_vs_hot` last. `mixed` (same in-process broker)
//! runs an acks=all producer at a fixed rate alone, then while a consumer
//! catches up on `--catchup-bytes` of the same partition from local disk,
//! then again from the bucket (one producer, connected and warmed before
//! it is timed), and prints the producer's p50/p99 in each, the broker's
//! own produce p99 in each (the bound of the `tierlog_produce_duration_seconds`
//! bucket that holds it: broker time without the client's) and last
//! `produce.p99_ratio_under_catchup` (the worse of the two phases);
//! `--reader-nice 19` runs the consumer's threads at the lowest priority. `produce --transactional` alternates an idempotent producer
//! and a transactional one (a commit every `--txn-records`, flushed as
//! librdkafka's `commit_transaction` flushes), prints where a
//! transaction's time goes (`txn.send_ms_mean`, `txn.commit_ms_mean`) and
//! last `txn.ratio_vs_idempotent`. It is an example so the broker binary
//! never links librdkafka.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tierlog::format::{BatchBuilder, Record};
use tierlog::{Engine, EngineConfig};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Produce {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value = "kafka-perf")]
        topic: String,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Scratch directory for the engine baseline.
        #[arg(long, default_value = "/tmp")]
        scratch: std::path::PathBuf,
        /// The broker's process id (a local `tierlog serve`): its CPU time
        /// during the produce rounds is read from /proc and compared with
        /// the engine's own append of the same records.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Transactions of `--txn-records` records each against the
        /// idempotent producer on the same records, instead of the engine
        /// baseline: prints `txn.ratio_vs_idempotent` last.
        #[arg(long)]
        transactional: bool,
        /// Records per transaction (with `--transactional`).
        #[arg(long, default_value_t = 1000)]
        txn_records: usize,
    },
    Consume {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value = "kafka-perf")]
        topic: String,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value = "/tmp")]
        scratch: std::path::PathBuf,
        /// The broker's process id (a local `tierlog serve`): its CPU time
        /// while the consumer reads, from /proc.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Cold against hot through a broker this run starts in-process
        /// (`--bootstrap` and `--topic` are not used): the same bytes read
        /// by a librdkafka consumer from a tiered topic whose local copy
        /// was dropped, then from a topic on local disk.
        #[arg(long)]
        cold: bool,
        #[command(flatten)]
        cold_args: ColdArgs,
    },
    /// An acks=all producer at a fixed rate, alone and while a consumer
    /// catches up on the same partition (from local disk, then from the
    /// bucket), through a broker this run starts in-process.
    Mixed {
        /// Records per second the producer sends (one at a time).
        #[arg(long, default_value_t = 500)]
        records_per_sec: u32,
        #[arg(long, default_value_t = 1024)]
        record_size: usize,
        /// Bytes the consumer catches up on, in each phase.
        #[arg(long, default_value_t = 1 << 30)]
        catchup_bytes: u64,
        /// Seconds the producer runs alone before each catch-up.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
        /// Run the consumer's threads at this nice value (19: they get
        /// the CPU only when the producer's and the broker's threads do
        /// not want it; shows how much of the p99 is the shared cores).
        #[arg(long, default_value_t = 0)]
        reader_nice: i32,
        #[arg(long, default_value = "/tmp")]
        scratch: std::path::PathBuf,
        #[command(flatten)]
        broker: InProcessArgs,
    },
}

/// `consume --cold`: the log and the S3 profile of the broker it starts.
#[derive(clap::Args)]
struct ColdArgs {
    /// Partitions of each topic, read by one consumer at once.
    #[arg(long, default_value_t = 16)]
    partitions: u32,
    /// Bytes of record batches per topic (split evenly over partitions).
    #[arg(long, default_value_t = 1 << 30)]
    total_bytes: u64,
    #[command(flatten)]
    broker: InProcessArgs,
}

/// The broker a benchmark starts in its own process.
#[derive(clap::Args, Clone)]
struct InProcessArgs {
    /// segment.bytes of the benchmark's topics.
    #[arg(long, default_value_t = 64 << 20)]
    segment_bytes: u64,
    /// Each store request waits this long before its first byte (S3: 20–50).
    #[arg(long, default_value_t = 0)]
    store_latency_ms: u64,
    /// Each GET body streams at this many MB/s (S3: 50–100 per connection);
    /// 0 is unlimited.
    #[arg(long, default_value_t = 0.0)]
    store_stream_mbps: f64,
    /// The broker's remote.cache.bytes (default: the broker's default).
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// The broker's remote.thread.nice (default: the broker's default, 0,
    /// the remote tier's threads at the broker's priority; 10 lowers
    /// theirs).
    #[arg(long)]
    remote_thread_nice: Option<i32>,
}

/// Delivery latencies (µs) and failures, from librdkafka's delivery reports.
struct Latencies {
    micros: Mutex<Vec<u32>>,
    failed: Mutex<u64>,
}

/// The producer's context: records into shared [`Latencies`].
struct Ctx(Arc<Latencies>);

impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                self.0.micros.lock().unwrap().push(us);
            }
            Err(_) => *self.0.failed.lock().unwrap() += 1,
        }
    }
}

/// The command name and user + system CPU ticks of a /proc `stat` line
/// (the name may hold spaces: the fields follow its closing ")").
fn stat_name_and_ticks(stat: &str) -> Option<(&str, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // utime and stime: fields 14 and 15 of the line, 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((&stat[open + 1..close], utime + stime))
}

/// Clock ticks as time.
fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / per_sec)
}

/// User + system CPU time of process `pid` so far (all its threads, the
/// exited ones included), from /proc/PID/stat.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    let (_, ticks) = stat_name_and_ticks(&stat).expect("/proc/PID/stat format");
    ticks_to_duration(ticks)
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Milliseconds of CPU per GiB of record bytes.
fn ms_per_gib(cpu: Duration, bytes: u64) -> f64 {
    cpu.as_secs_f64() * 1000.0 / (bytes as f64 / f64::from(1u32 << 30))
}

/// Send one record to `topic` timed from now, waiting while librdkafka's
/// queue is full; any other refusal fails the benchmark.
fn send_timed(producer: &ThreadedProducer<Ctx>, topic: &str, payload: &[u8]) {
    let mut record =
        BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, r)) => {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "send failed: {e}"
                );
                std::thread::sleep(Duration::from_millis(1));
                record = r;
            }
        }
    }
}

/// Wait until `n` delivery reports (successes and failures) are in. Called
/// before a flush or a commit: the rdkafka crate's `flush` (which
/// `commit_transaction` calls) otherwise polls for up to 100 ms while the
/// ThreadedProducer's own thread takes the reports, a client artifact that
/// capped the transactional benchmark at 10 transactions/s.
fn wait_for_reports(ctx: &Latencies, n: usize) {
    while ctx.micros.lock().unwrap().len() + (*ctx.failed.lock().unwrap() as usize) < n {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// What librdkafka's own `rd_kafka_commit_transaction` does first:
/// `rd_kafka_flush`, which sends lingering batches at once (linger.ms is
/// ignored while a flush runs) and serves delivery reports on this thread
/// until none is outstanding. The rdkafka crate's `flush` calls it with a
/// zero timeout and then polls for up to 100 ms, and waiting for the
/// reports alone leaves a transaction's last partial batch waiting out
/// `linger.ms` (5 ms here): both client artifacts, not broker time.
fn flush_now(producer: &ThreadedProducer<Ctx>, ctx: &Latencies, n: usize, timeout: Duration) {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the producer's handle is valid while `producer` lives;
    // rd_kafka_flush may run beside the ThreadedProducer's poll thread
    // (librdkafka's queues are thread-safe; each report is served once).
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), ms) };
    assert_eq!(
        err,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
        "flush"
    );
    // A report the poll thread took may still be in its callback.
    wait_for_reports(ctx, n);
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn value(i: usize, size: usize) -> Vec<u8> {
    let mut v = vec![b'a' + (i % 26) as u8; size];
    let tag = i.to_le_bytes();
    let n = tag.len().min(size);
    v[..n].copy_from_slice(&tag[..n]);
    v
}

/// Build the engine-side batches for records `range`.
fn batches(range: std::ops::Range<usize>, size: usize, per_batch: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = range.start;
    while i < range.end {
        let mut b = BatchBuilder::new();
        for j in i..(i + per_batch).min(range.end) {
            b.push(Record::new(None, Some(value(j, size)), 1_700_000_000_000));
        }
        out.push(b.build().expect("batch"));
        i += per_batch;
    }
    out
}

/// Append `records` values in batches of `per_batch` through a fresh
/// engine; returns (bytes, elapsed).
fn engine_append(
    dir: &std::path::Path,
    records: usize,
    size: usize,
    per_batch: usize,
) -> (u64, Duration) {
    let engine = Engine::open(EngineConfig::new(dir)).expect("engine");
    engine
        .create_topic("baseline", 1, &Default::default())
        .expect("topic");
    let mut all = batches(0..records, size, per_batch);
    let bytes: u64 = all.iter().map(|b| b.len() as u64).sum();
    let start = Instant::now();
    for b in all.iter_mut() {
        engine.append("baseline", 0, b).expect("append");
    }
    let elapsed = start.elapsed();
    engine.shutdown().expect("shutdown");
    (bytes, elapsed)
}

/// Rounds the produce and engine sides alternate in, so both see the same
/// page-cache and writeback state (run back to back, each phase measures
/// the machine as much as the code on this kind of VM).
const ROUNDS: usize = 5;

fn produce(
    bootstrap: &str,
    topic: &str,
    records: usize,
    size: usize,
    scratch: &std::path::Path,
    broker_pid: Option<u32>,
) {
    let ctx = Arc::new(Latencies {
        micros: Mutex::new(Vec::with_capacity(records)),
        failed: Mutex::new(0),
    });
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", "none")
        .create_with_context(Ctx(Arc::clone(&ctx)))
        .expect("producer");
    let payloads: Vec<Vec<u8>> = (0..1024).map(|i| value(i, size)).collect();
    // Warm up: metadata, connection, topic creation.
    producer
        .send(
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payloads[0]),
        )
        .map_err(|(e, _)| e)
        .expect("warm-up send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    ctx.micros.lock().unwrap().clear();

    // The engine side: the same records in 1 MB batches (librdkafka's
    // batch.size) appended to a scratch engine.
    let dir = scratch.join(format!("kafka-perf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let engine = Engine::open(EngineConfig::new(&dir)).expect("engine");
    engine
        .create_topic("baseline", 1, &Default::default())
        .expect("topic");
    let per_batch = (1_000_000 / (size + 10)).max(1);

    let (mut produce_time, mut engine_time, mut engine_bytes) =
        (Duration::ZERO, Duration::ZERO, 0u64);
    let (mut broker_cpu, mut engine_cpu) = (Duration::ZERO, Duration::ZERO);
    let chunk = records.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = (round * chunk)..((round + 1) * chunk).min(records);
        let broker_before = broker_pid.map(process_cpu);
        let start = Instant::now();
        for i in range.clone() {
            send_timed(&producer, topic, &payloads[i % payloads.len()]);
        }
        wait_for_reports(&ctx, range.end);
        producer.flush(Duration::from_secs(300)).expect("flush");
        produce_time += start.elapsed();
        if let (Some(pid), Some(before)) = (broker_pid, broker_before) {
            broker_cpu += process_cpu(pid).saturating_sub(before);
        }

        let mut bs = batches(range, size, per_batch);
        let cpu_before = thread_cpu();
        let start = Instant::now();
        for b in bs.iter_mut() {
            engine.append("baseline", 0, b).expect("append");
            engine_bytes += b.len() as u64;
        }
        engine_time += start.elapsed();
        engine_cpu += thread_cpu().saturating_sub(cpu_before);
    }
    engine.shutdown().expect("shutdown");
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);

    let failed = *ctx.failed.lock().unwrap();
    assert_eq!(failed, 0, "{failed} records failed");
    let mut lat = std::mem::take(&mut *ctx.micros.lock().unwrap());
    lat.sort_unstable();
    assert_eq!(lat.len(), records, "every record acknowledged");
    let secs = produce_time.as_secs_f64();
    let pmb = (records * size) as f64 / 1e6 / secs;
    let emb = engine_bytes as f64 / 1e6 / engine_time.as_secs_f64();
    println!(
        "produce: {records} records of {size} B, acks=1, librdkafka {}, {ROUNDS} rounds interleaved with the engine",
        rdkafka::util::get_rdkafka_version().1
    );
    println!("produce.MBps={pmb:.1}");
    println!("produce.records_per_sec={:.0}", records as f64 / secs);
    println!("produce.latency_p50_ms={:.2}", percentile(&lat, 0.50));
    println!("produce.latency_p99_ms={:.2}", percentile(&lat, 0.99));
    println!("engine_append.MBps={emb:.1}");
    println!(
        "engine_append.records_per_sec={:.0}",
        records as f64 / engine_time.as_secs_f64()
    );
    let payload = (records * size) as u64;
    println!(
        "append.cpu_ms_per_gib={:.0}",
        ms_per_gib(engine_cpu, payload)
    );
    println!("produce.ratio_vs_engine_append={:.3}", pmb / emb);
    if broker_pid.is_some() {
        println!(
            "produce.broker_cpu_ms_per_gib={:.0}",
            ms_per_gib(broker_cpu, payload)
        );
        println!(
            "produce.cpu_ratio_vs_engine_append={:.3}",
            broker_cpu.as_secs_f64() / engine_cpu.as_secs_f64()
        );
    }
}

fn consume(
    bootstrap: &str,
    topic: &str,
    records: usize,
    scratch: &std::path::Path,
    broker_pid: Option<u32>,
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-perf")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got = 0usize;
    let mut bytes = 0u64;
    let mut size = 0usize;
    let mut start = None;
    let broker_before = broker_pid.map(process_cpu);
    while got < records {
        if let Some(m) = consumer.poll(Duration::from_secs(5)) {
            let m = m.expect("consume");
            start.get_or_insert_with(Instant::now);
            let len = m.payload().map(|p| p.len()).unwrap_or(0);
            size = len;
            bytes += len as u64;
            got += 1;
        } else {
            panic!("no records for 5 s after {got}: does {topic} hold {records} records?");
        }
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    let broker_cpu = broker_pid
        .zip(broker_before)
        .map(|(pid, before)| process_cpu(pid).saturating_sub(before));
    let cmb = bytes as f64 / 1e6 / elapsed.as_secs_f64();

    // The engine's read path over the same amount of data.
    let dir = scratch.join(format!("kafka-perf-read-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ebytes, _) = engine_append(&dir, records, size.max(1), (1_000_000 / (size + 10)).max(1));
    let engine = Engine::open(EngineConfig::new(&dir)).expect("engine");
    let read_start = Instant::now();
    let mut offset = 0i64;
    let mut read_bytes = 0u64;
    let end = engine.offsets("baseline", 0).unwrap().log_end_offset;
    while offset < end {
        let r = engine.read("baseline", 0, offset, 10 << 20).expect("read");
        read_bytes += r.records.len() as u64;
        let mut last = offset;
        for item in tierlog::format::Batches::new(&r.records) {
            last = item.expect("batch").1.next_offset();
        }
        offset = last;
    }
    let relapsed = read_start.elapsed();
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    let emb = read_bytes as f64 / 1e6 / relapsed.as_secs_f64();
    let _ = ebytes;
    println!("consume: {records} records of {size} B from {partitions} partition(s)");
    println!("consume.MBps={cmb:.1}");
    println!(
        "consume.records_per_sec={:.0}",
        got as f64 / elapsed.as_secs_f64()
    );
    if let Some(cpu) = broker_cpu {
        println!(
            "consume.broker_cpu_ms_per_gib={:.0}",
            ms_per_gib(cpu, bytes)
        );
    }
    println!("engine_read.MBps={emb:.1}");
    println!("consume.ratio_vs_engine_read={:.3}", cmb / emb);
}

/// A read of a topic from its start by one librdkafka consumer
/// ([`read_topic`]).
struct TopicRead {
    bytes: u64,
    /// From the first record to the last.
    time: Duration,
    /// CPU time of this process while the consumer existed, and of the
    /// consumer's side of it: librdkafka's own threads (`rdk:`) and the
    /// polling thread.
    process_cpu: Duration,
    client_cpu: Duration,
}

/// CPU time so far of this process's live threads whose name starts
/// with `prefix`, from /proc/self/task.
fn threads_cpu(prefix: &str) -> Duration {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // exited meanwhile
        };
        match stat_name_and_ticks(&stat) {
            Some((name, t)) if name.starts_with(prefix) => ticks += t,
            _ => {}
        }
    }
    ticks_to_duration(ticks)
}

/// Read every partition of `topic` from the beginning to `ends` with one
/// librdkafka consumer.
fn read_topic(bootstrap: &str, topic: &str, ends: &[i64]) -> TopicRead {
    let process_before = process_cpu(std::process::id());
    let client_before = threads_cpu("rdk:") + thread_cpu();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-perf-cold")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..ends.len() {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut next = vec![0i64; ends.len()];
    let mut left = ends.iter().filter(|&&e| e > 0).count();
    let mut bytes = 0u64;
    let mut start = None;
    while left > 0 {
        let Some(m) = consumer.poll(Duration::from_secs(30)) else {
            panic!("no record of {topic} for 30 s; at {next:?} of {ends:?}");
        };
        let m = m.expect("consume");
        start.get_or_insert_with(Instant::now);
        let p = m.partition() as usize;
        assert_eq!(m.offset(), next[p], "{topic}-{p}: in order, none skipped");
        next[p] = m.offset() + 1;
        bytes += (m.payload().map_or(0, |v| v.len()) + m.key().map_or(0, |k| k.len())) as u64;
        if next[p] == ends[p] {
            left -= 1;
        }
    }
    let time = start.map(|s| s.elapsed()).unwrap_or_default();
    // Before the consumer's threads exit with it.
    let client_cpu = (threads_cpu("rdk:") + thread_cpu()).saturating_sub(client_before);
    let process_cpu = process_cpu(std::process::id()).saturating_sub(process_before);
    TopicRead {
        bytes,
        time,
        process_cpu,
        client_cpu,
    }
}

/// A broker in this process, as `tierlog serve` runs it, on a file://
/// remote tier wrapped in the S3 profile of [`InProcessArgs`].
struct InProcess {
    dir: std::path::PathBuf,
    config: tierlog::config::BrokerConfig,
    engine: Arc<Engine>,
    segment_bytes: u64,
    served: Option<(
        tokio::sync::watch::Sender<bool>,
        std::thread::JoinHandle<()>,
    )>,
}

impl InProcess {
    fn open(scratch: &std::path::Path, name: &str, args: &InProcessArgs) -> InProcess {
        use tierlog::remote::profile::StoreProfile;
        use tierlog::remote::RemoteStore;
        let dir = scratch.join(format!("kafka-perf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bucket = dir.join("bucket");
        std::fs::create_dir_all(&bucket).expect("scratch");
        let url = format!("file://{}", bucket.display());
        let mut config = tierlog::config::BrokerConfig {
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".into(),
            remote_url: Some(url.clone()),
            // Tiering and retention run when the benchmark says.
            remote_log_manager_task_interval_ms: 3_600_000,
            ..tierlog::config::BrokerConfig::default()
        };
        if let Some(n) = args.remote_thread_nice {
            config.remote_thread_nice = n;
        }
        if let Some(c) = args.cache_bytes {
            config.remote_cache_bytes = c;
        }
        let profile = StoreProfile::new(args.store_latency_ms, args.store_stream_mbps);
        let mut engine_config = EngineConfig::from_broker(&config);
        if let Some(remote) = engine_config.remote.as_mut() {
            remote.store = Some(profile.wrap(RemoteStore::from_url(&url).expect("store").store));
        }
        let engine = Arc::new(Engine::open(engine_config).expect("engine"));
        InProcess {
            dir,
            config,
            engine,
            segment_bytes: args.segment_bytes,
            served: None,
        }
    }

    /// Create `topic` (tiered: its local copy goes once tiered) and fill
    /// each partition with `per_partition` bytes of 1 KiB records in 1 MB
    /// batches; tiered topics are then moved to the bucket entirely.
    fn fill(&self, topic: &str, partitions: u32, per_partition: u64, tiered: bool) -> Vec<i64> {
        let mut c: std::collections::BTreeMap<String, String> = [
            ("segment.bytes", self.segment_bytes.to_string()),
            ("retention.ms", "-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if tiered {
            c.insert("remote.storage.enable".into(), "true".into());
            c.insert("local.retention.bytes".into(), "0".into());
        }
        self.engine
            .create_topic(topic, partitions, &c)
            .expect("topic");
        let per_batch = 1_000_000 / (1024 + 10);
        let pool = batches(0..per_batch * 8, 1024, per_batch);
        for p in 0..partitions {
            let mut written = 0u64;
            for i in 0.. {
                let b = &pool[i % pool.len()];
                if written + b.len() as u64 > per_partition {
                    break;
                }
                self.engine
                    .append(topic, p, &mut b.clone())
                    .expect("append");
                written += b.len() as u64;
            }
            if tiered {
                self.engine
                    .with_log(topic, p, |l| {
                        l.roll(tierlog::clock::Clock::now_ms(&tierlog::clock::SystemClock))
                    })
                    .expect("roll");
            }
        }
        let ends = || -> Vec<i64> {
            (0..partitions)
                .map(|p| {
                    self.engine
                        .offsets(topic, p)
                        .expect("offsets")
                        .log_end_offset
                })
                .collect()
        };
        if tiered {
            for round in 0.. {
                self.engine.run_remote_round().expect("remote round");
                let moved = (0..partitions).all(|p| {
                    let o = self.engine.offsets(topic, p).expect("offsets");
                    o.local_log_start_offset == o.log_end_offset
                });
                if moved {
                    break;
                }
                assert!(round < 50, "{topic} did not move to the bucket");
            }
        }
        ends()
    }

    /// Serve on an ephemeral port; the bootstrap address.
    fn serve(&mut self) -> String {
        use tierlog::broker::{serve, BrokerSettings};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let bound = listener.local_addr().expect("address");
        let settings = BrokerSettings::from_config(&self.config, bound).expect("settings");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let e = Arc::clone(&self.engine);
        // The benchmark's own broker thread, joined in `close` (as the
        // tests' brokers).
        #[allow(clippy::disallowed_methods)]
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                serve(listener, e, settings, stop_rx).await.expect("serve");
            });
        });
        self.served = Some((stop, thread));
        bound.to_string()
    }

    fn close(mut self) {
        if let Some((stop, thread)) = self.served.take() {
            let _ = stop.send(true);
            thread.join().expect("broker thread");
        }
        self.engine.shutdown().expect("shutdown");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn consume_cold(scratch: &std::path::Path, args: &ColdArgs) {
    let mut broker = InProcess::open(scratch, "cold", &args.broker);
    let partitions = args.partitions.max(1);
    let per_partition = args.total_bytes / u64::from(partitions);
    let cold_ends = broker.fill("cold", partitions, per_partition, true);
    let hot_ends = broker.fill("hot", partitions, per_partition, false);
    assert_eq!(cold_ends, hot_ends, "the same records in both topics");
    let bootstrap = broker.serve();
    let gets_before = broker.engine.metrics().remote_get_requests.get();
    let fetcher = broker.engine.remote_fetcher().expect("a remote tier");
    let index_gets_before = fetcher.stats().index_gets.load(Ordering::SeqCst);
    fetcher.stats().max_window.store(0, Ordering::SeqCst);
    fetcher
        .stats()
        .max_gets_in_flight
        .store(0, Ordering::SeqCst);
    // GETs in flight, sampled every 10 ms while the cold topic is read.
    let reading = std::sync::atomic::AtomicBool::new(true);
    let (cold, in_flight) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            while reading.load(Ordering::SeqCst) {
                samples.push(fetcher.stats().gets_in_flight.load(Ordering::SeqCst));
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        let read = read_topic(&bootstrap, "cold", &cold_ends);
        reading.store(false, Ordering::SeqCst);
        (read, sampler.join().expect("sampler"))
    });
    let gets = broker.engine.metrics().remote_get_requests.get() - gets_before;
    let index_gets = fetcher.stats().index_gets.load(Ordering::SeqCst) - index_gets_before;
    let gets_mean = in_flight.iter().sum::<u64>() as f64 / in_flight.len().max(1) as f64;
    let max_gets = fetcher.stats().max_gets_in_flight.load(Ordering::SeqCst);
    let max_window = fetcher.stats().max_window.load(Ordering::SeqCst);
    let evictions = fetcher.cache().chunk_evictions();
    let hot = read_topic(&bootstrap, "hot", &hot_ends);
    broker.close();

    assert_eq!(cold.bytes, hot.bytes);
    let cold_bytes = cold.bytes;
    let cold_mbps = cold.bytes as f64 / 1e6 / cold.time.as_secs_f64();
    let hot_mbps = hot.bytes as f64 / 1e6 / hot.time.as_secs_f64();
    println!(
        "consume --cold: {:.0} MB of 1 KiB records in {partitions} partitions, store profile {} ms to first byte, {} MB/s per GET, librdkafka {}",
        cold_bytes as f64 / 1e6,
        args.broker.store_latency_ms,
        args.broker.store_stream_mbps,
        rdkafka::util::get_rdkafka_version().1
    );
    println!("consume.cold_MBps={cold_mbps:.1}");
    println!("consume.hot_MBps={hot_mbps:.1}");
    println!(
        "consume.cold_get_requests_per_gib={:.0} ({gets} GETs, {index_gets} of them index loads: librdkafka reads read_committed by default, and a tiered segment's aborted transactions come from its .txnindex object, unless the catalog records it empty)",
        gets as f64 / (cold_bytes as f64 / f64::from(1u32 << 30))
    );
    println!(
        "consume.cold_gets_in_flight_mean={gets_mean:.1} (max {max_gets}, read-ahead window up to {max_window} chunks)"
    );
    println!("consume.cold_chunk_evictions={evictions}");
    // Both reads share this process's CPU: on a machine of few cores the
    // side that costs more per byte is the slower one.
    for (name, read) in [("cold", &cold), ("hot", &hot)] {
        let per_gib =
            |d: Duration| d.as_secs_f64() * 1e3 / (read.bytes as f64 / f64::from(1u32 << 30));
        println!(
            "consume.{name}_cpu_ms_per_gib={:.0} (broker and benchmark {:.0}, librdkafka consumer {:.0}; {:.2} cores busy)",
            per_gib(read.process_cpu),
            per_gib(read.process_cpu.saturating_sub(read.client_cpu)),
            per_gib(read.client_cpu),
            read.process_cpu.as_secs_f64() / read.time.as_secs_f64().max(1e-9)
        );
    }
    println!("consume.cold_ratio_vs_hot={:.3}", cold_mbps / hot_mbps);
}

/// An acks=all producer that sends one record at a time, already
/// connected and with the metadata of `topics` (one record sent to each
/// and acknowledged): what it measures afterwards is produce latency, not
/// its connection set-up.
fn rate_producer(
    bootstrap: &str,
    topics: &[&str],
    size: usize,
) -> (ThreadedProducer<Ctx>, Arc<Latencies>) {
    let ctx = Arc::new(Latencies {
        micros: Mutex::new(Vec::new()),
        failed: Mutex::new(0),
    });
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create_with_context(Ctx(Arc::clone(&ctx)))
        .expect("producer");
    let payload = value(0, size);
    for topic in topics {
        let record =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload)
                .partition(0);
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    wait_for_reports(&ctx, topics.len());
    assert_eq!(*ctx.failed.lock().unwrap(), 0, "warm-up records failed");
    (producer, ctx)
}

/// Send one record to `topic`-0 every `1 / rate` s with `producer` until
/// `done()`; the delivery latencies (µs), sorted.
fn produce_at_rate(
    (producer, ctx): &(ThreadedProducer<Ctx>, Arc<Latencies>),
    topic: &str,
    rate: u32,
    size: usize,
    done: &dyn Fn() -> bool,
) -> Vec<u32> {
    ctx.micros.lock().unwrap().clear();
    let payload = value(0, size);
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut next = Instant::now();
    let mut sent = 0;
    while !done() {
        let record =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload)
                .partition(0);
        producer.send(record).map_err(|(e, _)| e).expect("send");
        sent += 1;
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    wait_for_reports(ctx, sent);
    assert_eq!(*ctx.failed.lock().unwrap(), 0, "records failed");
    let mut lat = std::mem::take(&mut *ctx.micros.lock().unwrap());
    lat.sort_unstable();
    lat
}

/// The upper bound (ms) of the histogram bucket that holds quantile `q`
/// of the observations made between two readings of
/// `Histogram::buckets`; `f64::INFINITY` past the last bound.
fn bucket_quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> f64 {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|(&(bound, a), &(_, b))| (bound, a - b))
        .collect();
    let total: u64 = counts.iter().map(|&(_, n)| n).sum();
    let rank = (total as f64 * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bound, n) in counts {
        seen += n;
        if seen >= rank {
            return bound * 1000.0;
        }
    }
    f64::INFINITY
}

fn mixed(
    scratch: &std::path::Path,
    rate: u32,
    size: usize,
    catchup_bytes: u64,
    idle_secs: u64,
    reader_nice: i32,
    args: &InProcessArgs,
) {
    let mut broker = InProcess::open(scratch, "mixed", args);
    let local_end = broker.fill("mixed-local", 1, catchup_bytes, false);
    let cold_end = broker.fill("mixed-cold", 1, catchup_bytes, true);
    let bootstrap = broker.serve();
    let producer = rate_producer(&bootstrap, &["mixed-local", "mixed-cold"], size);
    // The broker's own view: Produce requests from decoding to the answer.
    let produce_duration = broker.engine.metrics().produce_duration.clone();
    let mut ratios = Vec::new();
    for (phase, topic, ends) in [
        ("local", "mixed-local", &local_end),
        ("cold", "mixed-cold", &cold_end),
    ] {
        let idle_until = Instant::now() + Duration::from_secs(idle_secs);
        let broker_before = produce_duration.buckets();
        let idle = produce_at_rate(&producer, topic, rate, size, &|| {
            Instant::now() >= idle_until
        });
        let broker_idle = produce_duration.buckets();
        let finished = std::sync::atomic::AtomicBool::new(false);
        let (
            busy,
            TopicRead {
                bytes, time: took, ..
            },
        ) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                if reader_nice != 0 {
                    // The consumer's threads (librdkafka's, started from
                    // this one, inherit it) at a lower priority.
                    // SAFETY: no preconditions; who 0 is the calling thread.
                    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, reader_nice) };
                    assert_eq!(rc, 0, "setpriority({reader_nice})");
                }
                let read = read_topic(&bootstrap, topic, ends);
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                read
            });
            let busy = produce_at_rate(&producer, topic, rate, size, &|| {
                finished.load(std::sync::atomic::Ordering::SeqCst)
            });
            (busy, reader.join().expect("reader"))
        });
        let broker_busy = produce_duration.buckets();
        let (idle_p99, busy_p99) = (percentile(&idle, 0.99), percentile(&busy, 0.99));
        println!("produce.idle_{phase}_p50_ms={:.2}", percentile(&idle, 0.50));
        println!("produce.idle_{phase}_p99_ms={idle_p99:.2}");
        println!(
            "produce.under_{phase}_catchup_p50_ms={:.2}",
            percentile(&busy, 0.50)
        );
        println!("produce.under_{phase}_catchup_p99_ms={busy_p99:.2}");
        println!(
            "produce.broker_idle_{phase}_p99_le_ms={}",
            bucket_quantile_ms(&broker_before, &broker_idle, 0.99)
        );
        println!(
            "produce.broker_under_{phase}_catchup_p99_le_ms={}",
            bucket_quantile_ms(&broker_idle, &broker_busy, 0.99)
        );
        println!(
            "consume.{phase}_catchup_MBps={:.1} ({} records produced meanwhile)",
            bytes as f64 / 1e6 / took.as_secs_f64(),
            busy.len()
        );
        ratios.push(busy_p99 / idle_p99);
    }
    drop(producer);
    broker.close();
    println!(
        "mixed: acks=all producer at {rate} records/s of {size} B; a consumer{} catches up on {:.0} MB of the same partition, local then cold (store profile {} ms, {} MB/s per GET), librdkafka {}",
        if reader_nice != 0 {
            format!(" (its threads at nice {reader_nice})")
        } else {
            String::new()
        },
        catchup_bytes as f64 / 1e6,
        args.store_latency_ms,
        args.store_stream_mbps,
        rdkafka::util::get_rdkafka_version().1
    );
    println!(
        "produce.p99_ratio_under_catchup={:.3}",
        ratios.into_iter().fold(0.0, f64::max)
    );
}

/// An acks=all idempotent producer, transactional with `transactional_id`
/// (its transactions initialised), and its delivery records.
fn acks_all_producer(
    bootstrap: &str,
    transactional_id: Option<&str>,
) -> (ThreadedProducer<Ctx>, Arc<Latencies>) {
    let ctx = Arc::new(Latencies {
        micros: Mutex::new(Vec::new()),
        failed: Mutex::new(0),
    });
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", "none");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    let producer: ThreadedProducer<Ctx> = config
        .create_with_context(Ctx(Arc::clone(&ctx)))
        .expect("producer");
    if transactional_id.is_some() {
        producer
            .init_transactions(Duration::from_secs(60))
            .expect("init_transactions");
    }
    (producer, ctx)
}

/// Where a transactional round's time went, summed over its
/// transactions: from `begin_transaction` to the last delivery report
/// (AddPartitionsToTxn, then the records), and in `commit_transaction`
/// (EndTxn).
#[derive(Default)]
struct TxnTimes {
    transactions: usize,
    sending: Duration,
    committing: Duration,
}

/// Send `records` of `size` bytes to `topic` through `producer`, in
/// transactions of `per_txn` when it is transactional (their times added
/// to `times`); the time from the first send to the last acknowledgement
/// (commit).
fn produce_round(
    (producer, ctx): &(ThreadedProducer<Ctx>, Arc<Latencies>),
    topic: &str,
    records: usize,
    size: usize,
    per_txn: Option<usize>,
    times: &mut TxnTimes,
) -> Duration {
    ctx.micros.lock().unwrap().clear();
    let timeout = Duration::from_secs(60);
    let payloads: Vec<Vec<u8>> = (0..1024).map(|i| value(i, size)).collect();
    let chunk = per_txn.unwrap_or(records).max(1);
    let start = Instant::now();
    let mut sent = 0;
    while sent < records {
        let began = Instant::now();
        if per_txn.is_some() {
            producer.begin_transaction().expect("begin_transaction");
        }
        let end = (sent + chunk).min(records);
        for i in sent..end {
            send_timed(producer, topic, &payloads[i % payloads.len()]);
        }
        if per_txn.is_some() {
            flush_now(producer, ctx, end, timeout);
            let committing = Instant::now();
            producer
                .commit_transaction(timeout)
                .expect("commit_transaction");
            times.transactions += 1;
            times.sending += committing - began;
            times.committing += committing.elapsed();
        }
        sent = end;
    }
    wait_for_reports(ctx, records);
    producer.flush(Duration::from_secs(300)).expect("flush");
    let took = start.elapsed();
    assert_eq!(*ctx.failed.lock().unwrap(), 0, "records failed");
    assert_eq!(
        ctx.micros.lock().unwrap().len(),
        records,
        "every record acknowledged"
    );
    took
}

/// `produce --transactional`: rounds of an idempotent producer and of a
/// transactional one on the same records, alternating.
fn produce_transactional(
    bootstrap: &str,
    topic: &str,
    records: usize,
    size: usize,
    txn_records: usize,
) {
    let idempotent_producer = acks_all_producer(bootstrap, None);
    let txn_id = format!("kafka-perf-{}", std::process::id());
    let txn_producer = acks_all_producer(bootstrap, Some(&txn_id));
    // Warm up: metadata, connections, topic creation, the coordinator.
    let mut times = TxnTimes::default();
    produce_round(&idempotent_producer, topic, 1000, size, None, &mut times);
    produce_round(&txn_producer, topic, 1000, size, Some(1000), &mut times);
    let mut times = TxnTimes::default();
    let (mut idempotent, mut transactional) = (Duration::ZERO, Duration::ZERO);
    let chunk = records.div_ceil(ROUNDS);
    for _ in 0..ROUNDS {
        idempotent += produce_round(&idempotent_producer, topic, chunk, size, None, &mut times);
        transactional += produce_round(
            &txn_producer,
            topic,
            chunk,
            size,
            Some(txn_records),
            &mut times,
        );
    }
    let bytes = (chunk * ROUNDS * size) as f64;
    let imb = bytes / 1e6 / idempotent.as_secs_f64();
    let tmb = bytes / 1e6 / transactional.as_secs_f64();
    println!(
        "produce --transactional: {} records of {size} B per side, acks=all, transactions of {txn_records}, {ROUNDS} rounds alternating, librdkafka {}",
        chunk * ROUNDS,
        rdkafka::util::get_rdkafka_version().1
    );
    println!("idempotent.MBps={imb:.1}");
    println!("txn.MBps={tmb:.1}");
    println!(
        "txn.transactions_per_sec={:.1}",
        (chunk * ROUNDS).div_ceil(txn_records.max(1)) as f64 / transactional.as_secs_f64()
    );
    let per_txn_ms = |d: Duration| d.as_secs_f64() * 1000.0 / times.transactions.max(1) as f64;
    // The same records without transactions, for comparison.
    println!(
        "idempotent.ms_per_{txn_records}_records={:.2}",
        idempotent.as_secs_f64() * 1000.0 * txn_records as f64 / (chunk * ROUNDS) as f64
    );
    println!("txn.send_ms_mean={:.2}", per_txn_ms(times.sending));
    println!("txn.commit_ms_mean={:.2}", per_txn_ms(times.committing));
    println!("txn.ratio_vs_idempotent={:.3}", tmb / imb);
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Produce {
            bootstrap,
            topic,
            records,
            record_size,
            transactional: true,
            txn_records,
            ..
        } => produce_transactional(&bootstrap, &topic, records, record_size, txn_records),
        Cmd::Produce {
            bootstrap,
            topic,
            records,
            record_size,
            scratch,
            broker_pid,
            ..
        } => produce(
            &bootstrap,
            &topic,
            records,
            record_size,
            &scratch,
            broker_pid,
        ),
        Cmd::Consume {
            cold: true,
            scratch,
            cold_args,
            ..
        } => consume_cold(&scratch, &cold_args),
        Cmd::Consume {
            bootstrap,
            topic,
            records,
            scratch,
            broker_pid,
            ..
        } => consume(&bootstrap, &topic, records, &scratch, broker_pid),
        Cmd::Mixed {
            records_per_sec,
            record_size,
            catchup_bytes,
            idle_secs,
            reader_nice,
            scratch,
            broker,
        } => mixed(
            &scratch,
            records_per_sec,
            record_size,
            catchup_bytes,
            idle_secs,
            reader_nice,
            &broker,
        ),
    }
}
