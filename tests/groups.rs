//! Consumer groups and committed offsets with a real client: librdkafka's
//! group consumer (the classic rebalance protocol) against the in-process
//! broker.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::broker::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const T0: i64 = 1_700_000_000_000;
const DEADLINE: Duration = Duration::from_secs(60);
const CHILD_ENV: &str = "TIERLOG_TEST_CHILD_CONSUMER";

/// A broker whose groups rebalance without Kafka's initial 3 s delay.
fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_with(dir, |c| c.group_initial_rebalance_delay_ms = 0)
}

fn group_consumer(addr: &str, group: &str, reset: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", reset)
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

/// `count` records per partition, appended straight to the engine.
fn fill(broker: &TestBroker, topic: &str, partitions: u32, count: usize) {
    for p in 0..partitions {
        let end = broker.engine.offsets(topic, p).unwrap().log_end_offset;
        let mut bytes = common::batch(end, count, 20, T0 + end);
        broker.engine.append(topic, p, &mut bytes).unwrap();
    }
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Poll every consumer (which runs their rebalances) until `done`.
fn poll_until(consumers: &[&BaseConsumer], what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in consumers {
            if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
                panic!("consumer error while waiting for {what}: {e}");
            }
        }
    }
}

fn all(n: i32) -> BTreeSet<i32> {
    (0..n).collect()
}

/// Each consumer holds part of the partitions, together all of them, and
/// none twice.
fn split(a: &BaseConsumer, b: &BaseConsumer, n: i32) -> bool {
    let (x, y) = (assigned(a), assigned(b));
    !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && &x | &y == all(n)
}

#[test]
fn two_consumers_split_partitions_and_rebalance_when_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    broker
        .engine
        .create_topic("events", 4, &Default::default())
        .unwrap();
    fill(&broker, "events", 4, 5);

    let a = group_consumer(&broker.addr, "split", "earliest");
    a.subscribe(&["events"]).unwrap();
    poll_until(&[&a], "the first consumer to own every partition", || {
        assigned(&a) == all(4)
    });

    let b = group_consumer(&broker.addr, "split", "earliest");
    b.subscribe(&["events"]).unwrap();
    poll_until(&[&a, &b], "the partitions to be split", || split(&a, &b, 4));
    assert_eq!((assigned(&a).len(), assigned(&b).len()), (2, 2));

    // The broker's view: one stable group of two members, each with its
    // assignment (ListGroups + DescribeGroups).
    let groups = a
        .fetch_group_list(Some("split"), Duration::from_secs(10))
        .unwrap();
    let g = &groups.groups()[0];
    assert_eq!(g.name(), "split");
    assert_eq!(g.state(), "Stable");
    assert_eq!(g.protocol_type(), "consumer");
    assert_eq!(g.members().len(), 2);
    assert!(g.members().iter().all(|m| m.assignment().is_some()));

    // A clean close sends LeaveGroup: the survivor takes over well before
    // the 6 s session timeout could have noticed.
    let left = Instant::now();
    drop(b);
    poll_until(&[&a], "the survivor to own every partition", || {
        assigned(&a) == all(4)
    });
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "rebalance after LeaveGroup took {:?}",
        left.elapsed()
    );
}

/// Not a test on its own: the consumer process the kill test starts (and
/// SIGKILLs), running this test binary again with [`CHILD_ENV`] set.
#[test]
fn child_consumer_process() {
    let Ok(addr) = std::env::var(CHILD_ENV) else {
        return;
    };
    let c = group_consumer(&addr, "killed", "earliest");
    c.subscribe(&["jobs"]).unwrap();
    loop {
        let _ = c.poll(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_consumer_is_expired_after_its_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    broker
        .engine
        .create_topic("jobs", 4, &Default::default())
        .unwrap();
    fill(&broker, "jobs", 4, 3);

    let a = group_consumer(&broker.addr, "killed", "earliest");
    a.subscribe(&["jobs"]).unwrap();
    poll_until(&[&a], "the first consumer to own every partition", || {
        assigned(&a) == all(4)
    });

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_consumer_process",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &broker.addr)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("child consumer starts");
    let child_joined = {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if assigned(&a).len() == 2 {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            let _ = a.poll(Duration::from_millis(50));
        }
    };
    if !child_joined {
        let _ = child.kill();
        panic!("the child consumer never got half of the partitions");
    }

    // SIGKILL: no LeaveGroup, no more heartbeats.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    poll_until(&[&a], "the survivor to own every partition", || {
        assigned(&a) == all(4)
    });
    let took = killed.elapsed();
    assert!(
        took > Duration::from_secs(3) && took < Duration::from_secs(20),
        "the dead member should go after its 6 s session timeout, went after {took:?}"
    );
}

/// Counts the rebalances (revocations and assignments) a consumer goes
/// through.
#[derive(Clone, Default)]
struct RebalanceCount(Arc<AtomicUsize>);

impl ClientContext for RebalanceCount {}

impl ConsumerContext for RebalanceCount {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn static_consumer(addr: &str, group: &str, instance: &str) -> BaseConsumer<RebalanceCount> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("group.instance.id", instance)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create_with_context(RebalanceCount::default())
        .expect("static consumer")
}

fn owned<C: ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Poll both until `done`.
fn poll_both(
    a: &BaseConsumer<RebalanceCount>,
    b: &BaseConsumer<RebalanceCount>,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in [a, b] {
            if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
                panic!("consumer error while waiting for {what}: {e}");
            }
        }
    }
}

#[test]
fn a_static_member_restarted_within_its_session_gets_its_partitions_back_without_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    broker
        .engine
        .create_topic("statics", 4, &Default::default())
        .unwrap();
    fill(&broker, "statics", 4, 5);

    let a = static_consumer(&broker.addr, "static", "instance-a");
    a.subscribe(&["statics"]).unwrap();
    let b = static_consumer(&broker.addr, "static", "instance-b");
    b.subscribe(&["statics"]).unwrap();
    poll_both(&a, &b, "the partitions to be split", || {
        let (x, y) = (owned(&a), owned(&b));
        !x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && &x | &y == all(4)
    });
    let (a_owns, b_owns) = (owned(&a), owned(&b));
    let member_ids = |c: &BaseConsumer<RebalanceCount>| -> BTreeSet<String> {
        let groups = c
            .fetch_group_list(Some("static"), Duration::from_secs(10))
            .unwrap();
        let g = &groups.groups()[0];
        assert_eq!(g.state(), "Stable");
        g.members().iter().map(|m| m.id().to_string()).collect()
    };
    let ids_before = member_ids(&a);
    assert_eq!(ids_before.len(), 2);
    let a_rebalances = a.context().0.load(Ordering::SeqCst);

    // A static member does not send LeaveGroup on close; the one that
    // comes back with its instance id replaces it.
    drop(b);
    let b = static_consumer(&broker.addr, "static", "instance-b");
    b.subscribe(&["statics"]).unwrap();
    poll_both(&a, &b, "the restarted member's assignment", || {
        owned(&b) == b_owns
    });
    // Keep polling a while: a rebalance would reach the survivor.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        for c in [&a, &b] {
            if let Some(Err(e)) = c.poll(Duration::from_millis(50)) {
                panic!("consumer error: {e}");
            }
        }
    }
    assert_eq!(
        a.context().0.load(Ordering::SeqCst),
        a_rebalances,
        "the other member went through no rebalance"
    );
    assert_eq!((owned(&a), owned(&b)), (a_owns, b_owns));
    let ids_after = member_ids(&a);
    assert_eq!(
        ids_after.len(),
        2,
        "the old member id was replaced, not kept"
    );
    assert_eq!(
        ids_before.intersection(&ids_after).count(),
        1,
        "only the restarted member has a new member id"
    );
}

/// Consume from `c` until `n` messages arrived; their (partition, offset).
fn consume(c: &BaseConsumer, n: usize) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages",
            got.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push((m.partition(), m.offset())),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    got
}

fn committed(c: &BaseConsumer, topic: &str, partition: i32) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch");
    got.find_partition(topic, partition).unwrap().offset()
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    broker
        .engine
        .create_topic("orders", 1, &Default::default())
        .unwrap();
    fill(&broker, "orders", 1, 10);

    let c = group_consumer(&broker.addr, "billing", "earliest");
    c.subscribe(&["orders"]).unwrap();
    let got = consume(&c, 6);
    assert_eq!(got[0], (0, 0));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Offset(6))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).expect("OffsetCommit");
    assert_eq!(committed(&c, "orders", 0), Offset::Offset(6));
    drop(c);

    broker.stop();
    let broker = start(dir.path());

    // A new member of the group resumes at the committed offset.
    let c = group_consumer(&broker.addr, "billing", "earliest");
    assert_eq!(committed(&c, "orders", 0), Offset::Offset(6));
    c.subscribe(&["orders"]).unwrap();
    let got = consume(&c, 4);
    assert_eq!(got, (6..10).map(|o| (0, o)).collect::<Vec<_>>());
    // A group that never committed gets "no offset".
    assert_eq!(committed(&c, "orders", 0), Offset::Offset(6));
    let other = group_consumer(&broker.addr, "never-committed", "earliest");
    assert_eq!(committed(&other, "orders", 0), Offset::Invalid);

    // DeleteGroups: refused while the group has members, then allowed.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let r = admin.delete_groups(&["billing"], &opts).await.unwrap();
    assert_eq!(
        r,
        vec![Err((
            "billing".to_string(),
            RDKafkaErrorCode::NonEmptyGroup
        ))]
    );
    drop(c);
    let r = admin
        .delete_groups(&["billing", "no-such-group"], &opts)
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            Ok("billing".to_string()),
            Err((
                "no-such-group".to_string(),
                RDKafkaErrorCode::GroupIdNotFound
            ))
        ]
    );
    assert_eq!(committed(&other, "orders", 0), Offset::Invalid);
}

#[test]
fn a_committed_offset_below_the_log_start_resets_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    broker
        .engine
        .create_topic("short", 1, &Default::default())
        .unwrap();
    fill(&broker, "short", 1, 10);
    broker
        .engine
        .with_log("short", 0, |log| log.roll(T0 + 100))
        .unwrap();
    fill(&broker, "short", 1, 10);
    // Retention removed offsets 0..10.
    broker
        .engine
        .with_log("short", 0, |log| log.delete_segments_below(10))
        .unwrap();
    assert_eq!(
        broker.engine.offsets("short", 0).unwrap().log_start_offset,
        10
    );

    // A commit outside group management (generation -1), below the log start.
    let admin_like = group_consumer(&broker.addr, "late", "earliest");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("short", 0, Offset::Offset(3))
        .unwrap();
    admin_like.commit(&tpl, CommitMode::Sync).unwrap();
    // OffsetFetch returns it as stored.
    assert_eq!(committed(&admin_like, "short", 0), Offset::Offset(3));
    drop(admin_like);

    // Fetching there is OFFSET_OUT_OF_RANGE, so the consumer applies
    // auto.offset.reset: earliest is the log start offset...
    let c = group_consumer(&broker.addr, "late", "earliest");
    c.subscribe(&["short"]).unwrap();
    assert_eq!(consume(&c, 1), vec![(0, 10)]);
    drop(c);

    // ...and latest is the log end: only records appended afterwards.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("short", 0, Offset::Offset(3))
        .unwrap();
    let c = group_consumer(&broker.addr, "late-latest", "latest");
    c.commit(&tpl, CommitMode::Sync).unwrap();
    c.subscribe(&["short"]).unwrap();
    poll_until(&[&c], "an assignment", || assigned(&c) == all(1));
    // Let the reset to the end happen before appending.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            panic!(
                "nothing to read before new records, got offset {}",
                m.offset()
            );
        }
    }
    fill(&broker, "short", 1, 1);
    assert_eq!(consume(&c, 1), vec![(0, 20)]);
}

#[test]
fn a_consumer_group_reads_a_topic_whose_early_segments_are_only_in_the_bucket() {
    let s3 = common::s3::S3::start();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with_store(
        dir.path(),
        |c| {
            c.group_initial_rebalance_delay_ms = 0;
            c.remote_log_manager_task_interval_ms = 3_600_000;
        },
        Some(s3.store()),
    );
    broker
        .engine
        .create_topic(
            "archive",
            2,
            &common::configs(&[
                ("remote.storage.enable", "true"),
                ("segment.bytes", "20000"),
                ("local.retention.bytes", "0"),
                // The records carry 2023 timestamps: no time retention.
                ("retention.ms", "-1"),
            ]),
        )
        .unwrap();
    let n = 1000i64;
    for p in 0..2 {
        for first in (0..n).step_by(50) {
            let mut bytes = common::batch(first, 50, 100, T0 + first);
            broker.engine.append("archive", p, &mut bytes).unwrap();
        }
    }
    for _ in 0..3 {
        broker.engine.run_remote_round().unwrap();
    }
    for p in 0..2 {
        let o = broker.engine.offsets("archive", p).unwrap();
        assert_eq!(o.log_start_offset, 0);
        assert!(
            o.local_log_start_offset > n / 2,
            "most of partition {p} is only in the bucket: {o:?}"
        );
    }

    // Two members of one group read everything from offset 0 (in the
    // bucket) on. Records read before the group settled may come again
    // after the rebalance (nothing was committed): at least once.
    let a = group_consumer(&broker.addr, "archivists", "earliest");
    a.subscribe(&["archive"]).unwrap();
    let b = group_consumer(&broker.addr, "archivists", "earliest");
    b.subscribe(&["archive"]).unwrap();
    let mut seen = [BTreeSet::new(), BTreeSet::new()];
    let deadline = Instant::now() + DEADLINE;
    while seen.iter().any(|s| s.len() < n as usize) || !split(&a, &b, 2) {
        assert!(
            Instant::now() < deadline,
            "read {} and {} records",
            seen[0].len(),
            seen[1].len()
        );
        for c in [&a, &b] {
            let Some(m) = c.poll(Duration::from_millis(50)) else {
                continue;
            };
            let m = m.expect("no consume error");
            let value = m.payload().unwrap();
            assert_eq!(value, common::value_for(m.offset(), value.len()).as_slice());
            seen[m.partition() as usize].insert(m.offset());
        }
    }
    assert_eq!(seen[0], (0..n).collect::<BTreeSet<_>>());
    assert_eq!(seen[1], (0..n).collect::<BTreeSet<_>>());
    assert!(split(&a, &b, 2), "the group split the partitions");

    // A commit inside the bucket-only range; a new member resumes there.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("archive", 0, Offset::Offset(123))
        .unwrap();
    tpl.add_partition_offset("archive", 1, Offset::Offset(n))
        .unwrap();
    let owner = if assigned(&a).contains(&0) { &a } else { &b };
    owner.commit(&tpl, CommitMode::Sync).unwrap();
    drop(a);
    drop(b);
    let c = group_consumer(&broker.addr, "archivists", "earliest");
    c.subscribe(&["archive"]).unwrap();
    assert_eq!(consume(&c, 1), vec![(0, 123)]);
}

mod raw {
    //! The coordinator's error codes, with raw requests.

    use bytes::Bytes;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;
    use tierlog::client::Connection;

    use std::sync::Arc;

    use tierlog::clock::{Clock, ManualClock, SystemClock};

    use super::TestBroker;

    /// A broker whose groups rebalance without an initial delay, on a
    /// clock that moves only when the test moves it, with `tweak`.
    fn start_manual(
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut tierlog::config::BrokerConfig),
    ) -> (TestBroker, ManualClock) {
        let clock = ManualClock::new(SystemClock.now_ms());
        let broker = TestBroker::start_with_clock(
            dir,
            |c| {
                c.group_initial_rebalance_delay_ms = 0;
                tweak(c);
            },
            Arc::new(clock.clone()),
        );
        (broker, clock)
    }

    /// Move the broker's clock by `ms` and run a coordinator tick at the
    /// new time (sessions, rebalance timeouts, a due offset expiry round).
    async fn advance(broker: &TestBroker, clock: &ManualClock, ms: i64) {
        clock.advance(ms);
        broker.group_ticks.run_now().await;
    }

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn join(member: &str, session_ms: i32) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("raw")))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\0"))])
    }

    async fn heartbeat(conn: &mut Connection, member: &str, generation: i32) -> i16 {
        let r: HeartbeatResponse = conn
            .call(
                ApiKey::Heartbeat,
                4,
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(s("raw")))
                    .with_generation_id(generation)
                    .with_member_id(s(member)),
            )
            .await
            .unwrap();
        r.error_code
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn coordinator_errors_are_kafka_codes() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::start(dir.path());
        let mut conn = Connection::connect(&broker.addr).await.unwrap();

        // FindCoordinator v4 (batched keys): this broker.
        let r: FindCoordinatorResponse = conn
            .call(
                ApiKey::FindCoordinator,
                4,
                &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("raw")]),
            )
            .await
            .unwrap();
        assert_eq!(r.coordinators.len(), 1);
        assert_eq!(r.coordinators[0].error_code, 0);
        assert_eq!(
            format!(
                "{}:{}",
                r.coordinators[0].host.as_str(),
                r.coordinators[0].port
            ),
            broker.addr
        );

        // A session timeout below group.min.session.timeout.ms.
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &join("", 100))
            .await
            .unwrap();
        assert_eq!(r.error_code, ResponseError::InvalidSessionTimeout.code());
        // v4+: a member id first, then the join.
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &join("", 6000))
            .await
            .unwrap();
        assert_eq!(r.error_code, ResponseError::MemberIdRequired.code());
        let id = r.member_id.to_string();
        assert!(!id.is_empty());
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &join(&id, 6000))
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        assert_eq!((r.generation_id, r.leader.as_str()), (1, id.as_str()));
        assert_eq!(r.members.len(), 1, "the leader gets the members");
        let generation = r.generation_id;

        // Heartbeats before the leader's SyncGroup are fine; a wrong
        // generation or member is not.
        assert_eq!(heartbeat(&mut conn, &id, generation).await, 0);
        assert_eq!(
            heartbeat(&mut conn, &id, generation + 1).await,
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            heartbeat(&mut conn, "stranger", generation).await,
            ResponseError::UnknownMemberId.code()
        );
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s("raw")))
                    .with_generation_id(generation)
                    .with_member_id(s(&id))
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")))
                    .with_assignments(vec![
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s(&id))
                            .with_assignment(Bytes::from_static(b"mine")),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"mine"[..]));

        // A second member (v3: no MEMBER_ID_REQUIRED step) starts a
        // rebalance: its join is held, the first member's heartbeat says so.
        let addr = broker.addr.clone();
        let second = tokio::spawn(async move {
            let mut c = Connection::connect(&addr).await.unwrap();
            let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 3, &join("", 6000)).await.unwrap();
            r
        });
        let mut code = 0;
        for _ in 0..50 {
            code = heartbeat(&mut conn, &id, generation).await;
            if code != 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(code, ResponseError::RebalanceInProgress.code());
        assert!(!second.is_finished(), "held until the first member rejoins");
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &join(&id, 6000))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 2, 2));
        let other = second.await.unwrap();
        assert_eq!((other.error_code, other.generation_id), (0, 2));
        assert!(other.members.is_empty());

        // OffsetCommit, checked in Kafka's order: an old generation of a
        // current member, then a group completing its rebalance.
        broker
            .engine
            .create_topic("raw-topic", 1, &Default::default())
            .unwrap();
        let commit_code = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code;
        let r = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("raw", 1, &id, "raw-topic", 5),
            )
            .await
            .unwrap();
        assert_eq!(commit_code(r), ResponseError::IllegalGeneration.code());
        let r = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("raw", 2, &id, "raw-topic", 5),
            )
            .await
            .unwrap();
        assert_eq!(commit_code(r), ResponseError::RebalanceInProgress.code());
        // A simple commit (no generation, no member) to a group with
        // members, and a stranger: not members.
        for (generation, member) in [(-1, ""), (2, "stranger")] {
            let r = conn
                .call(
                    ApiKey::OffsetCommit,
                    8,
                    &commit("raw", generation, member, "raw-topic", 5),
                )
                .await
                .unwrap();
            assert_eq!(commit_code(r), ResponseError::UnknownMemberId.code());
        }
        assert!(broker.engine.committed_offsets("raw").unwrap().is_empty());
        // The leader's SyncGroup makes the group stable: its commit lands.
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s("raw")))
                    .with_generation_id(2)
                    .with_member_id(s(&id)),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        let r = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("raw", 2, &id, "raw-topic", 5),
            )
            .await
            .unwrap();
        assert_eq!(commit_code(r), 0);
        let stored = broker.engine.committed_offsets("raw").unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|c| (c.topic.as_str(), c.partition, c.offset))
                .collect::<Vec<_>>(),
            vec![("raw-topic", 0, 5)]
        );
        // An unknown topic is refused per partition.
        let r = conn
            .call(ApiKey::OffsetCommit, 8, &commit("raw", 2, &id, "nope", 5))
            .await
            .unwrap();
        assert_eq!(
            commit_code(r),
            ResponseError::UnknownTopicOrPartition.code()
        );

        // LeaveGroup v3+ answers per member.
        let r: LeaveGroupResponse = conn
            .call(
                ApiKey::LeaveGroup,
                4,
                &LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("raw")))
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(s(&id)),
                        leave_group_request::MemberIdentity::default()
                            .with_member_id(s("stranger")),
                    ]),
            )
            .await
            .unwrap();
        let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
        assert_eq!(codes, vec![0, ResponseError::UnknownMemberId.code()]);
        let r = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("raw", 2, &id, "raw-topic", 6),
            )
            .await
            .unwrap();
        assert_eq!(
            commit_code(r),
            ResponseError::UnknownMemberId.code(),
            "a member that left cannot commit"
        );
        assert_eq!(broker.engine.committed_offsets("raw").unwrap()[0].offset, 5);
    }

    /// OffsetCommit of `offset` for partition 0 of `topic`.
    fn commit(
        group: &str,
        generation: i32,
        member: &str,
        topic: &str,
        offset: i64,
    ) -> OffsetCommitRequest {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ])
    }

    fn join_with(group: &str, member: &str, rebalance_ms: i32) -> JoinGroupRequest {
        join(member, 6000)
            .with_group_id(GroupId(s(group)))
            .with_rebalance_timeout_ms(rebalance_ms)
    }

    async fn heartbeat_in(
        conn: &mut Connection,
        group: &str,
        member: &str,
        generation: i32,
    ) -> i16 {
        let r: HeartbeatResponse = conn
            .call(
                ApiKey::Heartbeat,
                4,
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id(generation)
                    .with_member_id(s(member)),
            )
            .await
            .unwrap();
        r.error_code
    }

    /// Two members in generation 2 of `group` (v3 joins: no
    /// MEMBER_ID_REQUIRED step); returns (leader, follower, follower's
    /// connection).
    async fn two_members(
        addr: &str,
        conn: &mut Connection,
        group: &str,
        rebalance_ms: i32,
    ) -> (String, String, Connection) {
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 3, &join_with(group, "", rebalance_ms))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 1));
        let leader = r.member_id.to_string();
        let mut other = Connection::connect(addr).await.unwrap();
        let g = group.to_string();
        let second = tokio::spawn(async move {
            let r: JoinGroupResponse = other
                .call(ApiKey::JoinGroup, 3, &join_with(&g, "", rebalance_ms))
                .await
                .unwrap();
            (r, other)
        });
        while heartbeat_in(conn, group, &leader, 1).await == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let r: JoinGroupResponse = conn
            .call(
                ApiKey::JoinGroup,
                3,
                &join_with(group, &leader, rebalance_ms),
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 2));
        let (f, other) = second.await.unwrap();
        assert_eq!((f.error_code, f.generation_id), (0, 2));
        (leader, f.member_id.to_string(), other)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_leader_that_never_syncs_is_removed_after_the_rebalance_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, clock) = start_manual(dir.path(), |_| {});
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        let (leader, follower, mut other) =
            two_members(&broker.addr, &mut conn, "sync", 1000).await;
        let f = follower.clone();
        let waiting = tokio::spawn(async move {
            let r: SyncGroupResponse = other
                .call(
                    ApiKey::SyncGroup,
                    5,
                    &SyncGroupRequest::default()
                        .with_group_id(GroupId(s("sync")))
                        .with_generation_id(2)
                        .with_member_id(s(&f)),
                )
                .await
                .unwrap();
            r.error_code
        });
        // Let the follower's SyncGroup reach the broker and be held (no
        // signal tells; a removed follower would answer UNKNOWN_MEMBER_ID).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "held for the leader's assignment");
        // The leader heartbeats (its session stays alive) but never syncs:
        // a member until the 1 s rebalance timeout is up, not after.
        advance(&broker, &clock, 999).await;
        assert_eq!(heartbeat_in(&mut conn, "sync", &leader, 2).await, 0);
        advance(&broker, &clock, 1).await;
        let code = heartbeat_in(&mut conn, "sync", &leader, 2).await;
        assert_eq!(code, ResponseError::UnknownMemberId.code());
        let follower_code = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the follower's SyncGroup is answered")
            .unwrap();
        assert_eq!(follower_code, ResponseError::RebalanceInProgress.code());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_member_that_does_not_rejoin_is_removed_after_the_rebalance_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, clock) = start_manual(dir.path(), |_| {});
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        let (leader, follower, mut other) =
            two_members(&broker.addr, &mut conn, "slow", 1000).await;
        for (c, m) in [(&mut conn, &leader), (&mut other, &follower)] {
            let r: SyncGroupResponse = c
                .call(
                    ApiKey::SyncGroup,
                    5,
                    &SyncGroupRequest::default()
                        .with_group_id(GroupId(s("slow")))
                        .with_generation_id(2)
                        .with_member_id(s(m)),
                )
                .await
                .unwrap();
            assert_eq!(r.error_code, 0);
        }
        // A new member starts a rebalance; neither old member rejoins (the
        // leader keeps heartbeating, the follower's session is longer).
        let mut third = Connection::connect(&broker.addr).await.unwrap();
        let rejoin = tokio::spawn(async move {
            let r: JoinGroupResponse = third
                .call(ApiKey::JoinGroup, 3, &join_with("slow", "", 1000))
                .await
                .unwrap();
            r
        });
        while heartbeat_in(&mut conn, "slow", &leader, 2).await == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Just before the 1 s rebalance timeout the join phase still waits
        // for the old members (the leader is one, told to rejoin).
        advance(&broker, &clock, 999).await;
        assert_eq!(
            heartbeat_in(&mut conn, "slow", &leader, 2).await,
            ResponseError::RebalanceInProgress.code()
        );
        assert!(!rejoin.is_finished());
        advance(&broker, &clock, 1).await;
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), rejoin)
            .await
            .expect("the join completes at the rebalance timeout")
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 3));
        assert_eq!(r.members.len(), 1, "only the new member is left");
        assert_eq!(r.leader, r.member_id);
        for m in [&leader, &follower] {
            assert_eq!(
                heartbeat_in(&mut conn, "slow", m, 2).await,
                ResponseError::UnknownMemberId.code()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn offset_delete_and_delete_groups() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::start(dir.path());
        broker
            .engine
            .create_topic("t", 1, &Default::default())
            .unwrap();
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        // A simple commit (assign() consumer): no group membership.
        let r: OffsetCommitResponse = conn
            .call(ApiKey::OffsetCommit, 8, &commit("admin", -1, "", "t", 9))
            .await
            .unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert_eq!(broker.engine.committed_offsets("admin").unwrap().len(), 1);
        let offset_delete = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("admin")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]);
        let r: OffsetDeleteResponse = conn
            .call(ApiKey::OffsetDelete, 0, &offset_delete)
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert!(broker.engine.committed_offsets("admin").unwrap().is_empty());
        let r: OffsetDeleteResponse = conn
            .call(ApiKey::OffsetDelete, 0, &offset_delete)
            .await
            .unwrap();
        assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());

        // DeleteGroups: a group with offsets, then one that does not exist.
        let r: OffsetCommitResponse = conn
            .call(ApiKey::OffsetCommit, 8, &commit("admin", -1, "", "t", 10))
            .await
            .unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let r: DeleteGroupsResponse = conn
            .call(
                ApiKey::DeleteGroups,
                2,
                &DeleteGroupsRequest::default()
                    .with_groups_names(vec![GroupId(s("admin")), GroupId(s("ghost"))]),
            )
            .await
            .unwrap();
        let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
        assert_eq!(codes, vec![0, ResponseError::GroupIdNotFound.code()]);
        assert!(broker.engine.committed_offsets("admin").unwrap().is_empty());
        // The group can be used again afterwards.
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 3, &join_with("admin", "", 1000))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 1));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_group_survives_a_broker_restart_without_a_rebalance() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _) = start_manual(dir.path(), |_| {});
        broker
            .engine
            .create_topic("kept-t", 1, &Default::default())
            .unwrap();
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        let (leader, follower, mut other) =
            two_members(&broker.addr, &mut conn, "restart", 30_000).await;
        let sync = |member: &str, assignments: &[(&str, &'static [u8])]| {
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("restart")))
                .with_generation_id(2)
                .with_member_id(s(member))
                .with_assignments(
                    assignments
                        .iter()
                        .map(|(m, a)| {
                            sync_group_request::SyncGroupRequestAssignment::default()
                                .with_member_id(s(m))
                                .with_assignment(Bytes::from_static(a))
                        })
                        .collect(),
                )
        };
        let f = follower.clone();
        let follower_sync = tokio::spawn(async move {
            let r: SyncGroupResponse = other
                .call(ApiKey::SyncGroup, 5, &sync(&f, &[]))
                .await
                .unwrap();
            r
        });
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &sync(&leader, &[(&leader, b"lead"), (&follower, b"follow")]),
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"lead"[..]));
        let r = follower_sync.await.unwrap();
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"follow"[..]));
        drop(conn);
        broker.stop();

        // Same data directory: the group is back, Stable in generation 2.
        let (broker, clock) = start_manual(dir.path(), |_| {});
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        assert_eq!(heartbeat_in(&mut conn, "restart", &leader, 2).await, 0);
        assert_eq!(heartbeat_in(&mut conn, "restart", &follower, 2).await, 0);
        let r: OffsetCommitResponse = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("restart", 2, &follower, "kept-t", 5),
            )
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "commit in the old generation"
        );
        assert_eq!(
            broker.engine.committed_offsets("restart").unwrap()[0].offset,
            5
        );
        let g = describe(&mut conn, "restart").await;
        assert_eq!(g.group_state.as_str(), "Stable", "no rebalance");
        let members: Vec<(String, Vec<u8>)> = g
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.member_assignment.to_vec()))
            .collect();
        assert_eq!(
            members,
            vec![
                (leader.clone(), b"lead".to_vec()),
                (follower.clone(), b"follow".to_vec())
            ]
        );
        let r: SyncGroupResponse = conn
            .call(ApiKey::SyncGroup, 5, &sync(&follower, &[]))
            .await
            .unwrap();
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"follow"[..]));

        // Each reloaded member had one session timeout (6 s) to heartbeat;
        // the follower stops now and goes when its session ends.
        advance(&broker, &clock, 6000).await;
        assert_eq!(heartbeat_in(&mut conn, "restart", &leader, 2).await, 0);
        advance(&broker, &clock, 1).await;
        assert_eq!(
            heartbeat_in(&mut conn, "restart", &leader, 2).await,
            ResponseError::RebalanceInProgress.code()
        );
    }

    // ---- Static membership (KIP-345) ----------------------------------------

    const FENCED: i16 = 82;

    fn static_join(group: &str, member: &str, instance: &str, session_ms: i32) -> JoinGroupRequest {
        join(member, session_ms)
            .with_group_id(GroupId(s(group)))
            .with_group_instance_id(Some(s(instance)))
    }

    async fn static_heartbeat(
        conn: &mut Connection,
        group: &str,
        member: &str,
        generation: i32,
        instance: &str,
    ) -> i16 {
        let r: HeartbeatResponse = conn
            .call(
                ApiKey::Heartbeat,
                4,
                &HeartbeatRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_generation_id(generation)
                    .with_member_id(s(member))
                    .with_group_instance_id(Some(s(instance))),
            )
            .await
            .unwrap();
        r.error_code
    }

    /// Group `group` with two static members (instances `first`, the
    /// leader, and `second`) at generation 2: `first` joins and syncs alone,
    /// `second` joins, `first` sees the rebalance and rejoins. Returns
    /// `first`'s connection and member id, then `second`'s connection and
    /// join response (both joins checked to be generation 2, no error).
    async fn two_static_members(
        addr: &str,
        group: &'static str,
        (first, second): (&'static str, &'static str),
        session_ms: i32,
    ) -> (Connection, String, Connection, JoinGroupResponse) {
        let mut conn = Connection::connect(addr).await.unwrap();
        let r: JoinGroupResponse = conn
            .call(
                ApiKey::JoinGroup,
                7,
                &static_join(group, "", first, session_ms),
            )
            .await
            .unwrap();
        let leader = r.member_id.to_string();
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &static_sync(group, &leader, 1, first, &[]),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        let mut other = Connection::connect(addr).await.unwrap();
        let join = tokio::spawn(async move {
            let r: JoinGroupResponse = other
                .call(
                    ApiKey::JoinGroup,
                    7,
                    &static_join(group, "", second, session_ms),
                )
                .await
                .unwrap();
            (r, other)
        });
        while static_heartbeat(&mut conn, group, &leader, 1, first).await == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let r: JoinGroupResponse = conn
            .call(
                ApiKey::JoinGroup,
                7,
                &static_join(group, &leader, first, session_ms),
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 2));
        let (r, other) = join.await.unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 2));
        (conn, leader, other, r)
    }

    /// SyncGroup v5 of a static member; the leader hands `assignments`.
    fn static_sync(
        group: &str,
        member: &str,
        generation: i32,
        instance: &str,
        assignments: &[(&str, &'static [u8])],
    ) -> SyncGroupRequest {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_group_instance_id(Some(s(instance)))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::from_static(a))
                    })
                    .collect(),
            )
    }

    async fn describe(
        conn: &mut Connection,
        group: &str,
    ) -> describe_groups_response::DescribedGroup {
        let r: DescribeGroupsResponse = conn
            .call(
                ApiKey::DescribeGroups,
                5,
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
            )
            .await
            .unwrap();
        r.groups.into_iter().next().unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_static_member_s_old_member_id_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::start(dir.path());
        broker
            .engine
            .create_topic("st-topic", 1, &Default::default())
            .unwrap();
        let mut conn = Connection::connect(&broker.addr).await.unwrap();

        // v5+: a static member gets its id at once (no MEMBER_ID_REQUIRED).
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &static_join("st", "", "s", 6000))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 1));
        let old = r.member_id.to_string();
        assert_eq!(r.leader.as_str(), old);
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &static_sync("st", &old, 1, "s", &[(&old, b"mine")]),
            )
            .await
            .unwrap();
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"mine"[..]));

        // The member restarts: same instance id, no member id. It replaces
        // the registered member in the same generation; told the old leader
        // id and no members, it does not assign, and its SyncGroup gets the
        // assignment it had.
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &static_join("st", "", "s", 6000))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 1), "no rebalance");
        let new = r.member_id.to_string();
        assert_ne!(new, old);
        assert_eq!(r.leader.as_str(), old);
        assert!(r.members.is_empty());
        let r: SyncGroupResponse = conn
            .call(ApiKey::SyncGroup, 5, &static_sync("st", &new, 1, "s", &[]))
            .await
            .unwrap();
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"mine"[..]));
        assert_eq!(static_heartbeat(&mut conn, "st", &new, 1, "s").await, 0);
        let g = describe(&mut conn, "st").await;
        assert_eq!(g.group_state.as_str(), "Stable");
        let members: Vec<(String, Option<String>)> = g
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect();
        assert_eq!(members, vec![(new.clone(), Some("s".to_string()))]);

        // The old member id, with the instance id: fenced everywhere.
        assert_eq!(
            static_heartbeat(&mut conn, "st", &old, 1, "s").await,
            FENCED
        );
        let r: SyncGroupResponse = conn
            .call(ApiKey::SyncGroup, 5, &static_sync("st", &old, 1, "s", &[]))
            .await
            .unwrap();
        assert_eq!(r.error_code, FENCED);
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &static_join("st", &old, "s", 6000))
            .await
            .unwrap();
        assert_eq!(r.error_code, FENCED);
        let commit_code = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code;
        let r = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("st", 1, &old, "st-topic", 5).with_group_instance_id(Some(s("s"))),
            )
            .await
            .unwrap();
        assert_eq!(commit_code(r), FENCED);
        let r = conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("st", 1, &new, "st-topic", 6).with_group_instance_id(Some(s("s"))),
            )
            .await
            .unwrap();
        assert_eq!(commit_code(r), 0);
        assert_eq!(broker.engine.committed_offsets("st").unwrap()[0].offset, 6);
        // Still the current member after all that.
        assert_eq!(static_heartbeat(&mut conn, "st", &new, 1, "s").await, 0);

        // LeaveGroup per member: the stale id is fenced, an unknown
        // instance is unknown, an instance id alone removes its member.
        let identity = |member: &str, instance: &str| {
            leave_group_request::MemberIdentity::default()
                .with_member_id(s(member))
                .with_group_instance_id(Some(s(instance)))
        };
        let r: LeaveGroupResponse = conn
            .call(
                ApiKey::LeaveGroup,
                4,
                &LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("st")))
                    .with_members(vec![
                        identity(&old, "s"),
                        identity("", "ghost"),
                        identity("", "s"),
                    ]),
            )
            .await
            .unwrap();
        let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
        assert_eq!(
            codes,
            vec![FENCED, ResponseError::UnknownMemberId.code(), 0]
        );
        assert_eq!(
            static_heartbeat(&mut conn, "st", &new, 1, "s").await,
            ResponseError::UnknownMemberId.code(),
            "removed by its instance id"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_static_member_rejoining_while_the_group_completes_a_rebalance_fences_its_old_sync() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::start(dir.path());
        // A second static member: generation 2 once the leader rejoins.
        let (mut conn, leader, mut t_conn, r) =
            two_static_members(&broker.addr, "cr", ("s", "t"), 6000).await;
        let t_old = r.member_id.to_string();

        // CompletingRebalance: t's SyncGroup waits for the leader's.
        let t = t_old.clone();
        let t_sync = tokio::spawn(async move {
            let r: SyncGroupResponse = t_conn
                .call(ApiKey::SyncGroup, 5, &static_sync("cr", &t, 2, "t", &[]))
                .await
                .unwrap();
            r.error_code
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!t_sync.is_finished(), "held for the leader's assignment");

        // t restarts meanwhile: its old id's SyncGroup is fenced and, as the
        // leader may be assigning to the old id, the group rebalances.
        let mut t2_conn = Connection::connect(&broker.addr).await.unwrap();
        let t2_join = tokio::spawn(async move {
            let r: JoinGroupResponse = t2_conn
                .call(ApiKey::JoinGroup, 7, &static_join("cr", "", "t", 6000))
                .await
                .unwrap();
            r
        });
        let fenced = tokio::time::timeout(std::time::Duration::from_secs(5), t_sync)
            .await
            .expect("the old SyncGroup is answered")
            .unwrap();
        assert_eq!(fenced, FENCED);
        assert_eq!(
            static_heartbeat(&mut conn, "cr", &leader, 2, "s").await,
            ResponseError::RebalanceInProgress.code()
        );
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &static_join("cr", &leader, "s", 6000))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 3, 2));
        let r = t2_join.await.unwrap();
        assert_eq!((r.error_code, r.generation_id), (0, 3));
        assert_ne!(r.member_id.as_str(), t_old);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_static_member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, clock) = start_manual(dir.path(), |c| {
            c.group_min_session_timeout_ms = 500;
        });
        let (mut conn, x, mut y_conn, r) =
            two_static_members(&broker.addr, "gone", ("x", "y"), 2000).await;
        let y = r.member_id.to_string();
        let y_sync = tokio::spawn(async move {
            let r: SyncGroupResponse = y_conn
                .call(ApiKey::SyncGroup, 5, &static_sync("gone", &y, 2, "y", &[]))
                .await
                .unwrap();
            (r.error_code, y_conn)
        });
        let r: SyncGroupResponse = conn
            .call(ApiKey::SyncGroup, 5, &static_sync("gone", &x, 2, "x", &[]))
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        let (code, y_conn) = y_sync.await.unwrap();
        assert_eq!(code, 0);

        // y's connection closes and it sends nothing more: a static member
        // stays until its 2 s session times out, then the group rebalances.
        drop(y_conn);
        for _ in 0..2 {
            advance(&broker, &clock, 1000).await;
            assert_eq!(
                static_heartbeat(&mut conn, "gone", &x, 2, "x").await,
                0,
                "removed before its session timeout"
            );
        }
        advance(&broker, &clock, 1).await;
        let code = static_heartbeat(&mut conn, "gone", &x, 2, "x").await;
        assert_eq!(code, ResponseError::RebalanceInProgress.code());
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 7, &static_join("gone", &x, "x", 2000))
            .await
            .unwrap();
        assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 3, 1));
        let g = describe(&mut conn, "gone").await;
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.members[0].member_id.as_str(), x);
    }

    // ---- Committed offset expiry (KIP-211) ----------------------------------

    /// A broker on a manual clock whose committed offsets expire after
    /// `retention_ms`, checked every 50 ms (of that clock).
    fn start_with_retention(dir: &std::path::Path, retention_ms: i64) -> (TestBroker, ManualClock) {
        start_manual(dir, |c| {
            c.offsets_retention_ms_override = Some(retention_ms);
            c.offsets_retention_check_interval_ms = 50;
        })
    }

    /// `fetched` until it is -1 (the expiry round a tick started may still
    /// be finishing when the tick the test ran returns).
    async fn until_expired(conn: &mut Connection, group: &str, topic: &str, partition: i32) {
        let started = std::time::Instant::now();
        while fetched(conn, group, topic, partition).await != -1 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{group}'s offset of {topic}-{partition} never expired"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// OffsetCommit of `offset` for `partition` of `topic`.
    fn commit_to(
        group: &str,
        generation: i32,
        member: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> OffsetCommitRequest {
        let mut r = commit(group, generation, member, topic, offset);
        r.topics[0].partitions[0].partition_index = partition;
        r
    }

    async fn fetched(conn: &mut Connection, group: &str, topic: &str, partition: i32) -> i64 {
        let r: OffsetFetchResponse = conn
            .call(
                ApiKey::OffsetFetch,
                7,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(topic)))
                            .with_partition_indexes(vec![partition]),
                    ])),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        r.topics[0].partitions[0].committed_offset
    }

    async fn listed(conn: &mut Connection) -> Vec<String> {
        let r: ListGroupsResponse = conn
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .await
            .unwrap();
        r.groups.iter().map(|g| g.group_id.0.to_string()).collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn offsets_of_a_live_group_are_kept_and_expire_retention_after_it_empties() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, clock) = start_with_retention(dir.path(), 1000);
        broker
            .engine
            .create_topic("kept", 1, &Default::default())
            .unwrap();
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 3, &join_with("exp", "", 10_000))
            .await
            .unwrap();
        let id = r.member_id.to_string();
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s("exp")))
                    .with_generation_id(1)
                    .with_member_id(s(&id)),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        let r: OffsetCommitResponse = conn
            .call(ApiKey::OffsetCommit, 8, &commit("exp", 1, &id, "kept", 7))
            .await
            .unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);

        // A group with a live member keeps its offsets past the retention.
        for _ in 0..5 {
            advance(&broker, &clock, 500).await;
            assert_eq!(heartbeat_in(&mut conn, "exp", &id, 1).await, 0);
        }
        assert_eq!(fetched(&mut conn, "exp", "kept", 0).await, 7);

        // Once it is empty they age from then, not from their commit.
        let r: LeaveGroupResponse = conn
            .call(
                ApiKey::LeaveGroup,
                4,
                &LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("exp")))
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(s(&id))
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(r.members[0].error_code, 0);
        advance(&broker, &clock, 400).await;
        assert_eq!(fetched(&mut conn, "exp", "kept", 0).await, 7);
        assert!(listed(&mut conn).await.contains(&"exp".to_string()));
        advance(&broker, &clock, 599).await;
        assert_eq!(
            fetched(&mut conn, "exp", "kept", 0).await,
            7,
            "expired before the retention after the group emptied"
        );
        // Expired by the next expiry round (every 50 ms).
        advance(&broker, &clock, 50).await;
        until_expired(&mut conn, "exp", "kept", 0).await;
        assert!(broker.engine.committed_offsets("exp").unwrap().is_empty());
        assert!(
            !listed(&mut conn).await.contains(&"exp".to_string()),
            "a group with no members and no offsets is not listed"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_emptied_group_s_offsets_age_from_when_it_emptied_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let retention = |c: &mut tierlog::config::BrokerConfig| {
            c.group_initial_rebalance_delay_ms = 0;
            c.offsets_retention_ms_override = Some(1000);
            c.offsets_retention_check_interval_ms = 50;
        };
        let clock = ManualClock::new(SystemClock.now_ms());
        let broker = TestBroker::start_with_clock(dir.path(), retention, Arc::new(clock.clone()));
        broker
            .engine
            .create_topic("kept", 1, &Default::default())
            .unwrap();
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        let r: JoinGroupResponse = conn
            .call(ApiKey::JoinGroup, 3, &join_with("gone", "", 10_000))
            .await
            .unwrap();
        let id = r.member_id.to_string();
        let r: SyncGroupResponse = conn
            .call(
                ApiKey::SyncGroup,
                5,
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s("gone")))
                    .with_generation_id(1)
                    .with_member_id(s(&id)),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        let r: OffsetCommitResponse = conn
            .call(ApiKey::OffsetCommit, 8, &commit("gone", 1, &id, "kept", 7))
            .await
            .unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let emptied_at = clock.now_ms();
        let r: LeaveGroupResponse = conn
            .call(
                ApiKey::LeaveGroup,
                4,
                &LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("gone")))
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(s(&id))
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(r.members[0].error_code, 0);
        advance(&broker, &clock, 10).await;
        let stored = broker.engine.stored_groups().unwrap();
        assert_eq!(stored.len(), 1);
        assert!(stored[0].members.is_empty());
        assert_eq!(stored[0].emptied_at_ms, Some(emptied_at));
        broker.stop();

        // The next run starts 900 ms after the group emptied: its offsets
        // still expire 1000 ms after it emptied, not after this start.
        let clock = ManualClock::new(emptied_at + 900);
        let broker = TestBroker::start_with_clock(dir.path(), retention, Arc::new(clock.clone()));
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        advance(&broker, &clock, 99).await;
        assert_eq!(fetched(&mut conn, "gone", "kept", 0).await, 7);
        // Expired by the next expiry round (every 50 ms).
        advance(&broker, &clock, 60).await;
        until_expired(&mut conn, "gone", "kept", 0).await;
        // With its last offset, what was stored of the group went too.
        let started = std::time::Instant::now();
        while !broker.engine.stored_groups().unwrap().is_empty() {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        broker.stop();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn standalone_commits_expire_by_their_own_commit_time() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, clock) = start_with_retention(dir.path(), 1000);
        broker
            .engine
            .create_topic("solo-t", 2, &Default::default())
            .unwrap();
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        let ok = |r: OffsetCommitResponse| r.topics[0].partitions[0].error_code == 0;
        assert!(ok(conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit_to("solo", -1, "", "solo-t", 0, 3)
            )
            .await
            .unwrap()));
        advance(&broker, &clock, 600).await;
        assert!(ok(conn
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit_to("solo", -1, "", "solo-t", 1, 4)
            )
            .await
            .unwrap()));
        advance(&broker, &clock, 399).await;
        assert_eq!(
            fetched(&mut conn, "solo", "solo-t", 0).await,
            3,
            "the first commit expired before the retention"
        );
        // Expired by the next expiry round (every 50 ms).
        advance(&broker, &clock, 50).await;
        until_expired(&mut conn, "solo", "solo-t", 0).await;
        assert_eq!(
            fetched(&mut conn, "solo", "solo-t", 1).await,
            4,
            "the later commit is younger than the retention"
        );
        assert!(listed(&mut conn).await.contains(&"solo".to_string()));
        advance(&broker, &clock, 600).await;
        until_expired(&mut conn, "solo", "solo-t", 1).await;
        assert!(!listed(&mut conn).await.contains(&"solo".to_string()));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn after_a_restart_old_offsets_get_a_full_retention_from_the_broker_start() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _) = start_with_retention(dir.path(), 60_000);
        broker
            .engine
            .create_topic("old-t", 1, &Default::default())
            .unwrap();
        // A commit made long ago (an hour before the retention ran out).
        let long_ago = broker.engine.now_ms() - 3_600_000;
        broker
            .engine
            .commit_offsets(
                "old",
                &[tierlog::catalog::CommittedOffset {
                    topic: "old-t".into(),
                    partition: 0,
                    offset: 11,
                    leader_epoch: -1,
                    metadata: None,
                    commit_ms: long_ago,
                }],
            )
            .unwrap();
        broker.stop();

        // This run never saw the group: its offsets age from the start.
        let (broker, clock) = start_with_retention(dir.path(), 1000);
        let mut conn = Connection::connect(&broker.addr).await.unwrap();
        advance(&broker, &clock, 400).await;
        assert_eq!(fetched(&mut conn, "old", "old-t", 0).await, 11);
        advance(&broker, &clock, 599).await;
        assert_eq!(
            fetched(&mut conn, "old", "old-t", 0).await,
            11,
            "expired before a full retention from the broker start"
        );
        // Expired by the next expiry round (every 50 ms).
        advance(&broker, &clock, 50).await;
        until_expired(&mut conn, "old", "old-t", 0).await;
    }
}
