//! The crash matrix (issue 15): the real `tierlog serve` binary, built
//! with the `failpoints` feature, is killed at every named step of the
//! tiering lifecycle, of local roll, flush, retention and topic deletion
//! (`TIERLOG_FAILPOINT`, which aborts the process at that instant), and
//! with SIGKILL at random moments, while librdkafka producers with
//! acks=all write to it. After each restart every acknowledged record must
//! be readable with its bytes and offsets must be dense from 0. After a
//! last clean round: the bucket holds exactly the objects of the catalog's
//! `COPY_FINISHED` segments (and live topics' topic.json), no row is left
//! half done, and every offset is in a committed remote segment or a local
//! one (no local segment went before its copy was committed). Last,
//! `tierlog restore` is killed after writing the local logs and run again.
//!
//! It runs on `file://` and on S3 (moto when `TIERLOG_TEST_S3_ENDPOINT` is
//! set, else an in-process s3s-fs server); the S3 run adds a topic whose
//! 5.5 MiB segments go up as multipart uploads, a failpoint before such an
//! upload completes, and the check that no upload is left open.
//!
//! Run: `cargo test --locked --features failpoints --test crash_matrix --
//! --nocapture` (scripts/test.sh does). The default profile runs every
//! failpoint once plus a few random kills; `TIERLOG_CRASH_LONG=1` runs
//! 120 cycles (each failpoint at its 1st to 3rd hit, random kills
//! between); `TIERLOG_CRASH_CYCLES=N` sets the count; `TIERLOG_CRASH_SEED`
//! repeats a run.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::{Offset, TopicPartitionList};
use tierlog::catalog::{Catalog, RemoteState, SqliteCatalog};
use tierlog::remote::keys::{segment_key, topic_config_key, SegmentObject};

mod common;
#[path = "crash_matrix/compaction.rs"]
mod compaction;

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");

/// The two tests each run brokers at full tilt: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
const MAIN: &str = "matrix";
const PARTITIONS: i32 = 2;

/// Every failpoint `tierlog serve` passes (restore's is run separately).
/// Each is hit many times a cycle except the topic deletion's (once).
const SERVE_FAILPOINTS: &[&str] = &[
    "log.roll.after_seal",
    "log.flush.before_recovery_point",
    "rlm.copy.after_copy_started",
    "rlm.copy.after_object.index",
    "rlm.copy.after_object.timeindex",
    "rlm.copy.after_object.log",
    "rlm.copy.after_manifest",
    "rlm.copy.after_copy_finished",
    "retention.after_delete_local",
    "topic.delete.after_catalog",
    "rlm.delete.after_delete_started",
    "rlm.delete.after_objects",
];
const RESTORE_FAILPOINT: &str = "restore.after_local_logs";
/// Hit only with an S3 bucket: multipart uploads (segments above 5 MiB).
const MULTIPART_FAILPOINT: &str = "rlm.copy.before_multipart_complete";

/// Short intervals so every job runs many times per cycle.
const SETTINGS: &str = "\
flush_check_interval_ms = 20
remote_log_manager_task_interval_ms = 100
log_retention_check_interval_ms = 100
auto_create_topics_enable = false
";

fn topic_configs() -> [(&'static str, &'static str); 5] {
    [
        ("remote.storage.enable", "true"),
        ("segment.bytes", "16384"),
        ("index.interval.bytes", "1024"),
        ("retention.ms", "-1"),
        // Local copies go as soon as they are tiered.
        ("local.retention.bytes", "0"),
    ]
}

/// How `tierlog serve` is started: its settings file and the environment
/// it gets beyond the test's own (S3 credentials).
struct Setup {
    settings: PathBuf,
    env: Vec<(String, String)>,
}

/// Where the remote tier lives.
enum Bucket {
    /// `file://<data>/remote`, the default.
    File,
    /// A bucket on an S3 server (moto in CI, else an in-process s3s-fs).
    S3(common::s3::S3),
}

impl Bucket {
    /// The settings lines that point a broker at it (none: the default).
    fn settings(&self) -> String {
        match self {
            Bucket::File => String::new(),
            Bucket::S3(_) => format!(
                "remote_url = \"{}\"\nremote_upload_part_bytes = {MULTIPART_PART}\n",
                self.url(Path::new(""))
            ),
        }
    }

    /// The remote URL of a broker on `data`.
    fn url(&self, data: &Path) -> String {
        match self {
            Bucket::File => format!("file://{}", data.join("remote").display()),
            Bucket::S3(s3) => format!(
                "s3://{}?endpoint={}&region=us-east-1&allow_http=true",
                s3.bucket, s3.endpoint
            ),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Bucket::File => Vec::new(),
            Bucket::S3(_) => vec![
                (
                    "AWS_ACCESS_KEY_ID".to_string(),
                    common::s3::ACCESS_KEY.to_string(),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY".to_string(),
                    common::s3::SECRET_KEY.to_string(),
                ),
            ],
        }
    }
}

/// S3's smallest multipart part, and the segment size of the topic whose
/// segments go up in two parts (S3 runs only).
const MULTIPART_PART: usize = 5 << 20;
const BIG: &str = "big";
const BIG_SEGMENT: usize = (5 << 20) + (512 << 10);

/// xorshift64*: deterministic, dependency-free randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a cycle does to the broker.
#[derive(Debug, Clone)]
enum Kill {
    /// Armed with `TIERLOG_FAILPOINT=<name>:<nth>`; SIGKILL if it has not
    /// fired within the cycle's time.
    Failpoint(&'static str, u64),
    /// SIGKILL this long after the process started (startup, recovery and
    /// the verification included).
    Random(Duration),
}

/// The value of the `seq`-th record of a cycle: unique, 60–260 bytes.
fn value(topic: &str, cycle: usize, seq: u64) -> Vec<u8> {
    let mut v = format!("{topic}/{cycle}/{seq}/").into_bytes();
    let len = 60 + (seq.wrapping_mul(2_654_435_761) % 200) as usize;
    while v.len() < len {
        v.push(b'a' + ((v.len() as u64 + seq) % 26) as u8);
    }
    v
}

// ---------------------------------------------------------------------------
// The broker process

struct Broker {
    child: Arc<Mutex<Child>>,
    /// Every stderr line so far.
    log: Arc<Mutex<Vec<String>>>,
    addr: Option<String>,
}

impl Broker {
    /// Start `tierlog serve` and wait until it listens or exits.
    fn start(data: &Path, setup: &Setup, failpoint: Option<(&str, u64)>) -> Broker {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&setup.settings)
            // Not the default 127.0.0.1:9644: other tests' servers run beside it.
            .args(["--metrics-listen", "127.0.0.1:0"])
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "info")
            .env_remove("TIERLOG_REMOTE")
            .env_remove("TIERLOG_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((name, nth)) = failpoint {
            cmd.env("TIERLOG_FAILPOINT", format!("{name}:{nth}"));
        }
        let mut child = cmd.spawn().expect("spawn tierlog serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Kafka listener ready") {
                    if let Some(at) = line.find("listen=") {
                        let addr = line[at + 7..].split_whitespace().next().unwrap_or("");
                        let _ = tx.send(addr.to_string());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let child = Arc::new(Mutex::new(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut broker = Broker {
            child,
            log,
            addr: None,
        };
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(addr) => {
                    broker.addr = Some(addr);
                    return broker;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return broker,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if broker.exited() {
                        return broker;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "tierlog serve did not start:\n{}",
                        broker.tail()
                    );
                }
            }
        }
    }

    fn exited(&self) -> bool {
        self.child.lock().unwrap().try_wait().unwrap().is_some()
    }

    /// Wait for the exit; the failpoint that fired, if one did.
    fn wait(&self) -> (std::process::ExitStatus, Option<String>) {
        let status = self.child.lock().unwrap().wait().unwrap();
        // The stderr reader may still hold the last lines for a moment.
        std::thread::sleep(Duration::from_millis(30));
        let fired = self.log.lock().unwrap().iter().find_map(|l| {
            let rest = l.strip_prefix("failpoint ")?;
            Some(rest.split_once(' ')?.0.to_string())
        });
        (status, fired)
    }

    /// A clean stop (SIGTERM), which must succeed.
    fn stop(&self) {
        let pid = self.child.lock().unwrap().id();
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let status = self.child.lock().unwrap().wait().unwrap();
        assert!(
            status.success(),
            "clean shutdown: {status}\n{}",
            self.tail()
        );
    }

    fn tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGKILLs the broker at `at` unless cancelled first.
struct Killer {
    cancel: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Killer {
    fn arm(broker: &Broker, at: Instant) -> Killer {
        let child = Arc::clone(&broker.child);
        let (cancel, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let wait = at.saturating_duration_since(Instant::now());
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(wait) {
                // Child::kill on a child already reaped signals nothing.
                let _ = child.lock().unwrap().kill();
            }
        });
        Killer { cancel, thread }
    }

    fn disarm(self) {
        let _ = self.cancel.send(());
        self.thread.join().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Clients

/// What was acknowledged: topic → partition → offset → value.
type Acked = HashMap<String, HashMap<i32, BTreeMap<i64, Vec<u8>>>>;

/// Successful deliveries as reported: (topic, partition, offset, value).
type DeliveryLog = Arc<Mutex<Vec<(String, i32, i64, Vec<u8>)>>>;

struct AckContext {
    acked: DeliveryLog,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            self.acked.lock().unwrap().push((
                m.topic().to_string(),
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
}

/// Produces to the topics in `targets` until stopped; every delivery
/// report that succeeded is recorded.
struct ProducerLoop {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<String>>>,
    acked: DeliveryLog,
    thread: std::thread::JoinHandle<u64>,
}

impl ProducerLoop {
    fn start(addr: &str, cycle: usize, targets: Vec<String>) -> ProducerLoop {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let producer: BaseProducer<AckContext> = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "10000")
            .set("reconnect.backoff.max.ms", "200")
            .create_with_context(AckContext {
                acked: Arc::clone(&acked),
            })
            .expect("producer");
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets));
        let (s, t) = (Arc::clone(&stop), Arc::clone(&targets));
        let thread = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !s.load(Ordering::SeqCst) {
                let topics = t.lock().unwrap().clone();
                // About 1500 records a second per topic.
                for topic in &topics {
                    for _ in 0..4 {
                        let v = value(topic, cycle, seq);
                        let p = (seq % PARTITIONS as u64) as i32;
                        let r = BaseRecord::<(), [u8]>::to(topic).partition(p).payload(&v);
                        if producer.send(r).is_err() {
                            break; // queue full or topic gone: try later
                        }
                        seq += 1;
                    }
                }
                producer.poll(Duration::from_millis(5));
            }
            // Whatever was not acknowledged by now never will be.
            producer.purge(PurgeConfig::default().queue().inflight());
            producer.poll(Duration::from_millis(100));
            seq
        });
        ProducerLoop {
            stop,
            targets,
            acked,
            thread,
        }
    }

    /// Produces `count` records of `len` bytes to partition 0 of `topic`
    /// once, as fast as acknowledged.
    fn bulk(addr: &str, cycle: usize, topic: &str, count: u64, len: usize) -> ProducerLoop {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let producer: BaseProducer<AckContext> = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "10000")
            .set("reconnect.backoff.max.ms", "200")
            .create_with_context(AckContext {
                acked: Arc::clone(&acked),
            })
            .expect("producer");
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(vec![topic.to_string()]));
        let (s, topic) = (Arc::clone(&stop), topic.to_string());
        let thread = std::thread::spawn(move || {
            let mut seq = 0u64;
            while seq < count && !s.load(Ordering::SeqCst) {
                let mut v = value(&topic, cycle, seq);
                v.resize(len, b'a' + (seq % 26) as u8);
                let r = BaseRecord::<(), [u8]>::to(&topic).partition(0).payload(&v);
                if producer.send(r).is_ok() {
                    seq += 1;
                }
                producer.poll(Duration::from_millis(1));
            }
            while !s.load(Ordering::SeqCst) && producer.in_flight_count() > 0 {
                producer.poll(Duration::from_millis(10));
            }
            producer.purge(PurgeConfig::default().queue().inflight());
            producer.poll(Duration::from_millis(100));
            seq
        });
        ProducerLoop {
            stop,
            targets,
            acked,
            thread,
        }
    }

    fn finish(self, acked: &mut Acked) -> (u64, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.thread.join().unwrap();
        let got = std::mem::take(&mut *self.acked.lock().unwrap());
        let n = got.len();
        for (topic, p, offset, v) in got {
            let prev = acked
                .entry(topic.clone())
                .or_default()
                .entry(p)
                .or_default()
                .insert(offset, v);
            assert!(
                prev.is_none(),
                "{topic}-{p} offset {offset} acknowledged twice"
            );
        }
        (sent, n)
    }
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin")
}

/// Short timeouts: the broker may be killed during the request (the
/// default request timeout is a minute).
fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)))
}

fn create_topic(addr: &str, name: &str) -> bool {
    create_topic_with(addr, name, &[])
}

/// Like [`create_topic`], with configs over [`topic_configs`].
fn create_topic_with(addr: &str, name: &str, extra: &[(&str, &str)]) -> bool {
    let mut configs: BTreeMap<&str, &str> = topic_configs().into_iter().collect();
    configs.extend(extra.iter().copied());
    let mut t = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    for (k, v) in &configs {
        t = t.set(k, v);
    }
    let opts = admin_options();
    matches!(
        futures::executor::block_on(admin(addr).create_topics([&t], &opts)).as_deref(),
        Ok([Ok(_)])
    )
}

fn delete_topic(addr: &str, name: &str) -> bool {
    let opts = admin_options();
    matches!(
        futures::executor::block_on(admin(addr).delete_topics(&[name], &opts)).as_deref(),
        Ok([Ok(_)])
    )
}

/// The outcome of reading everything back.
enum Verified {
    /// Every acknowledged record checked: (records read, acknowledged
    /// records among them).
    Ok(usize, usize),
    /// The broker died meanwhile (a failpoint or a random kill).
    Interrupted,
}

/// Read every partition of the topics in `acked` from offset 0 to its
/// high watermark and check them against the model. `gone` are topics
/// whose deletion was acknowledged: they must not exist; `deleting` those
/// whose deletion was asked for: they may be missing.
fn verify(
    broker: &Broker,
    acked: &Acked,
    gone: &HashSet<String>,
    deleting: &HashSet<String>,
) -> Verified {
    let Some(addr) = broker.addr.as_deref() else {
        return Verified::Interrupted;
    };
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "crash-matrix-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("queued.min.messages", "1000000")
        // A gap in the log is an error, not a silent jump.
        .set("auto.offset.reset", "error")
        .create()
    {
        Ok(c) => c,
        Err(_) => return Verified::Interrupted,
    };
    // Short requests, retried, so a broker that dies meanwhile is noticed
    // at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metadata = loop {
        match consumer.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(m) => break m,
            Err(_) if broker.exited() => return Verified::Interrupted,
            Err(e) if Instant::now() > deadline => panic!("metadata: {e}\n{}", broker.tail()),
            Err(_) => {}
        }
    };
    let live: HashSet<String> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .collect();
    for g in gone {
        assert!(
            !live.contains(g),
            "topic {g} is back after its deletion was acknowledged"
        );
    }
    let mut highs = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (topic, parts) in acked {
        if !live.contains(topic) {
            assert!(
                deleting.contains(topic),
                "topic {topic} is missing after a restart\n{}",
                broker.tail()
            );
            continue; // its deletion was asked for, not acknowledged
        }
        for p in 0..PARTITIONS {
            // The low watermark is 0 but after a restore, where a
            // partition with nothing in the bucket starts, empty, at the
            // log end its catalog snapshot saw.
            let (low, high) = loop {
                match consumer.fetch_watermarks(topic, p, Duration::from_millis(500)) {
                    Ok(w) => break w,
                    Err(_) if broker.exited() => return Verified::Interrupted,
                    Err(e) if Instant::now() > deadline => {
                        panic!("watermarks of {topic}-{p}: {e}\n{}", broker.tail())
                    }
                    Err(_) => {}
                }
            };
            if let Some(last) = parts.get(&p).and_then(|m| m.keys().next_back()) {
                assert!(
                    high > *last,
                    "{topic}-{p}: high watermark {high}, but offset {last} was acknowledged\n{}",
                    broker.tail()
                );
            }
            highs.insert((topic.clone(), p), (low, high));
            if high > low {
                tpl.add_partition_offset(topic, p, Offset::Offset(low))
                    .unwrap();
            }
        }
    }
    if tpl.count() == 0 {
        return Verified::Ok(0, 0);
    }
    consumer.assign(&tpl).unwrap();
    let mut read: HashMap<(String, i32), BTreeMap<i64, Vec<u8>>> = HashMap::new();
    let mut pending: HashSet<(String, i32)> = highs
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(k, _)| k.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        if broker.exited() {
            return Verified::Interrupted;
        }
        assert!(
            Instant::now() < deadline,
            "reading back timed out; still missing {pending:?}\n{}",
            broker.tail()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key = (m.topic().to_string(), m.partition());
                let (_, high) = highs[&key];
                if m.offset() < high {
                    read.entry(key.clone())
                        .or_default()
                        .insert(m.offset(), m.payload().unwrap_or_default().to_vec());
                }
                if m.offset() + 1 >= high {
                    pending.remove(&key);
                }
            }
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)))
                if !broker.exited() =>
            {
                let next: Vec<(&(String, i32), i64)> = pending
                    .iter()
                    .map(|k| {
                        (
                            k,
                            read.get(k)
                                .and_then(|m| m.keys().next_back())
                                .map_or(0, |o| o + 1),
                        )
                    })
                    .collect();
                panic!(
                    "reading back hit an offset out of range (a hole in the log); next offsets to read {next:?}\n{}",
                    broker.tail()
                );
            }
            Some(Err(_)) | None => {}
        }
    }
    let (mut total, mut checked) = (0, 0);
    for ((topic, p), &(low, high)) in &highs {
        let got = read.remove(&(topic.clone(), *p)).unwrap_or_default();
        total += got.len();
        // Dense: every offset below the high watermark, from the low one
        // (an acknowledged record below it is missed by the check after).
        if got.len() as i64 != high - low {
            let missing: Vec<i64> = (low..high)
                .filter(|o| !got.contains_key(o))
                .take(10)
                .collect();
            panic!(
                "{topic}-{p}: {} records read below high watermark {high}; first missing offsets {missing:?}\n{}",
                got.len(),
                broker.tail()
            );
        }
        for (offset, v) in acked[topic].get(p).into_iter().flatten() {
            assert_eq!(
                got.get(offset),
                Some(v),
                "{topic}-{p} offset {offset}: acknowledged value not read back"
            );
            checked += 1;
        }
    }
    Verified::Ok(total, checked)
}

// ---------------------------------------------------------------------------
// The bucket and the catalog, after a clean stop

/// Check the bucket against the catalog, and the local logs against the
/// committed remote segments. Returns (committed segments, objects).
fn check_bucket_and_catalog(data: &Path, bucket: &Bucket) -> (usize, usize) {
    let catalog = SqliteCatalog::open(&data.join("catalog.db")).unwrap();
    for state in [RemoteState::CopyStarted, RemoteState::DeleteStarted] {
        let rows = catalog.remote_segments_in_state(state).unwrap();
        assert!(
            rows.is_empty(),
            "after the reaper ran, {} rows are still {state:?}: {:?}",
            rows.len(),
            rows.iter()
                .map(|r| (&r.topic, r.partition, r.base_offset))
                .collect::<Vec<_>>()
        );
    }
    let mut expected: HashMap<String, u64> = HashMap::new(); // key → size (u64::MAX: any)
    let mut committed = 0;
    for topic in catalog.topics().unwrap() {
        expected.insert(
            topic_config_key(&topic.name, &topic.id).to_string(),
            u64::MAX,
        );
        for p in 0..topic.partitions {
            let mut rows: Vec<_> = catalog
                .remote_segments(topic.id, p)
                .unwrap()
                .into_iter()
                .filter(|r| r.state == RemoteState::CopyFinished)
                .collect();
            rows.sort_by_key(|r| r.base_offset);
            // The committed segments are a prefix of the log, without gaps.
            let mut next = 0i64;
            for r in &rows {
                assert_eq!(
                    r.base_offset, next,
                    "{}-{p}: committed remote segments leave a gap before {}",
                    topic.name, r.base_offset
                );
                next = r.last_offset + 1;
                committed += 1;
                for (o, size) in [
                    (SegmentObject::Log, r.log_size),
                    (SegmentObject::Index, r.index_size),
                    (SegmentObject::TimeIndex, r.timeindex_size),
                    // Listed in the manifest only (no catalog column).
                    (SegmentObject::TxnIndex, u64::MAX),
                    (SegmentObject::Manifest, u64::MAX),
                ] {
                    let key =
                        segment_key(&topic.name, &topic.id, p, r.base_offset, &r.segment_uuid, o);
                    expected.insert(key.to_string(), size);
                }
            }
            // No local segment went before its copy was committed: the
            // local log starts at or below the committed end.
            let dir = data.join(format!("{}-{p}", topic.name));
            let local_start = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_suffix(".log")?.parse::<i64>().ok()
                })
                .min()
                .unwrap_or_else(|| panic!("{} has no segment", dir.display()));
            assert!(
                local_start <= next,
                "{}-{p}: local log starts at {local_start}, committed remote segments end at {next}: \
                 a local segment was deleted before its copy was committed",
                topic.name
            );
        }
    }
    let found = bucket_objects(data, bucket);
    // Catalog snapshots (`_catalog/`) belong to no segment: not orphans.
    let orphans: Vec<&String> = found
        .keys()
        .filter(|k| !expected.contains_key(*k) && !k.starts_with("_catalog/"))
        .collect();
    assert!(
        orphans.is_empty(),
        "{} objects in the bucket the catalog does not reference: {:?}",
        orphans.len(),
        orphans.iter().take(20).collect::<Vec<_>>()
    );
    for (key, size) in &expected {
        match found.get(key) {
            None => panic!("committed object {key} is missing from the bucket"),
            Some(s) if *size != u64::MAX && s != size => {
                panic!("{key}: {s} bytes in the bucket, {size} in the catalog")
            }
            _ => {}
        }
    }
    (committed, found.len())
}

/// Every object in the bucket, key → size: on file:// including what
/// object_store's listing hides (staging files of interrupted puts); on S3
/// a ListObjectsV2 of the whole bucket, and no multipart upload may be
/// left open (the reaper aborts those of a crash at start-up).
fn bucket_objects(data: &Path, bucket: &Bucket) -> HashMap<String, u64> {
    let mut found: HashMap<String, u64> = HashMap::new();
    match bucket {
        Bucket::File => {
            let root = data.join("remote");
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries {
                    let e = e.unwrap();
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() {
                        stack.push(e.path());
                    } else {
                        let key = e
                            .path()
                            .strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned();
                        found.insert(key, meta.len());
                    }
                }
            }
        }
        Bucket::S3(s3) => {
            let client = s3.client();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut token = None;
                loop {
                    let page = client
                        .list_objects_v2()
                        .bucket(&s3.bucket)
                        .set_continuation_token(token.take())
                        .send()
                        .await
                        .expect("ListObjectsV2");
                    for o in page.contents() {
                        found.insert(
                            o.key().unwrap_or_default().to_string(),
                            o.size().unwrap_or_default() as u64,
                        );
                    }
                    match page.next_continuation_token() {
                        Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                        _ => break,
                    }
                }
                if s3.lists_multipart_uploads() {
                    let open = client
                        .list_multipart_uploads()
                        .bucket(&s3.bucket)
                        .send()
                        .await
                        .expect("ListMultipartUploads");
                    let keys: Vec<&str> = open.uploads().iter().filter_map(|u| u.key()).collect();
                    assert!(keys.is_empty(), "multipart uploads left open: {keys:?}");
                }
            });
        }
    }
    found
}

// ---------------------------------------------------------------------------

/// The hit to abort at: one topic is deleted per cycle.
fn nth(failpoint: &str, n: u64) -> u64 {
    if failpoint == "topic.delete.after_catalog" {
        1
    } else {
        n
    }
}

fn schedule(rng: &mut Rng, failpoints: &[&'static str]) -> (Vec<Kill>, &'static str) {
    let long = std::env::var("TIERLOG_CRASH_LONG").is_ok_and(|v| v == "1");
    let cycles: usize = std::env::var("TIERLOG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 120 } else { 0 });
    let random = |rng: &mut Rng| Kill::Random(Duration::from_millis(150 + rng.below(3000)));
    let mut plan = Vec::new();
    // Every failpoint once, first hit for most, a later one for some;
    // random kills between.
    for (i, fp) in failpoints.iter().enumerate() {
        plan.push(Kill::Failpoint(fp, nth(fp, 1 + (i % 2) as u64)));
        if i % 2 == 1 {
            plan.push(random(rng));
        }
    }
    if cycles == 0 {
        return (plan, "default");
    }
    while plan.len() < cycles {
        if rng.below(2) == 0 {
            let fp = failpoints[rng.below(failpoints.len() as u64) as usize];
            plan.push(Kill::Failpoint(fp, nth(fp, 1 + rng.below(3))));
        } else {
            plan.push(random(rng));
        }
    }
    (plan, if long { "long" } else { "custom" })
}

#[test]
fn killed_at_every_failpoint_and_at_random_loses_no_acknowledged_record() {
    run_matrix(Bucket::File);
}

/// The same on S3 (moto when `TIERLOG_TEST_S3_ENDPOINT` is set, as
/// scripts/test.sh does; else an in-process s3s-fs server), with a second
/// topic whose 5.5 MiB segments go up as two-part multipart uploads, killed
/// before an upload completes too. After the last clean round no multipart
/// upload is left open (moto only: s3s-fs cannot list them).
#[test]
fn on_s3_with_multipart_uploads_loses_no_acknowledged_record() {
    run_matrix(Bucket::S3(common::s3::S3::start()));
}

fn run_matrix(bucket: Bucket) {
    let s3 = matches!(bucket, Bucket::S3(_));
    let mut failpoints = SERVE_FAILPOINTS.to_vec();
    if s3 {
        failpoints.push(MULTIPART_FAILPOINT);
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let seed = std::env::var("TIERLOG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5_4001u64);
    let mut rng = Rng(seed);
    let (plan, profile) = schedule(&mut rng, &failpoints);
    let on = if s3 { "S3" } else { "file://" };
    eprintln!(
        "crash matrix on {on}: {profile} profile, {} cycles, seed {seed} (TIERLOG_CRASH_SEED repeats it)",
        plan.len()
    );
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let settings = tmp.path().join("tierlog.toml");
    std::fs::write(&settings, format!("{SETTINGS}{}", bucket.settings())).unwrap();
    let setup = Setup {
        settings,
        env: bucket.env(),
    };

    // The topics, from a clean broker.
    let broker = Broker::start(&data, &setup, None);
    let addr = broker.addr.clone().unwrap();
    assert!(create_topic(&addr, MAIN));
    let segment = BIG_SEGMENT.to_string();
    assert!(!s3 || create_topic_with(&addr, BIG, &[("segment.bytes", &segment)]));
    broker.stop();
    drop(broker);

    let mut acked: Acked = HashMap::new();
    acked.insert(MAIN.to_string(), HashMap::new());
    if s3 {
        acked.insert(BIG.to_string(), HashMap::new());
    }
    let mut gone: HashSet<String> = HashSet::new();
    let mut deleting: HashSet<String> = HashSet::new();
    let mut hits: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut misses: Vec<&'static str> = Vec::new();
    let (mut random_kills, mut verified, mut interrupted) = (0, 0, 0);
    let mut queue: std::collections::VecDeque<Kill> = plan.into();
    let mut retries: HashMap<&'static str, usize> = HashMap::new();
    let mut cycle = 0usize;
    while let Some(kill) = queue.pop_front() {
        cycle += 1;
        let spawned = Instant::now();
        let broker = match &kill {
            Kill::Failpoint(name, nth) => Broker::start(&data, &setup, Some((name, *nth))),
            Kill::Random(_) => Broker::start(&data, &setup, None),
        };
        // A random kill may land in the verification; a failpoint cycle's
        // deadline starts after it, so a hung read-back is never hidden
        // by the kill.
        let mut killer = match &kill {
            Kill::Random(after) => Some(Killer::arm(&broker, spawned + *after)),
            Kill::Failpoint(..) => None,
        };
        match verify(&broker, &acked, &gone, &deleting) {
            Verified::Ok(..) => verified += 1,
            Verified::Interrupted => interrupted += 1,
        }
        // A failpoint that never fires is killed after 20 s.
        let killer = killer
            .take()
            .unwrap_or_else(|| Killer::arm(&broker, Instant::now() + Duration::from_secs(20)));
        // The workload: the main topic all along; a scratch topic created,
        // written, tiered and deleted meanwhile.
        let scratch = format!("scratch-{cycle}");
        let mut producer = None;
        let mut bulk = None;
        if let Some(addr) = broker.addr.clone().filter(|_| !broker.exited()) {
            let p = ProducerLoop::start(&addr, cycle, vec![MAIN.to_string()]);
            if s3 {
                // 6.4 MB: at least one 5.5 MiB segment a cycle.
                bulk = Some(ProducerLoop::bulk(&addr, cycle, BIG, 200, 32 << 10));
            }
            if create_topic(&addr, &scratch) {
                acked.insert(scratch.clone(), HashMap::new());
                p.targets.lock().unwrap().push(scratch.clone());
            }
            producer = Some(p);
            let mut deleted = false;
            let t0 = Instant::now();
            while !broker.exited() {
                let elapsed = t0.elapsed();
                if !deleted && elapsed > Duration::from_millis(1200) {
                    producer
                        .as_ref()
                        .unwrap()
                        .targets
                        .lock()
                        .unwrap()
                        .retain(|t| t != &scratch);
                    std::thread::sleep(Duration::from_millis(400)); // tiered
                    deleted = true;
                    deleting.insert(scratch.clone());
                    if acked.contains_key(&scratch) && delete_topic(&addr, &scratch) {
                        gone.insert(scratch.clone());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let (status, fired) = broker.wait();
        killer.disarm();
        let mut records = 0;
        if let Some(p) = producer {
            records = p.finish(&mut acked).1;
        }
        if let Some(b) = bulk {
            records += b.finish(&mut acked).1;
        }
        for g in &gone {
            acked.remove(g);
        }
        let what = match (&kill, &fired) {
            (Kill::Failpoint(name, _), Some(f)) => {
                assert_eq!(f, name, "another failpoint fired");
                assert_eq!(status.signal(), Some(6), "a failpoint aborts: {status}");
                *hits.entry(name).or_default() += 1;
                format!("failpoint {name}")
            }
            (Kill::Failpoint(name, nth), None) => {
                // Not reached this time (its hit count was too high for
                // the cycle): try again, at the first hit.
                let n = retries.entry(name).or_default();
                *n += 1;
                if *n <= 3 {
                    queue.push_back(Kill::Failpoint(name, 1));
                } else {
                    misses.push(name);
                }
                format!("failpoint {name}:{nth} not reached, SIGKILL")
            }
            (Kill::Random(after), _) => {
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "killed: {status}\n{}",
                    broker.tail()
                );
                random_kills += 1;
                format!("SIGKILL after {} ms", after.as_millis())
            }
        };
        eprintln!(
            "cycle {cycle}: {what}; {records} records acknowledged; {:.1}s",
            spawned.elapsed().as_secs_f64()
        );
    }

    // A clean round: everything readable, the reaper's rounds run, nothing
    // produced meanwhile (so no copy is in flight at the stop).
    let broker = Broker::start(&data, &setup, None);
    let (read, checked) = match verify(&broker, &acked, &gone, &deleting) {
        Verified::Ok(read, checked) => (read, checked),
        Verified::Interrupted => panic!("the clean broker died:\n{}", broker.tail()),
    };
    std::thread::sleep(Duration::from_millis(1500));
    // And no copy in flight (a multipart one takes a moment).
    let catalog = SqliteCatalog::open(&data.join("catalog.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet = 0;
    while quiet < 3 {
        let copying = catalog
            .remote_segments_in_state(RemoteState::CopyStarted)
            .unwrap();
        quiet = if copying.is_empty() { quiet + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "copies never settle: {copying:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(catalog);
    broker.stop();
    drop(broker);
    let (committed, objects) = check_bucket_and_catalog(&data, &bucket);
    // The S3 run did upload segments in parts.
    let multipart = {
        let catalog = SqliteCatalog::open(&data.join("catalog.db")).unwrap();
        let mut n = 0;
        for topic in catalog.topics().unwrap().iter().filter(|t| t.name == BIG) {
            n += catalog
                .remote_segments(topic.id, 0)
                .unwrap()
                .iter()
                .filter(|r| {
                    r.state == RemoteState::CopyFinished && r.log_size > MULTIPART_PART as u64
                })
                .count();
        }
        n
    };
    assert!(!s3 || multipart > 0, "no segment went up in parts");

    // Restore, killed after the local logs and before the catalog, then
    // run again: the bucket's records are all there. (file://: from a copy
    // of the bucket; S3: from the bucket itself, the first broker stopped.)
    let remote_url = match &bucket {
        Bucket::File => {
            let copy = tmp.path().join("bucket-copy");
            let status = Command::new("cp")
                .arg("-r")
                .arg(data.join("remote"))
                .arg(&copy)
                .status()
                .unwrap();
            assert!(status.success());
            format!("file://{}", copy.display())
        }
        Bucket::S3(_) => bucket.url(&data),
    };
    let restored = tmp.path().join("restored");
    let restore = |failpoint: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["restore", "--data-dir"])
            .arg(&restored)
            .args(["--remote", &remote_url])
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .env_remove("TIERLOG_FAILPOINT");
        if let Some(f) = failpoint {
            cmd.env("TIERLOG_FAILPOINT", f);
        }
        cmd.output().unwrap()
    };
    let out = restore(Some(RESTORE_FAILPOINT));
    assert_eq!(
        out.status.signal(),
        Some(6),
        "restore aborts at {RESTORE_FAILPOINT}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    *hits.entry(RESTORE_FAILPOINT).or_default() += 1;
    let out = restore(None);
    assert!(
        out.status.success(),
        "restore after a crash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored_settings = tmp.path().join("restored.toml");
    std::fs::write(
        &restored_settings,
        format!(
            "{SETTINGS}{}remote_url = \"{remote_url}\"\n",
            match &bucket {
                Bucket::File => String::new(),
                Bucket::S3(_) => format!("remote_upload_part_bytes = {MULTIPART_PART}\n"),
            }
        ),
    )
    .unwrap();
    let restored_setup = Setup {
        settings: restored_settings,
        env: bucket.env(),
    };
    let broker = Broker::start(&restored, &restored_setup, None);
    // The restored log holds what the bucket held: the acknowledged
    // records below each partition's committed end.
    let catalog = SqliteCatalog::open(&data.join("catalog.db")).unwrap();
    let mut in_bucket: Acked = HashMap::new();
    for topic in catalog.topics().unwrap() {
        let Some(parts) = acked.get(&topic.name) else {
            continue;
        };
        let mut kept = HashMap::new();
        for p in 0..topic.partitions {
            let end = catalog
                .remote_segments(topic.id, p)
                .unwrap()
                .iter()
                .filter(|r| r.state == RemoteState::CopyFinished)
                .map(|r| r.last_offset + 1)
                .max()
                .unwrap_or(0);
            let below: BTreeMap<i64, Vec<u8>> = parts
                .get(&(p as i32))
                .map(|m| m.range(..end).map(|(o, v)| (*o, v.clone())).collect())
                .unwrap_or_default();
            kept.insert(p as i32, below);
        }
        in_bucket.insert(topic.name.clone(), kept);
    }
    let (restored_read, restored_checked) = match verify(&broker, &in_bucket, &gone, &deleting) {
        Verified::Ok(read, checked) => (read, checked),
        Verified::Interrupted => panic!("the restored broker died:\n{}", broker.tail()),
    };
    broker.stop();

    eprintln!(
        "crash matrix on {on} ({profile}): {cycle} kill cycles ({} at failpoints, {random_kills} random SIGKILLs), \
         {verified} verified restarts ({interrupted} interrupted by the kill); at the end {checked} acknowledged \
         records read back of {read} records, {committed} committed segments / {objects} objects in the \
         bucket, no orphan; restore after a crash: {restored_checked} acknowledged records of \
         {restored_read} read; {multipart} multipart segments; {:.0}s",
        hits.values().sum::<usize>() - 1,
        started.elapsed().as_secs_f64()
    );
    eprintln!("failpoints hit: {hits:?}");
    assert!(misses.is_empty(), "failpoints never reached: {misses:?}");
    for fp in failpoints.iter().chain([&RESTORE_FAILPOINT]) {
        assert!(hits.contains_key(fp), "failpoint {fp} was never hit");
    }
    assert!(
        verified >= cycle / 2,
        "only {verified} of {cycle} restarts were verified"
    );
}
