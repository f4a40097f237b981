//! ACL authorization against a real `tierlog serve` process with
//! `allow.everyone.if.no.acl.found = false` and `super.users = User:admin`:
//! users made with `tierlog user` (the loopback bootstrap), ACLs made with
//! `tierlog acl` as the super user over SASL_PLAINTEXT, and librdkafka
//! producers and consumers authenticated as alice and bob (SCRAM-SHA-512)
//! seeing what Kafka's authorizer would let them: produce, consume, commit,
//! Metadata, prefixed and DENY bindings, the super user, a restart. Also
//! CreateAcls / DescribeAcls / DeleteAcls on the wire, and the default
//! (open) broker unchanged.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tierlog::client::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");
const PASSWORD: &str = "acl-test-password";

/// `tierlog serve` with a PLAINTEXT and a SASL_PLAINTEXT listener.
struct Broker {
    child: Child,
    listeners: HashMap<String, String>,
    data: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn start(data: &Path) -> Broker {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--metrics-listen", "off"])
            .args(["--listener", "PLAINTEXT://127.0.0.1:0"])
            .args(["--listener", "SASL_PLAINTEXT://127.0.0.1:0"])
            .args(["--allow-everyone-if-no-acl-found", "false"])
            .args(["--super-users", "User:admin"])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let field = |line: &str, name: &str| {
            let at = line.find(name).unwrap() + name.len();
            line[at..].split_whitespace().next().unwrap().to_string()
        };
        let mut listeners = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while listeners.len() < 2 {
            assert!(Instant::now() < deadline, "serve did not start");
            let line = lines.next().expect("serve logs").unwrap();
            if line.contains("Kafka listener ready") {
                listeners.insert(field(&line, "listener="), field(&line, " listen="));
            }
        }
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Broker {
            child,
            listeners,
            data: data.to_path_buf(),
        }
    }

    fn restart(mut self) -> Broker {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Broker::start(&self.data.clone())
    }

    fn plaintext(&self) -> &str {
        &self.listeners["PLAINTEXT"]
    }

    fn sasl(&self) -> &str {
        &self.listeners["SASL_PLAINTEXT"]
    }

    /// `tierlog user add NAME` over the PLAINTEXT listener.
    fn add_user(&self, name: &str) {
        let o = run(
            &[
                "user",
                "add",
                name,
                "--password-stdin",
                "--bootstrap",
                self.plaintext(),
            ],
            Some(&format!("{PASSWORD}\n")),
            &[],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// `tierlog acl ARGS` as the super user over SASL_PLAINTEXT.
    fn acl_as_admin(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--bootstrap", self.sasl(), "--sasl-username", "admin"]);
        let o = run_acl(&all, &[("TIERLOG_SASL_PASSWORD", PASSWORD)]);
        assert!(
            o.status.success(),
            "tierlog acl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn client(&self, user: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.sasl())
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", user)
            .set("sasl.password", PASSWORD)
            .set("message.timeout.ms", "10000");
        c
    }
}

fn run(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes());
    child.wait_with_output().unwrap()
}

fn run_acl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["acl"];
    all.extend_from_slice(args);
    run(&all, None, env)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Produce one record as `config`'s user: Ok or the broker's error code.
fn produce(config: &ClientConfig, topic: &str, value: &str) -> Result<(), RDKafkaErrorCode> {
    let producer: FutureProducer = config.create().unwrap();
    let sent = block_on(producer.send(
        FutureRecord::<(), _>::to(topic).payload(value),
        Duration::from_secs(10),
    ));
    match sent {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => panic!("unexpected produce error {e}"),
    }
}

/// Consume `topic` in `group` as `config`'s user until `n` records or an
/// error: the values read, or the first error code.
fn consume(
    config: &ClientConfig,
    group: &str,
    topic: &str,
    n: usize,
) -> Result<Vec<String>, RDKafkaErrorCode> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "neither {n} records nor an error from {topic} in {group}: {got:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap()),
            Some(Err(KafkaError::MessageConsumption(code)))
            | Some(Err(KafkaError::GroupListFetch(code)))
            | Some(Err(KafkaError::ConsumerCommit(code))) => return Err(code),
            Some(Err(e)) => match e.rdkafka_error_code() {
                Some(code) => return Err(code),
                None => panic!("consume error {e}"),
            },
            None => {}
        }
    }
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .map_err(|e| e.rdkafka_error_code().unwrap())?;
    Ok(got)
}

/// Topic names Metadata shows `config`'s user.
fn topics_seen(config: &ClientConfig) -> Vec<String> {
    let consumer: BaseConsumer = config.create().unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
    names.sort();
    names
}

#[test]
fn acls_decide_who_produces_consumes_and_sees_topics_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    // No ACL yet: users are made over loopback PLAINTEXT (the bootstrap),
    // although allow.everyone.if.no.acl.found is false.
    for user in ["admin", "alice", "bob"] {
        broker.add_user(user);
    }
    let admin = broker.client("admin");
    let alice = broker.client("alice");
    let bob = broker.client("bob");
    // The super user creates topics without any ACL.
    let client: AdminClient<DefaultClientContext> = admin.create().unwrap();
    let topics: Vec<NewTopic> = ["orders", "logs-app", "logs-secret", "secret"]
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    for r in block_on(client.create_topics(&topics, &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
    // Anonymous PLAINTEXT clients are no one now: the CLI needs the super
    // user once an ACL may exist.
    let o = run_acl(&["list", "--bootstrap", broker.plaintext()], &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ClusterAuthorizationFailed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    broker.acl_as_admin(&[
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "Write",
        "--operation",
        "Read",
        "--topic",
        "orders",
    ]);
    broker.acl_as_admin(&[
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "Read",
        "--group",
        "alice-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    broker.acl_as_admin(&[
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "All",
        "--topic",
        "logs-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    broker.acl_as_admin(&[
        "add",
        "--principal",
        "User:*",
        "--operation",
        "Read",
        "--topic",
        "logs-secret",
        "--deny",
    ]);

    // Write on orders: alice produces, bob is refused.
    produce(&alice, "orders", "a1").unwrap();
    produce(&alice, "orders", "a2").unwrap();
    assert_eq!(
        produce(&bob, "orders", "b1"),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // Read on the topic and the group: alice consumes and commits.
    assert_eq!(
        consume(&alice, "alice-billing", "orders", 2).unwrap(),
        vec!["a1", "a2"]
    );
    // Read on the topic but not on this group.
    assert_eq!(
        consume(&alice, "other-group", "orders", 1),
        Err(RDKafkaErrorCode::GroupAuthorizationFailed)
    );
    // The prefixed ACL grants its prefix and only it.
    produce(&alice, "logs-app", "l1").unwrap();
    assert_eq!(
        consume(&alice, "alice-logs", "logs-app", 1).unwrap(),
        vec!["l1"]
    );
    assert_eq!(
        produce(&alice, "secret", "s1"),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // DENY wins: ALL on logs-* allows writing logs-secret, not reading it.
    produce(&alice, "logs-secret", "x").unwrap();
    assert_eq!(
        consume(&alice, "alice-secret", "logs-secret", 1),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // Metadata lists what each may Describe.
    assert_eq!(
        topics_seen(&alice),
        vec!["logs-app", "logs-secret", "orders"]
    );
    assert_eq!(topics_seen(&bob), Vec::<String>::new());
    assert_eq!(
        topics_seen(&admin),
        vec!["logs-app", "logs-secret", "orders", "secret"]
    );
    // The super user passes everywhere.
    produce(&admin, "secret", "s").unwrap();
    assert_eq!(consume(&admin, "any", "secret", 1).unwrap(), vec!["s"]);
    // bob may not manage ACLs or users.
    let o = run_acl(
        &[
            "add",
            "--principal",
            "User:bob",
            "--operation",
            "All",
            "--cluster",
            "--bootstrap",
            broker.sasl(),
            "--sasl-username",
            "bob",
        ],
        &[("TIERLOG_SASL_PASSWORD", PASSWORD)],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("ClusterAuthorizationFailed"));
    // Users: the loopback PLAINTEXT bootstrap ended with the first ACL;
    // now the super user adds them over SASL.
    let o = run(
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--bootstrap",
            broker.plaintext(),
        ],
        Some("carol-password\n"),
        &[],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ClusterAuthorizationFailed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--bootstrap",
            broker.sasl(),
            "--sasl-username",
            "admin",
        ],
        Some("carol-password\n"),
        &[("TIERLOG_SASL_PASSWORD", PASSWORD)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // After a restart the same decisions come from the catalog.
    let broker = broker.restart();
    let alice = broker.client("alice");
    let bob = broker.client("bob");
    assert_eq!(
        produce(&bob, "orders", "b2"),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    produce(&alice, "orders", "a3").unwrap();
    assert_eq!(
        consume(&alice, "alice-billing", "orders", 1).unwrap(),
        vec!["a3"],
        "resumes after the committed offset"
    );
    let listed = broker.acl_as_admin(&["list", "--principal", "User:alice"]);
    assert_eq!(listed.lines().count(), 4, "{listed}");

    // Removing alice's Write takes effect at once.
    let removed = broker.acl_as_admin(&[
        "remove",
        "--principal",
        "User:alice",
        "--topic",
        "orders",
        "--operation",
        "Write",
    ]);
    assert!(
        removed.contains("removed\tUser:alice\tALLOW\tWRITE\tTOPIC\tLITERAL\torders"),
        "{removed}"
    );
    assert_eq!(
        produce(&alice, "orders", "a4"),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}

fn creation(principal: &str, op: i8, rt: i8, name: &str, pattern: i8, perm: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rt)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_string(principal.to_string()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(op)
        .with_permission_type(perm)
}

/// The three ACL APIs on the wire against the in-process broker (open by
/// default): validation errors per creation, MATCH and ANY filters, and
/// DeleteAcls returning what it removed.
#[test]
fn create_describe_and_delete_acls_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::broker::TestBroker::start(dir.path());
    block_on(async {
        let mut c = Connection::connect(&broker.addr).await.unwrap();
        const TOPIC: i8 = 2;
        const GROUP: i8 = 3;
        const LITERAL: i8 = 3;
        const PREFIXED: i8 = 4;
        const READ: i8 = 3;
        const WRITE: i8 = 4;
        const ALLOW: i8 = 3;
        const DENY: i8 = 2;
        let create = CreateAclsRequest::default().with_creations(vec![
            creation("User:alice", READ, TOPIC, "orders", LITERAL, ALLOW),
            creation("User:alice", WRITE, TOPIC, "ord", PREFIXED, ALLOW),
            creation("User:*", READ, TOPIC, "*", LITERAL, DENY),
            creation("User:bob", READ, GROUP, "g", LITERAL, ALLOW),
            // Refused one by one: no principal type, a cluster op on a topic.
            creation("alice", READ, TOPIC, "t", LITERAL, ALLOW),
            creation("User:alice", 9, TOPIC, "t", LITERAL, ALLOW),
        ]);
        let r: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &create).await.unwrap();
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 0, 0, 0, 42, 42], "{r:?}");

        let describe = |rt: i8, name: Option<&str>, pattern: i8| {
            DescribeAclsRequest::default()
                .with_resource_type_filter(rt)
                .with_resource_name_filter(name.map(|n| StrBytes::from_string(n.to_string())))
                .with_pattern_type_filter(pattern)
                // kafka-protocol's defaults are "" (not null) for these.
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1)
        };
        let count =
            |r: &DescribeAclsResponse| r.resources.iter().map(|x| x.acls.len()).sum::<usize>();
        let all: DescribeAclsResponse = c
            .call(ApiKey::DescribeAcls, 3, &describe(1, None, 1))
            .await
            .unwrap();
        assert_eq!(count(&all), 4);
        // MATCH: what applies to topic "orders": the literal, the prefix
        // and the wildcard.
        let matched: DescribeAclsResponse = c
            .call(ApiKey::DescribeAcls, 3, &describe(TOPIC, Some("orders"), 2))
            .await
            .unwrap();
        assert_eq!(count(&matched), 3, "{matched:?}");
        // LITERAL "orders" only.
        let literal: DescribeAclsResponse = c
            .call(
                ApiKey::DescribeAcls,
                3,
                &describe(TOPIC, Some("orders"), LITERAL),
            )
            .await
            .unwrap();
        assert_eq!(count(&literal), 1);

        let delete = DeleteAclsRequest::default().with_filters(vec![
            DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_resource_name_filter(None)
                .with_principal_filter(Some(StrBytes::from_static_str("User:alice")))
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1),
            DeleteAclsFilter::default()
                .with_resource_type_filter(GROUP)
                .with_resource_name_filter(None)
                .with_pattern_type_filter(1)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(WRITE)
                .with_permission_type(1),
        ]);
        let r: DeleteAclsResponse = c.call(ApiKey::DeleteAcls, 3, &delete).await.unwrap();
        assert_eq!(r.filter_results[0].matching_acls.len(), 2);
        assert_eq!(r.filter_results[1].matching_acls.len(), 0);
        let left: DescribeAclsResponse = c
            .call(ApiKey::DescribeAcls, 3, &describe(1, None, 1))
            .await
            .unwrap();
        assert_eq!(count(&left), 2);
        // The engine's copy follows the catalog.
        assert_eq!(broker.engine.acls().len(), 2);
    });
}

/// With the default settings (no ACLs, allow.everyone.if.no.acl.found
/// true) nothing changes: an anonymous PLAINTEXT client produces and
/// consumes, sees every operation authorized, and `tierlog acl` round
/// trips over loopback PLAINTEXT.
#[test]
fn the_default_broker_stays_open_and_the_cli_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::broker::TestBroker::start(dir.path());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.addr)
        .set("message.timeout.ms", "10000");
    produce(&config, "open", "v").unwrap();
    assert_eq!(consume(&config, "g", "open", 1).unwrap(), vec!["v"]);
    block_on(async {
        let mut c = Connection::connect(&broker.addr).await.unwrap();
        let r: DescribeClusterResponse = c
            .call(
                ApiKey::DescribeCluster,
                0,
                &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            )
            .await
            .unwrap();
        let every = [5, 7, 8, 9, 10, 11, 12].iter().fold(0, |b, op| b | 1 << op);
        assert_eq!(r.cluster_authorized_operations, every);
    });

    let acl = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--bootstrap", &broker.addr]);
        run_acl(&all, &[])
    };
    let o = acl(&[
        "add",
        "--principal",
        "User:carol",
        "--operation",
        "describe-configs",
        "--topic",
        "pay",
        "--resource-pattern-type",
        "prefixed",
        "--host",
        "10.0.0.9",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8(acl(&["list"]).stdout).unwrap();
    assert_eq!(
        listed.trim(),
        "User:carol\tALLOW\tDESCRIBE_CONFIGS\tTOPIC\tPREFIXED\tpay\thost=10.0.0.9"
    );
    // MATCH finds it for a topic under the prefix.
    let matched = String::from_utf8(
        acl(&[
            "list",
            "--topic",
            "payments",
            "--resource-pattern-type",
            "match",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(matched.lines().count(), 1, "{matched}");
    // Clear refusals.
    let o = acl(&[
        "add",
        "--principal",
        "User:carol",
        "--operation",
        "Reed",
        "--topic",
        "t",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown operation 'Reed'"));
    let o = acl(&["remove"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("remove does not remove every ACL"));
    let o = acl(&["remove", "--principal", "User:carol"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("removed\tUser:carol"));
    assert_eq!(String::from_utf8(acl(&["list"]).stdout).unwrap(), "");
}

/// A connection to the broker's SASL_PLAINTEXT listener logged in as `user`.
async fn login(broker: &Broker, user: &str) -> Connection {
    let mut c = Connection::connect(broker.sasl()).await.unwrap();
    c.authenticate("SCRAM-SHA-512", user, PASSWORD)
        .await
        .unwrap();
    c
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// On a closed broker a principal without ACLs gets Kafka's refusal from
/// every API it tries (on the wire, one request each), while the super
/// user is served; a group ACL then lets it see that group and only the
/// committed offsets of topics it may describe.
#[test]
fn every_api_refuses_a_principal_without_acls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    broker.add_user("admin");
    broker.add_user("bob");
    block_on(async {
        let mut admin = login(&broker, "admin").await;
        let create = CreateTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(topic_name("t"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
        let r: CreateTopicsResponse = admin.call(ApiKey::CreateTopics, 7, &create).await.unwrap();
        assert_eq!(r.topics[0].error_code, 0);
        let commit = OffsetCommitRequest::default()
            .with_group_id(group_id("g"))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(0),
                    ]),
            ]);
        let r: OffsetCommitResponse = admin.call(ApiKey::OffsetCommit, 8, &commit).await.unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);

        let mut bob = login(&broker, "bob").await;
        // Metadata: a named topic refused, the full list empty.
        let md = |topics: Option<Vec<&str>>| {
            MetadataRequest::default()
                .with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|t| {
                            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                                .with_name(Some(topic_name(t)))
                        })
                        .collect()
                }))
                .with_allow_auto_topic_creation(true)
        };
        let r: MetadataResponse = bob
            .call(ApiKey::Metadata, 12, &md(Some(vec!["t"])))
            .await
            .unwrap();
        assert_eq!(r.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
        let r: MetadataResponse = bob.call(ApiKey::Metadata, 12, &md(None)).await.unwrap();
        assert!(r.topics.is_empty());
        let r: MetadataResponse = admin.call(ApiKey::Metadata, 12, &md(None)).await.unwrap();
        assert_eq!(r.topics.len(), 1);
        // Authorized operations come from the ACLs: all for the super
        // user, none for bob.
        let asked = md(Some(vec!["t"])).with_include_topic_authorized_operations(true);
        let r: MetadataResponse = admin.call(ApiKey::Metadata, 12, &asked).await.unwrap();
        let topic_ops = [3, 4, 5, 6, 7, 8, 10, 11]
            .iter()
            .fold(0, |b, op| b | 1 << op);
        assert_eq!(r.topics[0].topic_authorized_operations, topic_ops);
        let cluster =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let r: DescribeClusterResponse = bob
            .call(ApiKey::DescribeCluster, 0, &cluster)
            .await
            .unwrap();
        assert_eq!(r.cluster_authorized_operations, 0);
        let r: DescribeClusterResponse = admin
            .call(ApiKey::DescribeCluster, 0, &cluster)
            .await
            .unwrap();
        let cluster_ops = [5, 7, 8, 9, 10, 11, 12].iter().fold(0, |b, op| b | 1 << op);
        assert_eq!(r.cluster_authorized_operations, cluster_ops);
        // Auto-creation needs Create: bob's unknown topic is refused too.
        let r: MetadataResponse = bob
            .call(ApiKey::Metadata, 12, &md(Some(vec!["new"])))
            .await
            .unwrap();
        assert_eq!(r.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);

        let produce = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name("t"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(common::batch(0, 1, 10, 0).into())),
                ])]);
        let r: ProduceResponse = bob.call(ApiKey::Produce, 9, &produce).await.unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let r: ProduceResponse = admin.call(ApiKey::Produce, 9, &produce).await.unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

        let fetch = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let r: FetchResponse = bob.call(ApiKey::Fetch, 12, &fetch).await.unwrap();
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        assert!(r.responses[0].partitions[0]
            .records
            .as_ref()
            .is_none_or(|b| b.is_empty()));

        let list = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]);
        let r: ListOffsetsResponse = bob.call(ApiKey::ListOffsets, 7, &list).await.unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let epochs = OffsetForLeaderEpochRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ]);
        let r: OffsetForLeaderEpochResponse = bob
            .call(ApiKey::OffsetForLeaderEpoch, 4, &epochs)
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let r: OffsetForLeaderEpochResponse = admin
            .call(ApiKey::OffsetForLeaderEpoch, 4, &epochs)
            .await
            .unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, 0);

        // Transactions: Write (Describe to look) on the transactional id.
        let txn_refused = kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code();
        let init = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = bob.call(ApiKey::InitProducerId, 4, &init).await.unwrap();
        assert_eq!(r.error_code, txn_refused);
        let r: InitProducerIdResponse = admin.call(ApiKey::InitProducerId, 4, &init).await.unwrap();
        assert_eq!(r.error_code, 0, "the super user may");
        let (pid, epoch) = (r.producer_id, r.producer_epoch);
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_v3_and_below_producer_id(pid)
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![0]),
            ]);
        let r: AddPartitionsToTxnResponse =
            bob.call(ApiKey::AddPartitionsToTxn, 3, &add).await.unwrap();
        assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            txn_refused
        );
        let end = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(false);
        let r: EndTxnResponse = bob.call(ApiKey::EndTxn, 3, &end).await.unwrap();
        assert_eq!(r.error_code, txn_refused);
        let describe = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx"))]);
        let r: DescribeTransactionsResponse = bob
            .call(ApiKey::DescribeTransactions, 0, &describe)
            .await
            .unwrap();
        assert_eq!(r.transaction_states[0].error_code, txn_refused);
        let r: DescribeTransactionsResponse = admin
            .call(ApiKey::DescribeTransactions, 0, &describe)
            .await
            .unwrap();
        assert_eq!(r.transaction_states[0].error_code, 0);
        let list_txns = ListTransactionsRequest::default();
        let r: ListTransactionsResponse = bob
            .call(ApiKey::ListTransactions, 1, &list_txns)
            .await
            .unwrap();
        assert!(r.transaction_states.is_empty(), "bob may describe no id");
        let r: ListTransactionsResponse = admin
            .call(ApiKey::ListTransactions, 1, &list_txns)
            .await
            .unwrap();
        assert_eq!(r.transaction_states.len(), 1);

        let r: CreateTopicsResponse = bob
            .call(
                ApiKey::CreateTopics,
                7,
                &CreateTopicsRequest::default().with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(topic_name("bobs"))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(r.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
        let r: DeleteTopicsResponse = bob
            .call(
                ApiKey::DeleteTopics,
                5,
                &DeleteTopicsRequest::default().with_topic_names(vec![topic_name("t")]),
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);

        let describe = |rt: i8, name: &str| {
            DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(StrBytes::from_string(name.to_string()))
                    .with_configuration_keys(None),
            ])
        };
        let r: DescribeConfigsResponse = bob
            .call(ApiKey::DescribeConfigs, 4, &describe(2, "t"))
            .await
            .unwrap();
        assert_eq!(r.results[0].error_code, TOPIC_AUTHORIZATION_FAILED);
        let r: DescribeConfigsResponse = bob
            .call(ApiKey::DescribeConfigs, 4, &describe(4, "0"))
            .await
            .unwrap();
        assert_eq!(r.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);

        let find = |key_type: i8, key: &str| {
            FindCoordinatorRequest::default()
                .with_key_type(key_type)
                .with_key(StrBytes::from_string(key.to_string()))
        };
        let r: FindCoordinatorResponse = bob
            .call(ApiKey::FindCoordinator, 3, &find(0, "g"))
            .await
            .unwrap();
        assert_eq!(r.error_code, GROUP_AUTHORIZATION_FAILED);
        let r: FindCoordinatorResponse = bob
            .call(ApiKey::FindCoordinator, 3, &find(1, "tx"))
            .await
            .unwrap();
        assert_eq!(r.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        let r: FindCoordinatorResponse = admin
            .call(ApiKey::FindCoordinator, 3, &find(0, "g"))
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);

        let join = JoinGroupRequest::default()
            .with_group_id(group_id("g"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"));
        let r: JoinGroupResponse = bob.call(ApiKey::JoinGroup, 5, &join).await.unwrap();
        assert_eq!(r.error_code, GROUP_AUTHORIZATION_FAILED);
        let r: OffsetCommitResponse = bob.call(ApiKey::OffsetCommit, 8, &commit).await.unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            GROUP_AUTHORIZATION_FAILED
        );
        let fetch_offsets = OffsetFetchRequest::default()
            .with_group_id(group_id("g"))
            .with_topics(None);
        let r: OffsetFetchResponse = bob
            .call(ApiKey::OffsetFetch, 7, &fetch_offsets)
            .await
            .unwrap();
        assert_eq!(r.error_code, GROUP_AUTHORIZATION_FAILED);
        let describe_groups = DescribeGroupsRequest::default().with_groups(vec![group_id("g")]);
        let r: DescribeGroupsResponse = bob
            .call(ApiKey::DescribeGroups, 5, &describe_groups)
            .await
            .unwrap();
        assert_eq!(r.groups[0].error_code, GROUP_AUTHORIZATION_FAILED);
        let r: DeleteGroupsResponse = bob
            .call(
                ApiKey::DeleteGroups,
                2,
                &DeleteGroupsRequest::default().with_groups_names(vec![group_id("g")]),
            )
            .await
            .unwrap();
        assert_eq!(r.results[0].error_code, GROUP_AUTHORIZATION_FAILED);
        let r: ListGroupsResponse = bob
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .await
            .unwrap();
        assert!(r.groups.is_empty());
        let r: ListGroupsResponse = admin
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .await
            .unwrap();
        assert_eq!(r.groups.len(), 1);

        let r: OffsetDeleteResponse = bob
            .call(
                ApiKey::OffsetDelete,
                0,
                &OffsetDeleteRequest::default()
                    .with_group_id(group_id("g"))
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(topic_name("t"))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(0),
                            ]),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, GROUP_AUTHORIZATION_FAILED);
        let r: CreatePartitionsResponse = bob
            .call(
                ApiKey::CreatePartitions,
                3,
                &CreatePartitionsRequest::default().with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic_name("t"))
                        .with_count(2)
                        .with_assignments(None),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(r.results[0].error_code, TOPIC_AUTHORIZATION_FAILED);
        let r: DeleteRecordsResponse = bob
            .call(
                ApiKey::DeleteRecords,
                2,
                &DeleteRecordsRequest::default().with_topics(vec![
                    delete_records_request::DeleteRecordsTopic::default()
                        .with_name(topic_name("t"))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(-1),
                        ]),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let r: DescribeProducersResponse = bob
            .call(
                ApiKey::DescribeProducers,
                0,
                &DescribeProducersRequest::default().with_topics(vec![
                    describe_producers_request::TopicRequest::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0]),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let r: IncrementalAlterConfigsResponse = bob
            .call(
                ApiKey::IncrementalAlterConfigs,
                1,
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t"))
                        .with_configs(vec![
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_config_operation(0)
                                .with_value(Some(StrBytes::from_static_str("1000"))),
                        ]),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);
        // The super user's records are still there: nothing bob asked did
        // anything.
        let r: ListOffsetsResponse = admin.call(ApiKey::ListOffsets, 7, &list).await.unwrap();
        assert_eq!(r.topics[0].partitions[0].offset, 1);

        let r: InitProducerIdResponse = bob
            .call(
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
        let r: DescribeLogDirsResponse = bob
            .call(
                ApiKey::DescribeLogDirs,
                4,
                &DescribeLogDirsRequest::default().with_topics(None),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
        let r: DescribeUserScramCredentialsResponse = bob
            .call(
                ApiKey::DescribeUserScramCredentials,
                0,
                &DescribeUserScramCredentialsRequest::default().with_users(None),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED);
        let r: CreateAclsResponse = bob
            .call(
                ApiKey::CreateAcls,
                3,
                &CreateAclsRequest::default().with_creations(vec![creation(
                    "User:bob",
                    2,
                    4,
                    "kafka-cluster",
                    3,
                    3,
                )]),
            )
            .await
            .unwrap();
        assert_eq!(r.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);

        // Describe on group g: bob sees it, and its offsets without topic t.
        let grant = CreateAclsRequest::default()
            .with_creations(vec![creation("User:bob", 8, 3, "g", 3, 3)]);
        let r: CreateAclsResponse = admin.call(ApiKey::CreateAcls, 3, &grant).await.unwrap();
        assert_eq!(r.results[0].error_code, 0);
        let r: ListGroupsResponse = bob
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .await
            .unwrap();
        assert_eq!(r.groups.len(), 1);
        let r: OffsetFetchResponse = bob
            .call(ApiKey::OffsetFetch, 7, &fetch_offsets)
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        assert!(r.topics.is_empty(), "t is not describable by bob: {r:?}");
        let r: OffsetFetchResponse = admin
            .call(ApiKey::OffsetFetch, 7, &fetch_offsets)
            .await
            .unwrap();
        assert_eq!(r.topics.len(), 1);
        let r: DescribeGroupsResponse = bob
            .call(ApiKey::DescribeGroups, 5, &describe_groups)
            .await
            .unwrap();
        assert_eq!(r.groups[0].error_code, 0);
    });
}
