//! The crash matrix for the log cleaner (issue 13): `tierlog serve` with a
//! compacted topic cleaned every few milliseconds, killed at each step of
//! a cleaning pass and its swap (`cleaner.after_stage`,
//! `cleaner.swap.after_marker`, `cleaner.swap.after_delete_old`,
//! `cleaner.swap.after_rename`) and at random, while an idempotent
//! librdkafka producer (acks=all) updates 150 keys. After each restart the
//! topic is read from offset 0 and replayed into a table: every key holds
//! its last acknowledged value or a later one, offsets only increase, and
//! no half-done swap is left on disk.

use super::*;

const TABLE: &str = "table";
const KEYS: u64 = 150;

const CLEANER_FAILPOINTS: &[&str] = &[
    "cleaner.after_stage",
    "cleaner.swap.after_marker",
    "cleaner.swap.after_delete_old",
    "cleaner.swap.after_rename",
];

const CLEANER_SETTINGS: &str = "\
flush_check_interval_ms = 20
log.cleaner.backoff.ms = 20
remote_log_manager_task_interval_ms = 100
log_retention_check_interval_ms = 100
auto_create_topics_enable = false
";

/// The steps of a tiered cleaning pass (a compacted topic with remote
/// storage on: its history is cleaned in the bucket).
const TIERED_FAILPOINTS: &[&str] = &[
    "cleaner.tiered.after_copy_started",
    "cleaner.tiered.after_upload",
    "cleaner.tiered.after_catalog",
];

/// (cycle, seq) of a value written by this test.
fn order(v: &[u8]) -> (usize, u64) {
    let s = String::from_utf8_lossy(v);
    let mut it = s.split('/').skip(1);
    let cycle = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let seq = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (cycle, seq)
}

/// Key → the latest acknowledged (cycle, seq).
type Latest = HashMap<Vec<u8>, (usize, u64)>;

/// Acknowledged (key, value) pairs.
type KeyedLog = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

struct KeyedContext {
    acked: KeyedLog,
}

impl ClientContext for KeyedContext {}

impl ProducerContext for KeyedContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            self.acked.lock().unwrap().push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
}

/// Update keys until `broker` exits or `limit` passes; the acknowledged
/// (key, value) pairs.
fn produce_until_exit(
    broker: &Broker,
    addr: &str,
    cycle: usize,
    limit: Duration,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<KeyedContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "10000")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(KeyedContext {
            acked: Arc::clone(&acked),
        })
        .expect("producer");
    let t0 = Instant::now();
    let mut seq = 0u64;
    while !broker.exited() && t0.elapsed() < limit {
        for _ in 0..8 {
            let key = format!("k{:03}", seq % KEYS);
            let mut v = format!("{key}/{cycle}/{seq}/").into_bytes();
            v.resize(160, b'v');
            let r = BaseRecord::<[u8], [u8]>::to(TABLE)
                .partition(0)
                .key(key.as_bytes())
                .payload(&v);
            if producer.send(r).is_err() {
                break;
            }
            seq += 1;
        }
        producer.poll(Duration::from_millis(3));
    }
    producer.purge(PurgeConfig::default().queue().inflight());
    producer.poll(Duration::from_millis(100));
    let got = std::mem::take(&mut *acked.lock().unwrap());
    got
}

/// Read the table from offset 0 and check it against `latest`. Returns
/// (records read, high watermark).
fn verify_table(broker: &Broker, latest: &Latest) -> (usize, i64) {
    let addr = broker.addr.as_deref().expect("the broker listens");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "crash-compaction-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("queued.min.messages", "1000000")
        .set("auto.offset.reset", "error")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (_, high) = loop {
        match consumer.fetch_watermarks(TABLE, 0, Duration::from_millis(500)) {
            Ok(w) => break w,
            Err(e) if Instant::now() > deadline => panic!("watermarks: {e}\n{}", broker.tail()),
            Err(_) => {}
        }
    };
    let mut table: HashMap<Vec<u8>, (usize, u64)> = HashMap::new();
    let mut read = 0usize;
    let mut last = -1i64;
    if high > 0 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TABLE, 0, Offset::Offset(0))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        while last + 1 < high {
            assert!(
                Instant::now() < deadline,
                "reading the table back timed out at offset {last} of {high}\n{}",
                broker.tail()
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    assert!(
                        m.offset() > last,
                        "offsets go back: {} after {last}",
                        m.offset()
                    );
                    last = m.offset();
                    read += 1;
                    let key = m.key().expect("a keyed record").to_vec();
                    table.insert(key, order(m.payload().unwrap_or_default()));
                }
                Some(Err(e)) => panic!("reading the table: {e}\n{}", broker.tail()),
                None => {}
            }
        }
    }
    for (key, acked) in latest {
        let got = table.get(key).copied();
        assert!(
            got.is_some_and(|g| g >= *acked),
            "key {}: the table holds {got:?}, but {acked:?} was acknowledged\n{}",
            String::from_utf8_lossy(key),
            broker.tail()
        );
    }
    (read, high)
}

#[test]
fn a_cleaner_killed_mid_pass_or_mid_swap_loses_no_acknowledged_value() {
    cleaner_matrix(CLEANER_FAILPOINTS, &[]);
}

/// The same for tiered compaction; after a last clean round the bucket
/// holds exactly the catalog's committed segments (no orphan).
#[test]
fn a_tiered_cleaner_killed_mid_upload_or_commit_loses_nothing_and_orphans_nothing() {
    cleaner_matrix(
        TIERED_FAILPOINTS,
        &[
            ("remote.storage.enable", "true"),
            ("local.retention.bytes", "0"),
        ],
    );
}

fn cleaner_matrix(failpoints: &[&'static str], extra: &[(&str, &str)]) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let settings = tmp.path().join("tierlog.toml");
    std::fs::write(&settings, CLEANER_SETTINGS).unwrap();
    let settings = Setup {
        settings,
        env: Vec::new(),
    };
    let broker = Broker::start(&data, &settings, None);
    let mut t = NewTopic::new(TABLE, 1, TopicReplication::Fixed(1));
    for (k, v) in [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "16384"),
        ("index.interval.bytes", "1024"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ]
    .iter()
    .chain(extra)
    {
        t = t.set(k, v);
    }
    let created = futures::executor::block_on(
        admin(broker.addr.as_deref().unwrap()).create_topics([&t], &admin_options()),
    );
    assert!(matches!(created.as_deref(), Ok([Ok(_)])), "{created:?}");
    broker.stop();
    drop(broker);

    let long = std::env::var("TIERLOG_CRASH_LONG").is_ok_and(|v| v == "1");
    let mut plan: Vec<Kill> = Vec::new();
    for nth in if long { vec![1, 2, 4] } else { vec![1, 3] } {
        for fp in failpoints {
            plan.push(Kill::Failpoint(fp, nth));
        }
    }
    for ms in if long {
        vec![300, 700, 1100, 1900, 2600, 3300]
    } else {
        vec![700, 1900]
    } {
        plan.push(Kill::Random(Duration::from_millis(ms)));
    }
    let mut latest: Latest = HashMap::new();
    let mut hits: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut read, mut high) = (0, 0);
    for (i, kill) in plan.iter().enumerate() {
        let cycle = i + 1;
        let spawned = Instant::now();
        let broker = match kill {
            Kill::Failpoint(name, nth) => Broker::start(&data, &settings, Some((name, *nth))),
            Kill::Random(_) => Broker::start(&data, &settings, None),
        };
        let killer = match kill {
            Kill::Random(after) => Killer::arm(&broker, spawned + *after),
            Kill::Failpoint(..) => Killer::arm(&broker, Instant::now() + Duration::from_secs(20)),
        };
        let acked = match broker.addr.clone() {
            Some(addr) => produce_until_exit(&broker, &addr, cycle, Duration::from_secs(25)),
            None => Vec::new(),
        };
        let (status, fired) = broker.wait();
        killer.disarm();
        let n = acked.len();
        for (k, v) in acked {
            let o = order(&v);
            let e = latest.entry(k).or_insert(o);
            *e = (*e).max(o);
        }
        let what = match (kill, &fired) {
            (Kill::Failpoint(name, _), Some(f)) => {
                assert_eq!(f, name, "another failpoint fired");
                assert_eq!(status.signal(), Some(6), "a failpoint aborts: {status}");
                *hits.entry(name).or_default() += 1;
                format!("failpoint {name}")
            }
            (Kill::Failpoint(name, nth), None) => format!("failpoint {name}:{nth} not reached"),
            (Kill::Random(after), _) => format!("SIGKILL after {} ms", after.as_millis()),
        };
        // Restart: a half-done swap is finished or rolled back, and the
        // table is intact.
        let broker = Broker::start(&data, &settings, None);
        assert!(
            !data.join(format!("{TABLE}-0")).join("cleaning").exists(),
            "a cleaning pass's files are left after a restart\n{}",
            broker.tail()
        );
        (read, high) = verify_table(&broker, &latest);
        broker.stop();
        eprintln!(
            "compaction cycle {cycle}: {what}; {n} acknowledged; read {read} records below offset {high}; {:.1}s",
            spawned.elapsed().as_secs_f64()
        );
    }
    eprintln!("cleaner failpoints hit: {hits:?}");
    for fp in failpoints {
        assert!(hits.contains_key(fp), "failpoint {fp} was never hit");
    }
    if !extra.is_empty() {
        // A last clean round: the reaper runs; nothing is orphaned.
        let broker = Broker::start(&data, &settings, None);
        std::thread::sleep(Duration::from_millis(1500));
        broker.stop();
        drop(broker);
        let (committed, objects) = check_bucket_and_catalog(&data, &Bucket::File);
        eprintln!(
            "tiered compaction: {committed} committed segments, {objects} objects, no orphan"
        );
        assert!(committed > 0);
    }
    assert!(
        (read as i64) < high,
        "the cleaner never removed a record ({read} read, high watermark {high})"
    );
}
