//! Hostile input against a running broker (issue 15, items 6 and 10):
//! requests that would cost gigabytes or minutes get bounded answers, a
//! request whose client left stops, the broker-wide request-bytes budget
//! holds, and client strings reach the log escaped and rate-limited.
//!
//! Every wait here is bounded (a deadline on a poll), and no assertion is
//! about elapsed time.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::broker::TestBroker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tierlog::broker::{MAX_REQUEST_ENTRIES, MAX_REQUEST_TOTAL_ENTRIES};
use tierlog::client::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INVALID_REQUEST: i16 = 42;
const INVALID_GROUP_ID: i16 = 24;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// Everything the broker logs in this test binary (all tests share it).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buf);
        // Installed before any broker starts (every test calls logs()
        // first), so common::init_tracing's try_init finds it in place.
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// Poll `f` until it holds; panics after a generous bound (a hang guard,
/// not a timing assertion).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request frame with `client_id`, as bytes on the wire.
fn frame<T: Encodable>(api: ApiKey, version: i16, client_id: &str, req: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out.to_vec()
}

/// Send one request with `client_id` on a fresh connection; its response
/// and the response's size in bytes.
async fn raw_call<T: Encodable, R: Decodable>(
    addr: &str,
    api: ApiKey,
    version: i16,
    client_id: &str,
    req: &T,
) -> (R, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame(api, version, client_id, req))
        .await
        .unwrap();
    let len = s.read_i32().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
    let mut buf = bytes::Bytes::from(buf);
    ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    (R::decode(&mut buf, version).unwrap(), len)
}

fn commit(broker: &TestBroker, group: &str) {
    broker
        .engine
        .commit_offsets(
            group,
            &[tierlog::catalog::CommittedOffset {
                topic: "t".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
                commit_ms: broker.engine.now_ms(),
            }],
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_requests_with_huge_arrays_get_bounded_answers_while_others_are_served() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    commit(&broker, "keep");
    commit(&broker, "doomed");
    let addr = broker.addr.clone();

    // Another client, served all along.
    let (stop, other) = other_client(&addr);

    let over = MAX_REQUEST_ENTRIES * 20;
    let empty = vec![gid(""); over];
    // DescribeGroups v5 of 200,000 empty ids (200 KB): one INVALID_REQUEST
    // entry, not 200,000 described groups.
    let (r, bytes): (DescribeGroupsResponse, _) = raw_call(
        &addr,
        ApiKey::DescribeGroups,
        5,
        "t",
        &DescribeGroupsRequest::default().with_groups(empty.clone()),
    )
    .await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].error_code, INVALID_REQUEST);
    assert!(bytes < 100, "{bytes} bytes answered");
    // Under the limit: duplicates answered once, an empty id refused.
    let mut ids = vec![gid(""); 3000];
    ids.extend((0..6000).map(|i| gid(&format!("g{}", i % 10))));
    ids.push(gid("keep"));
    let (r, _): (DescribeGroupsResponse, _) = raw_call(
        &addr,
        ApiKey::DescribeGroups,
        5,
        "t",
        &DescribeGroupsRequest::default().with_groups(ids),
    )
    .await;
    assert_eq!(r.groups.len(), 12, "'' + g0..g9 + keep");
    let by_id = |id: &str| {
        r.groups
            .iter()
            .find(|g| g.group_id.0.as_str() == id)
            .unwrap()
    };
    assert_eq!(by_id("").error_code, INVALID_GROUP_ID);
    assert_eq!(by_id("g3").group_state.as_str(), "Dead");
    assert_eq!(by_id("keep").group_state.as_str(), "Empty");

    // FindCoordinator v4 (coordinator_keys).
    let (r, bytes): (FindCoordinatorResponse, _) = raw_call(
        &addr,
        ApiKey::FindCoordinator,
        4,
        "t",
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_static_str(""); over]),
    )
    .await;
    assert_eq!(r.coordinators.len(), 1);
    assert_eq!(r.coordinators[0].error_code, INVALID_REQUEST);
    assert!(bytes < 200, "{bytes} bytes answered");
    let keys = (0..8000)
        .map(|i| StrBytes::from_string(format!("k{}", i % 100)))
        .collect();
    let (r, _): (FindCoordinatorResponse, _) = raw_call(
        &addr,
        ApiKey::FindCoordinator,
        4,
        "t",
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(keys),
    )
    .await;
    assert_eq!(r.coordinators.len(), 100);
    assert!(r.coordinators.iter().all(|c| c.error_code == 0));

    // DeleteGroups: over the limit, nothing is deleted.
    let mut names = empty;
    names.push(gid("doomed"));
    let (r, _): (DeleteGroupsResponse, _) = raw_call(
        &addr,
        ApiKey::DeleteGroups,
        2,
        "t",
        &DeleteGroupsRequest::default().with_groups_names(names),
    )
    .await;
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].error_code, INVALID_REQUEST);
    let stored = broker.engine.groups_with_offsets().unwrap();
    assert!(stored.contains(&"doomed".to_string()), "{stored:?}");
    // Under it: each distinct name once.
    let mut names = vec![gid(""); 4000];
    names.extend((0..4000).map(|i| gid(if i % 2 == 0 { "doomed" } else { "nope" })));
    let (r, _): (DeleteGroupsResponse, _) = raw_call(
        &addr,
        ApiKey::DeleteGroups,
        2,
        "t",
        &DeleteGroupsRequest::default().with_groups_names(names),
    )
    .await;
    let mut got: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.error_code))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (String::new(), INVALID_GROUP_ID),
            ("doomed".to_string(), 0),
            ("nope".to_string(), GROUP_ID_NOT_FOUND),
        ]
    );
    assert_eq!(broker.engine.groups_with_offsets().unwrap(), vec!["keep"]);

    // Metadata is covered too.
    let topics = vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))));
        MAX_REQUEST_ENTRIES + 1
    ];
    let (r, _): (MetadataResponse, _) = raw_call(
        &addr,
        ApiKey::Metadata,
        9,
        "t",
        &MetadataRequest::default().with_topics(Some(topics)),
    )
    .await;
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].error_code, INVALID_REQUEST);

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answered = tokio::time::timeout(Duration::from_secs(60), other)
        .await
        .expect("the other client is still served")
        .unwrap();
    assert!(answered > 0);
    broker.stop();
}

/// A client asking for Metadata in a loop until `stop`; returns how many
/// answers it got (at least one).
fn other_client(
    addr: &str,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<u32>,
) {
    let addr = addr.to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_other = Arc::clone(&stop);
    let other = tokio::spawn(async move {
        let mut c = Connection::connect(&addr).await.unwrap();
        let mut answered = 0u32;
        while !stop_other.load(std::sync::atomic::Ordering::SeqCst) || answered == 0 {
            let r: MetadataResponse = c
                .call(
                    ApiKey::Metadata,
                    9,
                    &MetadataRequest::default().with_topics(None),
                )
                .await
                .unwrap();
            assert!(!r.topics.is_empty());
            answered += 1;
        }
        answered
    });
    (stop, other)
}

fn tname(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_arrays_over_the_total_entry_limit_get_bounded_answers_and_do_nothing() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    commit(&broker, "keep");
    let addr = broker.addr.clone();
    let (stop, other) = other_client(&addr);
    // One topic (or group) and one entry more than the total allows below
    // it: the leading array is tiny, the nested one is not.
    let n = MAX_REQUEST_TOTAL_ENTRIES;
    let parts = |n: usize| (0..n as i32).collect::<Vec<i32>>();

    // Produce v9: a real batch for partition 0 first, then 100,000 empty
    // partitions. Nothing is appended.
    let mut data = vec![produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(common::batch(0, 3, 10, 1_000).into()))];
    data.extend(
        parts(n)
            .into_iter()
            .map(|i| produce_request::PartitionProduceData::default().with_index(i + 1)),
    );
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(tname("t"))
            .with_partition_data(data)]);
    let (r, bytes): (ProduceResponse, _) = raw_call(&addr, ApiKey::Produce, 9, "t", &req).await;
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].partition_responses.len(), 1);
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        INVALID_REQUEST
    );
    assert!(bytes < 300, "{bytes} bytes answered");
    assert_eq!(broker.engine.offsets("t", 0).unwrap().log_end_offset, 0);

    // Fetch v12: the top-level error code, no partition answered.
    let fetch_parts = parts(n + 1)
        .into_iter()
        .map(|i| fetch_request::FetchPartition::default().with_partition(i))
        .collect();
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tname("t"))
            .with_partitions(fetch_parts)]);
    let (r, bytes): (FetchResponse, _) = raw_call(&addr, ApiKey::Fetch, 12, "t", &req).await;
    assert_eq!(r.error_code, INVALID_REQUEST);
    assert!(r.responses.is_empty());
    assert!(bytes < 100, "{bytes} bytes answered");

    // ListOffsets v7.
    let list_parts = |n: usize| {
        parts(n)
            .into_iter()
            .map(|i| {
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(i)
                    .with_timestamp(-1)
            })
            .collect::<Vec<_>>()
    };
    let req = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(tname("t"))
            .with_partitions(list_parts(n + 1)),
    ]);
    let (r, bytes): (ListOffsetsResponse, _) =
        raw_call(&addr, ApiKey::ListOffsets, 7, "t", &req).await;
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].partitions[0].error_code, INVALID_REQUEST);
    assert!(bytes < 100, "{bytes} bytes answered");
    // Under the limit, each partition is answered.
    let req = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(tname("t"))
            .with_partitions(list_parts(20_000)),
    ]);
    let (r, _): (ListOffsetsResponse, _) = raw_call(&addr, ApiKey::ListOffsets, 7, "t", &req).await;
    assert_eq!(r.topics[0].partitions.len(), 20_000);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // OffsetCommit v8 of group "new": nothing is committed.
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("new"))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(tname("t"))
                .with_partitions(
                    parts(n + 1)
                        .into_iter()
                        .map(|i| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(i)
                                .with_committed_offset(1)
                        })
                        .collect(),
                ),
        ]);
    let (r, _): (OffsetCommitResponse, _) =
        raw_call(&addr, ApiKey::OffsetCommit, 8, "t", &req).await;
    assert_eq!(r.topics[0].partitions[0].error_code, INVALID_REQUEST);
    assert!(broker.engine.committed_offsets("new").unwrap().is_empty());

    // OffsetFetch v8: groups → topics → partitions.
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(gid("keep"))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(tname("t"))
                    .with_partition_indexes(parts(n + 1)),
            ])),
    ]);
    let (r, bytes): (OffsetFetchResponse, _) =
        raw_call(&addr, ApiKey::OffsetFetch, 8, "t", &req).await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].error_code, INVALID_REQUEST);
    assert!(bytes < 100, "{bytes} bytes answered");

    // OffsetDelete: "keep" keeps its offset.
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid("keep"))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(tname("t"))
                .with_partitions(
                    parts(n + 1)
                        .into_iter()
                        .map(|i| {
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(i % 2)
                        })
                        .collect(),
                ),
        ]);
    let (r, _): (OffsetDeleteResponse, _) =
        raw_call(&addr, ApiKey::OffsetDelete, 0, "t", &req).await;
    assert_eq!(r.error_code, INVALID_REQUEST);
    assert_eq!(broker.engine.committed_offsets("keep").unwrap().len(), 1);

    // LeaveGroup v4: members of empty ids.
    let req = LeaveGroupRequest::default()
        .with_group_id(gid("keep"))
        .with_members(vec![leave_group_request::MemberIdentity::default(); n + 1]);
    let (r, bytes): (LeaveGroupResponse, _) =
        raw_call(&addr, ApiKey::LeaveGroup, 4, "t", &req).await;
    assert_eq!(r.error_code, INVALID_REQUEST);
    assert!(r.members.is_empty());
    assert!(bytes < 100, "{bytes} bytes answered");

    // IncrementalAlterConfigs v1 and AlterConfigs v2: one resource, too
    // many configs; the topic's configs do not change.
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1")));
                n + 1
            ]),
    ]);
    let (r, _): (IncrementalAlterConfigsResponse, _) =
        raw_call(&addr, ApiKey::IncrementalAlterConfigs, 1, "t", &req).await;
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].error_code, INVALID_REQUEST);
    let req = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configs(vec![
                alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1")));
                n + 1
            ]),
    ]);
    let (r, _): (AlterConfigsResponse, _) =
        raw_call(&addr, ApiKey::AlterConfigs, 2, "t", &req).await;
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].error_code, INVALID_REQUEST);
    assert!(broker.engine.topic("t").unwrap().overrides.is_empty());

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answered = tokio::time::timeout(Duration::from_secs(60), other)
        .await
        .expect("the other client is still served")
        .unwrap();
    assert!(answered > 0);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_groups_whose_client_left_stops_between_groups() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let groups: Vec<String> = (0..300).map(|i| format!("g{i:03}")).collect();
    for g in &groups {
        commit(&broker, g);
    }
    // Hold the catalog's write lock from outside, so the broker's first
    // delete waits in SQLite (busy_timeout) while the client leaves.
    let outside = rusqlite::Connection::open(dir.path().join("catalog.db")).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let mut s = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    let req =
        DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| gid(g)).collect());
    s.write_all(&frame(ApiKey::DeleteGroups, 2, "leaver", &req))
        .await
        .unwrap();
    let metrics = Arc::clone(broker.engine.metrics());
    let delete_started = || metrics.requests(ApiKey::DeleteGroups as i16) == 1;
    eventually("the DeleteGroups arrives", delete_started).await;
    drop(s);
    eventually("the broker notices the client left", || {
        metrics.requests_abandoned.get() == 1
    })
    .await;
    outside.execute_batch("ROLLBACK").unwrap();
    drop(outside);

    // The group in flight finishes (or fails); no other is touched. A
    // later request on another connection queues behind that group on the
    // engine's catalog lock, so when it is answered the abandoned request
    // has done all it ever will. (Without abandoning, the old request goes
    // on deleting beside it and this fails.)
    let mut c = Connection::connect(&broker.addr).await.unwrap();
    let r: DeleteGroupsResponse = c
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("g299")]),
        )
        .await
        .unwrap();
    assert_eq!(r.results[0].error_code, 0, "the broker still deletes");
    let left = broker.engine.groups_with_offsets().unwrap();
    assert!(
        left.len() >= groups.len() - 2,
        "only the group in flight may have gone with the client: {} of {} left",
        left.len(),
        groups.len() - 1
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_large_frames_wait_for_the_broker_wide_budget_and_small_requests_pass() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let budget = 8usize << 20;
    let frame_size = 2usize << 20;
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.socket_request_max_bytes = frame_size;
        c.queued_max_request_bytes = budget;
    });
    let metrics = Arc::clone(broker.engine.metrics());
    // Twelve clients declare a 2 MiB frame and send 64 KiB of it. The
    // large share (three quarters: 6 MiB) holds three; nine wait, without
    // allocating.
    let clients = 12;
    let mut stalled = Vec::new();
    for _ in 0..clients {
        let mut s = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
        let mut start = (frame_size as i32).to_be_bytes().to_vec();
        start.extend_from_slice(&vec![0u8; 64 << 10]);
        s.write_all(&start).await.unwrap();
        stalled.push(s);
    }
    eventually("nine connections wait for the budget", || {
        metrics.request_budget_waiters.get() == 9
    })
    .await;
    assert_eq!(metrics.request_bytes_buffered.get(), 3 * frame_size as u64);
    assert!(
        metrics.request_bytes_buffered.max() <= budget as u64,
        "{} bytes buffered at most, budget {budget}",
        metrics.request_bytes_buffered.max()
    );
    // The exposition says so too.
    let text = broker.engine.render_metrics();
    assert!(text.contains("tierlog_request_budget_waiters 9"), "{text}");

    // A small request still gets through (the reserved quarter).
    let mut c = Connection::connect(&broker.addr).await.unwrap();
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        )
        .await
        .unwrap();
    assert_eq!(r.brokers.len(), 1);

    // The stalled clients leave: everything is given back.
    drop(stalled);
    eventually("the budget is free again", || {
        metrics.request_budget_waiters.get() == 0 && metrics.request_bytes_buffered.get() == 0
    })
    .await;
    assert!(metrics.request_bytes_buffered.max() <= budget as u64);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_strings_are_escaped_and_connection_warnings_are_rate_limited() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    // A stopped engine clock: the limiter's bucket never refills, so
    // exactly its burst is logged.
    let clock = tierlog::clock::ManualClock::new(1_700_000_000_000);
    let broker = TestBroker::start_with_clock(dir.path(), |_| {}, Arc::new(clock));
    let metrics = Arc::clone(broker.engine.metrics());

    // A client id with a newline and an escape sequence, in the warning
    // about a request over the entry limit.
    let evil = "evil\n2099-01-01T00:00:00Z ERROR forged\u{1b}[31m";
    let (r, _): (DescribeGroupsResponse, _) = raw_call(
        &broker.addr,
        ApiKey::DescribeGroups,
        5,
        evil,
        &DescribeGroupsRequest::default().with_groups(vec![gid(""); MAX_REQUEST_ENTRIES + 1]),
    )
    .await;
    assert_eq!(r.groups[0].error_code, INVALID_REQUEST);
    let logged = log_text();
    assert!(
        logged.contains(r"client_id=evil\n2099-01-01T00:00:00Z ERROR forged\u{1b}[31m"),
        "{logged}"
    );
    assert!(!logged.contains('\u{1b}'), "no raw escape byte in the log");
    assert!(!logged.contains("\n2099-01-01"), "no forged line");

    // Malformed connections: one warning each until the burst (5, the
    // first one above included) is spent, then counted, not logged.
    let mut peers = Vec::new();
    for _ in 0..20 {
        let addr = broker.addr.clone();
        let peer = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut garbage = 12i32.to_be_bytes().to_vec();
            garbage.extend_from_slice(&[0xff; 12]);
            s.write_all(&garbage).unwrap();
            let mut buf = [0u8; 16];
            let _ = s.read(&mut buf); // closed by the broker
            s.local_addr().unwrap().to_string()
        })
        .await
        .unwrap();
        peers.push(peer);
    }
    let logged = log_text();
    let warned = logged
        .lines()
        .filter(|l| {
            // Tests share the log: another test's connection closed for a
            // failed acks=0 produce may have had one of these ports before.
            l.contains("closing connection")
                && !l.contains("acks=0")
                && peers.iter().any(|p| l.contains(&format!("peer={p} ")))
        })
        .count();
    assert_eq!(warned, 4, "the burst's other four");
    assert_eq!(metrics.log_warnings_suppressed.get(), 16);
    broker.stop();
}

/// Has the broker closed `s`? Reads until end of stream or a reset; panics
/// if neither comes within a generous bound (a hang guard, not a timing
/// assertion). Bytes the broker sends first (a response) are skipped.
async fn closed_by_broker(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the broker closes the connection");
}

/// A connection from `local` (any 127.0.0.0/8 address) to `addr`.
async fn connect_from(local: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// One Metadata request on `s`, answered.
async fn served(s: &mut tokio::net::TcpStream) {
    s.write_all(&frame(
        ApiKey::Metadata,
        9,
        "t",
        &MetadataRequest::default().with_topics(None),
    ))
    .await
    .unwrap();
    let len = s.read_i32().await.expect("answered") as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_frames_and_idle_connections_are_closed_but_busy_ones_are_not() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.connections_max_idle_ms = 300;
        c.request_read_timeout_ms = 200;
    });
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let metrics = Arc::clone(broker.engine.metrics());
    let addr = broker.addr.clone();

    // A frame declared 100 bytes long, 10 of them sent, then nothing.
    let mut body_stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut start = 100i32.to_be_bytes().to_vec();
    start.extend_from_slice(&[0u8; 10]);
    body_stalled.write_all(&start).await.unwrap();
    // Two bytes of a size prefix, then nothing.
    let mut prefix_stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    prefix_stalled.write_all(&[0, 0]).await.unwrap();
    // Connected, never a byte.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Served, then idle.
    let mut idle_after = tokio::net::TcpStream::connect(&addr).await.unwrap();
    served(&mut idle_after).await;

    // A long-poll Fetch held longer than the idle time is in flight: its
    // connection stays open and is answered.
    let mut c = Connection::connect(&addr).await.unwrap();
    let fetch = FetchRequest::default()
        .with_max_wait_ms(1500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tname("t"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch).await.unwrap();
    assert_eq!(r.responses[0].partitions[0].error_code, 0);

    closed_by_broker(&mut body_stalled).await;
    closed_by_broker(&mut prefix_stalled).await;
    closed_by_broker(&mut silent).await;
    closed_by_broker(&mut idle_after).await;
    eventually("the closes are counted", || {
        metrics.request_read_timeouts.get() == 2 && metrics.connections_idle_closed.get() >= 3
    })
    .await;
    assert_eq!(
        metrics.request_bytes_buffered.get(),
        0,
        "reservations given back"
    );
    let logged = log_text();
    assert!(
        logged.contains("request body not received within request_read_timeout_ms (200 ms)"),
        "{logged}"
    );
    // The broker serves a new client.
    let mut fresh = tokio::net::TcpStream::connect(&addr).await.unwrap();
    served(&mut fresh).await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_broker_and_per_address_caps_are_closed_at_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.max_connections = 8;
        c.max_connections_per_ip = 5;
    });
    let metrics = Arc::clone(broker.engine.metrics());
    let addr = broker.addr.clone();

    // Five from 127.0.0.1 are served; a sixth from it is closed, while
    // 127.0.0.2 still gets in.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from("127.0.0.1", &addr).await;
        served(&mut s).await;
        held.push(s);
    }
    let mut sixth = connect_from("127.0.0.1", &addr).await;
    closed_by_broker(&mut sixth).await;
    assert_eq!(metrics.connections_rejected.get(), 1);
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", &addr).await;
        served(&mut s).await;
        held.push(s);
    }
    // Eight in all: a ninth, from any address, is closed.
    let mut ninth = connect_from("127.0.0.3", &addr).await;
    closed_by_broker(&mut ninth).await;
    assert_eq!(metrics.connections_rejected.get(), 2);
    // The served ones still are.
    for s in &mut held {
        served(s).await;
    }
    // One leaves: its slot comes back (once the broker has seen it go).
    drop(held.remove(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut s = connect_from("127.0.0.3", &addr).await;
        let ok = s
            .write_all(&frame(
                ApiKey::Metadata,
                9,
                "t",
                &MetadataRequest::default().with_topics(None),
            ))
            .await
            .is_ok()
            && s.read_i32().await.is_ok();
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = broker.engine.render_metrics();
    assert!(
        text.contains("tierlog_connections_rejected_total"),
        "{text}"
    );
    broker.stop();
}

/// An unsigned varint (the compact arrays' and strings' length prefix).
fn uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A frame of `api` v`version` whose body is `body` (built by hand: the
/// campaign's requests hold millions of entries, too many to build as
/// structs in this process).
fn raw_frame(api: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("hostile")));
    let mut h = BytesMut::new();
    header
        .encode(&mut h, api.request_header_version(version))
        .unwrap();
    let mut out = ((h.len() + body.len()) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out
}

/// The campaign's request bodies with `n` entries each, as
/// (what, api, version, body).
fn campaign_bodies(n: usize) -> Vec<(&'static str, ApiKey, i16, Vec<u8>)> {
    let mut out = Vec::new();
    // DescribeGroups v5: n empty group ids.
    let mut b = Vec::new();
    uvarint(&mut b, n as u64 + 1);
    b.extend(std::iter::repeat_n(1u8, n));
    b.extend([0, 0]);
    out.push(("DescribeGroups v5, empty ids", ApiKey::DescribeGroups, 5, b));
    // FindCoordinator v4: key type 0, n empty keys.
    let mut b = vec![0];
    uvarint(&mut b, n as u64 + 1);
    b.extend(std::iter::repeat_n(1u8, n));
    b.push(0);
    out.push((
        "FindCoordinator v4, empty keys",
        ApiKey::FindCoordinator,
        4,
        b,
    ));
    // DeleteGroups v2: n empty group ids.
    let mut b = Vec::new();
    uvarint(&mut b, n as u64 + 1);
    b.extend(std::iter::repeat_n(1u8, n));
    b.push(0);
    out.push(("DeleteGroups v2, empty ids", ApiKey::DeleteGroups, 2, b));
    // LeaveGroup v4: group "g", n members (empty id, null instance id).
    let mut b = vec![2, b'g'];
    uvarint(&mut b, n as u64 + 1);
    for _ in 0..n {
        b.extend([1, 0, 0]);
    }
    b.push(0);
    out.push(("LeaveGroup v4, empty members", ApiKey::LeaveGroup, 4, b));
    // Produce v9: one topic, n partitions without records.
    let mut b = vec![0, 0xff, 0xff, 0, 0, 0x03, 0xe8, 2, 2, b't'];
    uvarint(&mut b, n as u64 + 1);
    for i in 0..n as i32 {
        b.extend(i.to_be_bytes());
        b.extend([0, 0]);
    }
    b.extend([0, 0]);
    out.push(("Produce v9, one topic's partitions", ApiKey::Produce, 9, b));
    // OffsetFetch v8: one group, one topic, n partition indexes.
    let mut b = vec![2, 2, b'g', 2, 2, b't'];
    uvarint(&mut b, n as u64 + 1);
    for i in 0..n as i32 {
        b.extend(i.to_be_bytes());
    }
    b.extend([0, 0, 0, 0]);
    out.push((
        "OffsetFetch v8, groups → topics → partitions",
        ApiKey::OffsetFetch,
        8,
        b,
    ));
    out
}

#[test]
fn the_campaign_bodies_are_what_they_say() {
    // Three entries each, decoded by kafka-protocol: the hand-built bytes
    // are the requests they claim to be.
    for (what, api, version, body) in campaign_bodies(3) {
        let mut b = bytes::Bytes::from(body);
        let entries = match api {
            ApiKey::DescribeGroups => DescribeGroupsRequest::decode(&mut b, version)
                .unwrap()
                .groups
                .len(),
            ApiKey::FindCoordinator => FindCoordinatorRequest::decode(&mut b, version)
                .unwrap()
                .coordinator_keys
                .len(),
            ApiKey::DeleteGroups => DeleteGroupsRequest::decode(&mut b, version)
                .unwrap()
                .groups_names
                .len(),
            ApiKey::LeaveGroup => LeaveGroupRequest::decode(&mut b, version)
                .unwrap()
                .members
                .len(),
            ApiKey::Produce => ProduceRequest::decode(&mut b, version).unwrap().topic_data[0]
                .partition_data
                .len(),
            ApiKey::OffsetFetch => {
                let r = OffsetFetchRequest::decode(&mut b, version).unwrap();
                r.groups[0].topics.as_ref().unwrap()[0]
                    .partition_indexes
                    .len()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(entries, 3, "{what}");
        assert!(b.is_empty(), "{what}: {} bytes left", b.len());
    }
}

/// `VmHWM` (peak resident set) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// The whole hostile campaign against a real `tierlog serve` process, with
/// its default limits: every request answered (or its connection closed),
/// another client served afterwards, and the broker's peak RSS under 1 GiB
/// (the issue measured 2.4 GB for the first request alone before the
/// limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_stays_under_a_memory_bound_through_the_hostile_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server::Server::start(dir.path());
    let addr = server.addr.clone();
    let pid = server.pid();
    let mut c = Connection::connect(&addr).await.unwrap();
    let _: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(tname("t"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
        )
        .await
        .unwrap();
    let before = peak_rss(pid);

    // Each request with ten million entries (10 MB to 80 MB frames, under
    // socket.request.max.bytes), one at a time and then all at once.
    let frames: Vec<(&str, Vec<u8>)> = campaign_bodies(10_000_000)
        .into_iter()
        .map(|(what, api, version, body)| (what, raw_frame(api, version, &body)))
        .collect();
    let send = |frame: Vec<u8>| {
        let addr = addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(&frame).await.unwrap();
            let len = s.read_i32().await.expect("answered") as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await.unwrap();
            len
        }
    };
    for (what, frame) in &frames {
        let len = send(frame.clone()).await;
        assert!(len < 1000, "{what}: {len} bytes answered");
    }
    let all: Vec<_> = frames
        .iter()
        .map(|(_, f)| tokio::spawn(send(f.clone())))
        .collect();
    for a in all {
        a.await.unwrap();
    }
    drop(frames);

    // Sixty clients declare 100 MiB frames and send 16 MiB of each.
    let mut partial = Vec::new();
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(&(100i32 << 20).to_be_bytes()).await.unwrap();
        partial.push(s);
    }
    let chunk = vec![0u8; 1 << 20];
    let mut writes = Vec::new();
    for mut s in partial {
        let chunk = chunk.clone();
        writes.push(tokio::spawn(async move {
            for _ in 0..16 {
                // The broker reads one frame's body at a time: the others
                // wait in TCP until the budget frees (or this test ends).
                let w = tokio::time::timeout(Duration::from_secs(2), s.write_all(&chunk)).await;
                if !matches!(w, Ok(Ok(()))) {
                    break;
                }
            }
            s
        }));
    }
    let mut partial = Vec::new();
    for w in writes {
        partial.push(w.await.unwrap());
    }
    // A flood of a thousand connections sending garbage.
    for _ in 0..1000 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut garbage = 12i32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 12]);
        let _ = s.write_all(&garbage).await;
    }
    // Still serving.
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        )
        .await
        .unwrap();
    assert_eq!(r.topics.len(), 1);
    let peak = peak_rss(pid);
    drop(partial);
    println!(
        "tierlog serve peak RSS (VmHWM): {} MiB before the campaign, {} MiB after it",
        before >> 20,
        peak >> 20
    );
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
    server.kill();
}

/// A Produce v9 of one batch to partition 0 of `topic` with `acks`.
fn produce_request(topic: &str, acks: i16) -> ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut builder = tierlog::format::BatchBuilder::new();
    builder.push(tierlog::format::Record::new(
        None,
        Some(b"v".to_vec()),
        1_700_000_000_000,
    ));
    let batch = builder.build().unwrap();
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(tname(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.into()))])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acks_append_nothing_and_a_failed_acks_0_produce_closes_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let end = || broker.engine.offsets("t", 0).unwrap().log_end_offset;

    for acks in [2, -2, 5] {
        let (r, _): (ProduceResponse, _) = raw_call(
            &broker.addr,
            ApiKey::Produce,
            9,
            "acks",
            &produce_request("t", acks),
        )
        .await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 21,
            "INVALID_REQUIRED_ACKS for acks={acks}"
        );
    }
    assert_eq!(end(), 0, "nothing appended");

    // acks=0 that works: no answer, the connection stays.
    let mut s = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    s.write_all(&frame(
        ApiKey::Produce,
        9,
        "acks0",
        &produce_request("t", 0),
    ))
    .await
    .unwrap();
    served(&mut s).await;
    assert_eq!(end(), 1);
    // acks=0 that fails (unknown topic): closed, so the client refreshes
    // its metadata (Kafka's behaviour).
    s.write_all(&frame(
        ApiKey::Produce,
        9,
        "acks0",
        &produce_request("nope", 0),
    ))
    .await
    .unwrap();
    closed_by_broker(&mut s).await;
    // The broker serves on.
    let mut other = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    served(&mut other).await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_ip_overrides_raise_one_address_only() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.max_connections_per_ip = 1;
        c.max_connections_per_ip_overrides = "127.0.0.5:3".into();
    });
    let addr = broker.addr.clone();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.5", &addr).await;
        served(&mut s).await;
        held.push(s);
    }
    let mut fourth = connect_from("127.0.0.5", &addr).await;
    closed_by_broker(&mut fourth).await;
    let mut s = connect_from("127.0.0.6", &addr).await;
    served(&mut s).await;
    let mut second = connect_from("127.0.0.6", &addr).await;
    closed_by_broker(&mut second).await;
    for s in &mut held {
        served(s).await;
    }
    broker.stop();
}
