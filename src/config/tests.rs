//! Unit tests of broker and topic configs.

use super::*;

#[test]
fn remote_read_settings_take_kafka_style_names() {
    let c = BrokerConfig::from_toml(
        "remote.fetch.chunk.bytes = 1048576\n\"remote.cache.bytes\" = 4194304\nremote_fetch_prefetch_chunks = 3\nremote.fetch.max.wait.ms = 100\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.remote_fetch_chunk_bytes, 1 << 20);
    assert_eq!(c.remote_cache_bytes, 4 << 20);
    assert_eq!(c.remote_fetch_prefetch_chunks, 3);
    assert_eq!(c.remote_fetch_max_wait_ms, 100);
    assert_eq!(c.producer_id_expiration_ms, 86_400_000);
    let c = BrokerConfig::from_toml("producer.id.expiration.ms = 60000\n", "t.toml").unwrap();
    assert_eq!(c.producer_id_expiration_ms, 60_000);
    assert!(BrokerConfig::from_toml("producer_id_expiration_ms = 0\n", "t.toml").is_err());
    let e = BrokerConfig::from_toml("remote.cache.bytes = 10\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("remote.cache.bytes 10"), "{e}");
    assert_eq!(c.remote_fetch_max_concurrent_gets, 64);
    let c = BrokerConfig::from_toml("remote.fetch.max.concurrent.gets = 8\n", "t.toml").unwrap();
    assert_eq!(c.remote_fetch_max_concurrent_gets, 8);
    let e =
        BrokerConfig::from_toml("remote.fetch.max.concurrent.gets = 0\n", "t.toml").unwrap_err();
    assert!(
        e.to_string().contains("remote.fetch.max.concurrent.gets 0"),
        "{e}"
    );
    let e = BrokerConfig::from_toml("remote.fetch.chunkbytes = 10\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("remote.fetch.chunkbytes"), "{e}");
}

#[test]
fn the_remote_thread_nice_value_defaults_to_0_and_stays_within_0_to_19() {
    assert_eq!(BrokerConfig::default().remote_thread_nice, 0);
    let c = BrokerConfig::from_toml("remote.thread.nice = 10\n", "t.toml").unwrap();
    assert_eq!(c.remote_thread_nice, 10);
    let c = BrokerConfig::from_toml("remote_thread_nice = 19\n", "t.toml").unwrap();
    assert_eq!(c.remote_thread_nice, 19);
    for bad in ["-1", "20"] {
        let e = BrokerConfig::from_toml(&format!("remote.thread.nice = {bad}\n"), "t.toml")
            .unwrap_err();
        assert!(
            e.to_string().contains(&format!("remote.thread.nice {bad}")),
            "{e}"
        );
    }
}

#[test]
fn offset_retention_settings_take_kafka_style_names_and_name_the_bad_key() {
    let c = BrokerConfig::default();
    assert_eq!(c.offsets_retention_ms(), 7 * 24 * 3_600_000);
    assert_eq!(c.offsets_retention_check_interval_ms, 600_000);
    let c = BrokerConfig::from_toml(
        "offsets.retention.minutes = 2\noffsets.retention.check.interval.ms = 500\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.offsets_retention_ms(), 120_000);
    assert_eq!(c.offsets_retention_check_interval_ms, 500);
    let c = BrokerConfig::from_toml("offsets_retention_minutes = 3\n", "t.toml").unwrap();
    assert_eq!(c.offsets_retention_ms(), 180_000);
    for (text, key) in [
        (
            "offsets.retention.minutes = 0\n",
            "offsets.retention.minutes",
        ),
        (
            "offsets_retention_minutes = -5\n",
            "offsets.retention.minutes",
        ),
        (
            "offsets.retention.check.interval.ms = 0\n",
            "offsets.retention.check.interval.ms",
        ),
    ] {
        let e = BrokerConfig::from_toml(text, "t.toml").unwrap_err();
        assert!(e.to_string().contains(key), "{text}: {e}");
    }
    // The millisecond override is internal: not a file key.
    assert!(BrokerConfig::from_toml("offsets_retention_ms_override = 5\n", "t.toml").is_err());
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    let c = TopicConfig::resolve(&BTreeMap::new(), &BTreeMap::new()).unwrap();
    assert_eq!(c.segment_bytes, 1 << 30);
    assert_eq!(c.retention_ms, 604_800_000);
    assert_eq!(c.local_retention_bytes, -2);
    assert_eq!(c, TopicConfig::default());
}

#[test]
fn errors_name_the_key_and_value() {
    let e = validate_topic_config("retention.msx", "1").unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown topic config 'retention.msx'"),
        "{e}"
    );
    let e = validate_topic_config("segment.bytes", "10").unwrap_err();
    assert!(
        e.to_string().contains("segment.bytes") && e.to_string().contains("at least 14"),
        "{e}"
    );
    let e = validate_topic_config("segment.bytes", "3000000000").unwrap_err();
    assert!(e.to_string().contains("'3000000000'"), "{e}");
    let e = validate_topic_config("remote.storage.enable", "yes").unwrap_err();
    assert!(e.to_string().contains("true or false"), "{e}");
    let e = validate_topic_config("cleanup.policy", "compact,archive").unwrap_err();
    assert!(e.to_string().contains("'archive' is not one of"), "{e}");
    let e = validate_topic_config("cleanup.policy", "compact,compact").unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = validate_topic_config("min.cleanable.dirty.ratio", "1.5").unwrap_err();
    assert!(e.to_string().contains("between 0 and 1"), "{e}");
    let e = validate_topic_config("message.timestamp.type", "Now").unwrap_err();
    assert!(e.to_string().contains("CreateTime, LogAppendTime"), "{e}");
}

#[test]
fn local_retention_cannot_exceed_total() {
    let e = TopicConfig::resolve(
        &map(&[("retention.ms", "1000"), ("local.retention.ms", "2000")]),
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("local.retention.ms"), "{e}");
    let ok = TopicConfig::resolve(
        &map(&[("retention.ms", "-1"), ("local.retention.ms", "2000")]),
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(ok.effective_local_retention_ms(), 2000);
    let same = TopicConfig::resolve(&map(&[("retention.bytes", "500")]), &BTreeMap::new()).unwrap();
    assert_eq!(same.effective_local_retention_bytes(), 500);
}

#[test]
fn overrides_beat_broker_defaults() {
    let c = TopicConfig::resolve(
        &map(&[("segment.bytes", "2048")]),
        &map(&[("segment.bytes", "4096"), ("segment.ms", "10")]),
    )
    .unwrap();
    assert_eq!(c.segment_bytes, 2048);
    assert_eq!(c.segment_ms, 10);
}

#[test]
fn topic_names_follow_kafka_rules() {
    for ok in ["a", "orders.v1", "A_b-C.9", &"x".repeat(249)] {
        validate_topic_name(ok).unwrap();
    }
    for bad in ["", ".", "..", "a b", "é", "a/b", &"x".repeat(250)] {
        assert!(
            validate_topic_name(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn broker_config_from_toml() {
    let c = BrokerConfig::from_toml(
        "data_dir = \"/tmp/x\"\nlisten = \"0.0.0.0:9093\"\nadvertised_listener = \"kafka.example:9093\"\n[topic_defaults]\n\"segment.bytes\" = \"1048576\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(
        c.topic_defaults.get("segment.bytes").map(String::as_str),
        Some("1048576")
    );
    let e = BrokerConfig::from_toml("data_dirx = 1\n", "t.toml").unwrap_err();
    assert!(
        e.to_string().contains("t.toml") && e.to_string().contains("data_dirx"),
        "{e}"
    );
    let e = BrokerConfig::from_toml("[topic_defaults]\n\"segment.bytes\" = \"1\"\n", "t.toml")
        .unwrap_err();
    assert!(e.to_string().contains("segment.bytes"), "{e}");
}

#[test]
fn queued_max_request_bytes_is_finite_by_default_and_must_hold_the_largest_request() {
    let c = BrokerConfig::default();
    assert_eq!(c.queued_max_request_bytes, 256 << 20);
    c.validate().unwrap();
    let c = BrokerConfig::from_toml(
        "\"queued.max.request.bytes\" = 16777216\nsocket_request_max_bytes = 1048576\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.queued_max_request_bytes, 16 << 20);
    // Three quarters of 100 MiB do not hold a 100 MiB request.
    let e =
        BrokerConfig::from_toml("queued_max_request_bytes = 104857600\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("queued.max.request.bytes"), "{e}");
    assert!(e.to_string().contains("at least 139810136"), "{e}");
    BrokerConfig::from_toml("queued_max_request_bytes = 139810136\n", "t.toml").unwrap();
}

#[test]
fn cleanup_policies_by_kafka_names() {
    let resolve = |pairs: &[(&str, &str)], defaults: &[(&str, &str)]| {
        let m = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        TopicConfig::resolve(&m(pairs), &m(defaults))
    };
    for (value, delete, compact) in [
        ("delete", true, false),
        ("compact", false, true),
        ("compact,delete", true, true),
        ("delete, compact", true, true),
    ] {
        let c = resolve(&[("cleanup.policy", value)], &[]).unwrap();
        assert_eq!(
            (c.cleanup_policy.delete, c.cleanup_policy.compact),
            (delete, compact),
            "{value}"
        );
    }
    // Compact only: no time or size retention, whatever retention.ms says.
    let c = resolve(
        &[("cleanup.policy", "compact"), ("retention.ms", "1000")],
        &[],
    )
    .unwrap();
    assert_eq!((c.retention_ms, c.retention_bytes), (-1, -1));
    let c = resolve(
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "1000"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.retention_ms, 1000);
    assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
    assert_eq!(c.delete_retention_ms, 86_400_000);
    assert_eq!(c.max_compaction_lag_ms, i64::MAX);
    // Compacted topics are tiered too (tiered compaction).
    let c = resolve(
        &[
            ("cleanup.policy", "compact"),
            ("remote.storage.enable", "true"),
        ],
        &[],
    )
    .unwrap();
    assert!(c.remote_storage_enable && c.cleanup_policy.compact);
}

#[test]
fn connection_limits_and_timeouts_have_kafka_names_and_bounded_defaults() {
    let c = BrokerConfig::default();
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.max_connections_per_ip, 2_147_483_647);
    assert_eq!(c.connections_max_idle_ms, 600_000);
    assert_eq!(c.request_read_timeout_ms, 60_000);
    let c = BrokerConfig::from_toml(
        "\"max.connections\" = 50\n\"max.connections.per.ip\" = 5\n\
         \"connections.max.idle.ms\" = 1000\nrequest_read_timeout_ms = 200\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        (
            c.max_connections,
            c.max_connections_per_ip,
            c.connections_max_idle_ms,
            c.request_read_timeout_ms
        ),
        (50, 5, 1000, 200)
    );
    let e = BrokerConfig::from_toml("max_connections = 0\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("max.connections"), "{e}");
    let e = BrokerConfig::from_toml("connections_max_idle_ms = 0\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("connections.max.idle.ms"), "{e}");
}

#[test]
fn the_metrics_endpoint_is_on_at_9644_unless_turned_off() {
    let c = BrokerConfig::from_toml("", "t.toml").unwrap();
    assert_eq!(c.metrics_address(), Some("127.0.0.1:9644"));
    for off in ["metrics_listen = \"off\"\n", "metrics_listen = \"\"\n"] {
        let c = BrokerConfig::from_toml(off, "t.toml").unwrap();
        assert_eq!(c.metrics_address(), None, "{off}");
        c.validate().unwrap();
    }
    let c = BrokerConfig::from_toml("metrics_listen = \"0.0.0.0:9100\"\n", "t.toml").unwrap();
    assert_eq!(c.metrics_address(), Some("0.0.0.0:9100"));
    let e = BrokerConfig::from_toml("metrics_listen = \"nope\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("metrics_listen 'nope'") && e.contains("off"),
        "{e}"
    );
}

#[test]
fn describe_configs_covers_every_broker_setting_once() {
    let c = BrokerConfig::default();
    let described = c.described();
    let mut names: Vec<_> = described.iter().map(|s| s.name.as_str()).collect();
    names.dedup();
    assert_eq!(names.len(), described.len(), "a name twice: {names:?}");
    // Every field of the file is described (a new setting must be added to
    // `config/described.rs`): fields besides `[topic_defaults]`, against
    // entries besides the topic defaults' synonyms and three constants.
    let fields = match serde_json::to_value(&c).unwrap() {
        serde_json::Value::Object(m) => m.len() - 1,
        other => panic!("{other}"),
    };
    let synonyms = TOPIC_CONFIGS
        .iter()
        .filter(|d| broker_synonym(d.name).is_some())
        .count();
    assert_eq!(
        described.len() - synonyms - 3,
        fields,
        "a broker setting is missing from config/described.rs"
    );
    assert!(described.iter().all(|s| s.is_default), "all default");
    let c = BrokerConfig::from_toml(
        "max_connections = 7\n[topic_defaults]\n\"segment.bytes\" = \"1048576\"\n",
        "t.toml",
    )
    .unwrap();
    let changed: Vec<_> = c
        .described()
        .into_iter()
        .filter(|s| !s.is_default)
        .map(|s| (s.name, s.value))
        .collect();
    assert_eq!(
        changed,
        [
            ("log.segment.bytes".to_string(), Some("1048576".to_string())),
            ("max.connections".to_string(), Some("7".to_string())),
        ]
    );
}

#[test]
fn a_wildcard_listener_needs_an_advertised_address() {
    for listen in ["0.0.0.0:9092", "[::]:9092"] {
        let e = BrokerConfig::from_toml(&format!("listen = \"{listen}\"\n"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wildcard") && e.contains("advertised_listener"),
            "{e}"
        );
        let ok = format!("listen = \"{listen}\"\nadvertised_listener = \"kafka.example:9092\"\n");
        BrokerConfig::from_toml(&ok, "t.toml").unwrap();
    }
}

#[test]
fn the_catalog_snapshot_interval_has_a_kafka_style_name_a_minute_default_and_minus_one_for_off() {
    assert_eq!(BrokerConfig::default().catalog_snapshot_interval_ms, 60_000);
    let c = BrokerConfig::from_toml("catalog.snapshot.interval.ms = 5000\n", "t.toml").unwrap();
    assert_eq!(c.catalog_snapshot_interval_ms, 5_000);
    let c = BrokerConfig::from_toml("catalog_snapshot_interval_ms = -1\n", "t.toml").unwrap();
    assert_eq!(c.catalog_snapshot_interval_ms, -1);
    for bad in ["0", "-2"] {
        let e =
            BrokerConfig::from_toml(&format!("catalog.snapshot.interval.ms = {bad}\n"), "t.toml")
                .unwrap_err();
        assert!(
            e.to_string().contains("catalog.snapshot.interval.ms") && e.to_string().contains(bad),
            "{e}"
        );
    }
}

#[test]
fn connection_overrides_parse_kafkas_format_and_name_a_bad_entry() {
    let c = BrokerConfig::from_toml(
        "\"max.connections.per.ip.overrides\" = \"10.0.0.1:500, [::1]:7\"\n",
        "t.toml",
    )
    .unwrap();
    let o = c.connections_per_ip_overrides().unwrap();
    assert_eq!(o[&"10.0.0.1".parse::<std::net::IpAddr>().unwrap()], 500);
    assert_eq!(o[&"::1".parse::<std::net::IpAddr>().unwrap()], 7);
    for bad in ["host.example:5", "10.0.0.1", "10.0.0.1:many"] {
        let e = BrokerConfig::from_toml(
            &format!("max_connections_per_ip_overrides = \"{bad}\"\n"),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("max.connections.per.ip.overrides") && e.contains(bad),
            "{e}"
        );
    }
}

#[test]
fn authorizer_settings_take_kafkas_names_and_refuse_a_bad_super_user() {
    let c = BrokerConfig::default();
    assert!(c.allow_everyone_if_no_acl_found, "open by default");
    assert!(c.authorizer().unwrap().super_users.is_empty());
    let c = BrokerConfig::from_toml(
        "\"allow.everyone.if.no.acl.found\" = false\n\"super.users\" = \"User:admin;User:ops\"\n",
        "t.toml",
    )
    .unwrap();
    let a = c.authorizer().unwrap();
    assert!(!a.allow_everyone_if_no_acl_found);
    assert_eq!(a.super_users, vec!["User:admin", "User:ops"]);
    let e = BrokerConfig::from_toml("super_users = \"admin\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("super.users") && e.contains("admin"), "{e}");
}
