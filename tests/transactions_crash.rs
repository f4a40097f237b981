//! Transactions across a broker crash: the real `tierlog serve` process
//! is SIGKILLed while a librdkafka transactional producer has a
//! transaction open (its records acknowledged), and, with the
//! `failpoints` feature, killed between EndTxn's PrepareCommit row and its
//! markers; each time it restarts on the same data directory and what a
//! user would check is checked: what read_committed and read_uncommitted
//! consumers see, the coordinator's state (`tierlog transactions
//! describe`), and that a new instance of the producer carries on.
//!
//! Run: `cargo test --locked --test transactions_crash` (the failpoint
//! case: `cargo test --locked --features failpoints --test
//! transactions_crash`).

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{err, out, Server};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;
const DEADLINE: Duration = Duration::from_secs(60);
/// The producers' `transaction.timeout.ms`: short, so the broker aborts
/// the transaction the crash left open soon after it restarts.
const TXN_TIMEOUT_MS: &str = "4000";
/// The broker checks for timed-out transactions this often.
const SETTINGS: &str = "transaction_abort_timed_out_transaction_cleanup_interval_ms = 200\n";

/// Counts delivery reports: a record is acknowledged once its report
/// says so.
#[derive(Clone, Default)]
struct Acks {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.failed.fetch_add(1, Ordering::SeqCst),
        };
    }
}

type TxnProducer = ThreadedProducer<Acks>;

fn start(data: &Path, settings: &Path, failpoint: Option<&str>) -> Server {
    let mut env = vec![("TIERLOG_CONFIG", settings.to_str().unwrap())];
    if let Some(f) = failpoint {
        env.push(("TIERLOG_FAILPOINT", f));
    }
    Server::start_with_env(data, &env)
}

fn txn_producer(addr: &str, id: &str) -> (TxnProducer, Acks) {
    let acks = Acks::default();
    let p: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", TXN_TIMEOUT_MS)
        .set("linger.ms", "5")
        .create_with_context(acks.clone())
        .expect("producer");
    p.init_transactions(DEADLINE).expect("init_transactions");
    (p, acks)
}

/// Send `prefix-<partition>-<i>` for `per` records to each partition and
/// wait until every one is acknowledged.
fn send_acked(p: &TxnProducer, acks: &Acks, prefix: &str, per: i32) -> BTreeSet<String> {
    let before = acks.ok.load(Ordering::SeqCst);
    let sent = names(prefix, per);
    for v in &sent {
        let partition: i32 = v.split('-').nth(1).unwrap().parse().unwrap();
        p.send(
            BaseRecord::<(), str>::to(TOPIC)
                .partition(partition)
                .payload(v),
        )
        .map_err(|(e, _)| e)
        .expect("queued");
    }
    p.flush(DEADLINE).expect("flush");
    let deadline = Instant::now() + DEADLINE;
    while acks.ok.load(Ordering::SeqCst) < before + sent.len() {
        assert_eq!(acks.failed.load(Ordering::SeqCst), 0, "a record failed");
        assert!(Instant::now() < deadline, "records not acknowledged");
        std::thread::sleep(Duration::from_millis(10));
    }
    sent
}

fn names(prefix: &str, per: i32) -> BTreeSet<String> {
    (0..PARTITIONS)
        .flat_map(|p| (0..per).map(move |i| format!("{prefix}-{p}-{i}")))
        .collect()
}

fn union(sets: &[&BTreeSet<String>]) -> BTreeSet<String> {
    sets.iter().flat_map(|s| s.iter().cloned()).collect()
}

/// Every value of the topic from the start, read with `isolation`: polled
/// until `expected` values arrived (within [`DEADLINE`]: an open
/// transaction must first time out), then 1.5 s longer so extra records
/// would show.
fn read_values(addr: &str, isolation: &str, expected: usize) -> Vec<String> {
    let c = common::txn::consumer(addr, "crash-reader", isolation);
    common::txn::read_values(&c, TOPIC, PARTITIONS, expected, DEADLINE)
}

/// Exactly `want`, each once.
fn assert_reads(addr: &str, isolation: &str, want: &BTreeSet<String>) {
    let got = read_values(addr, isolation, want.len());
    assert_eq!(got.len(), want.len(), "{isolation}: {got:?}");
    let got: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(&got, want, "{isolation}");
}

/// `tierlog transactions describe ID`: (epoch, state, partitions).
fn describe(server: &Server, id: &str) -> (i16, String, String) {
    let o = server.run(&["transactions", "describe", id], None);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let row: Vec<String> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(row.len() >= 5, "{text}");
    (
        row[1].parse().unwrap(),
        row[2].clone(),
        row.get(5).cloned().unwrap_or_default(),
    )
}

/// A plain (non-transactional) producer's records, acknowledged.
fn send_plain(addr: &str, prefix: &str, per: i32) -> BTreeSet<String> {
    let acks = Acks::default();
    let p: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .create_with_context(acks.clone())
        .expect("producer");
    send_acked(&p, &acks, prefix, per)
}

fn create_topic(server: &Server) {
    let o = server.run(
        &[
            "topic",
            "create",
            TOPIC,
            "--partitions",
            &PARTITIONS.to_string(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
}

/// The case: one transaction committed, a second one open with
/// its records acknowledged, the broker SIGKILLed. After the restart the
/// committed records are read_committed-visible; the open transaction
/// holds read_committed consumers until its `transaction.timeout.ms`
/// passes, then the coordinator aborts it (epoch bumped) and they move on
/// to the records produced after it, never seeing its records, which
/// read_uncommitted consumers do see. A new instance of the producer (same
/// transactional.id) fences and carries on.
#[test]
fn a_broker_killed_mid_transaction_aborts_it_at_its_timeout_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = dir.path().join("tierlog.toml");
    std::fs::write(&settings, SETTINGS).unwrap();
    let server = start(&data, &settings, None);
    create_topic(&server);

    let (p, acks) = txn_producer(&server.addr, "crash-txn");
    p.begin_transaction().unwrap();
    let committed = send_acked(&p, &acks, "committed", 3);
    p.commit_transaction(DEADLINE).expect("commit");
    p.begin_transaction().unwrap();
    let open = send_acked(&p, &acks, "open", 4);
    let (epoch, state, partitions) = describe(&server, "crash-txn");
    assert_eq!(
        (state.as_str(), partitions.as_str()),
        ("Ongoing", "crash-0,crash-1")
    );

    server.kill();
    // The producer dies with the broker: nobody ends its transaction.
    drop(p);

    let server = start(&data, &settings, None);
    let after = send_plain(&server.addr, "after", 2);
    // read_committed: the committed transaction, then (once the open one
    // is aborted at its timeout) the records after it; never the open
    // transaction's.
    assert_reads(
        &server.addr,
        "read_committed",
        &union(&[&committed, &after]),
    );
    let (aborted_epoch, state, partitions) = describe(&server, "crash-txn");
    assert_eq!(
        (aborted_epoch, state.as_str(), partitions.as_str()),
        (epoch + 1, "CompleteAbort", ""),
        "aborted by the coordinator, epoch bumped"
    );
    assert_reads(
        &server.addr,
        "read_uncommitted",
        &union(&[&committed, &open, &after]),
    );

    // A new instance: init (epoch bumped again), commit.
    let (p2, acks2) = txn_producer(&server.addr, "crash-txn");
    p2.begin_transaction().unwrap();
    let again = send_acked(&p2, &acks2, "again", 2);
    p2.commit_transaction(DEADLINE)
        .expect("commit after restart");
    let (epoch2, state, _) = describe(&server, "crash-txn");
    assert_eq!((epoch2, state.as_str()), (epoch + 2, "CompleteCommit"));
    assert_reads(
        &server.addr,
        "read_committed",
        &union(&[&committed, &after, &again]),
    );
    drop(p2);
    server.stop();
}

/// Killed between EndTxn's PrepareCommit row and its markers (the
/// `txn.end.after_prepare` failpoint at its second hit: the first
/// transaction's EndTxn passes it): the restarted broker completes the
/// commit before it serves, so read_committed consumers see both
/// transactions, the id is CompleteCommit at the same epoch, and a new
/// instance carries on.
#[cfg(feature = "failpoints")]
#[test]
fn a_broker_killed_after_prepare_commit_completes_the_commit_at_restart() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = dir.path().join("tierlog.toml");
    std::fs::write(&settings, SETTINGS).unwrap();
    let mut server = start(&data, &settings, Some("txn.end.after_prepare:2"));
    create_topic(&server);

    let (p, acks) = txn_producer(&server.addr, "prep-txn");
    p.begin_transaction().unwrap();
    let first = send_acked(&p, &acks, "first", 3);
    p.commit_transaction(DEADLINE).expect("commit");
    p.begin_transaction().unwrap();
    let second = send_acked(&p, &acks, "second", 3);
    let (epoch, state, _) = describe(&server, "prep-txn");
    assert_eq!(state, "Ongoing");
    // The broker aborts in EndTxn, after storing PrepareCommit: the
    // client never hears back.
    assert!(p.commit_transaction(Duration::from_secs(3)).is_err());
    let status = server.child.wait().unwrap();
    assert_eq!(status.signal(), Some(6), "aborted at the failpoint");
    drop(p);

    let server = start(&data, &settings, None);
    let (epoch_after, state, _) = describe(&server, "prep-txn");
    assert_eq!(
        (epoch_after, state.as_str()),
        (epoch, "CompleteCommit"),
        "completed before serving, no epoch bump"
    );
    assert_reads(&server.addr, "read_committed", &union(&[&first, &second]));

    let (p2, acks2) = txn_producer(&server.addr, "prep-txn");
    p2.begin_transaction().unwrap();
    let third = send_acked(&p2, &acks2, "third", 2);
    p2.commit_transaction(DEADLINE)
        .expect("commit after restart");
    assert_reads(
        &server.addr,
        "read_committed",
        &union(&[&first, &second, &third]),
    );
    assert_eq!(describe(&server, "prep-txn").0, epoch + 1);
    drop(p2);
    server.stop();
}
