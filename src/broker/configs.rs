//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs for topics
//! (Kafka names), and DescribeConfigs for the broker resource.
//! Broker settings are static (`tierlog.toml`, `TIERLOG_*`, flags): they
//! are described (read-only, with their source; secrets as sensitive with
//! no value), and altering them is refused with a message saying so.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{errors, Ctx};
use crate::config::{broker_synonym, DescribedSetting, TopicConfig, TOPIC_CONFIGS};
use crate::security::acl::AclOperation;
use crate::ErrorKind;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn config_type(name: &str) -> i8 {
    match name {
        "BOOLEAN" => 1,
        "STRING" => 2,
        "INT" => 3,
        "LONG" => 5,
        "DOUBLE" => 6,
        "LIST" => 7,
        "PASSWORD" => 9,
        _ => 0,
    }
}

/// The refusal for `op` (DescribeConfigs or AlterConfigs) on a resource
/// the principal may not use: on a topic TOPIC_AUTHORIZATION_FAILED, on
/// the broker (the cluster, as Kafka checks it) CLUSTER_AUTHORIZATION_FAILED.
fn refusal(auth: &Authz, op: AclOperation, resource_type: i8, name: &str) -> Option<(i16, String)> {
    let (allowed, code) = match resource_type {
        RESOURCE_TOPIC => (
            auth.topic(op, name),
            ResponseError::TopicAuthorizationFailed,
        ),
        RESOURCE_BROKER => (auth.cluster(op), ResponseError::ClusterAuthorizationFailed),
        _ => return None,
    };
    (!allowed).then(|| {
        (
            code.code(),
            format!("{} may not {} '{name}'", auth.principal, op.name()),
        )
    })
}

/// Needs DescribeConfigs on each topic, or on the cluster for the broker.
pub async fn describe_configs(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let auth = auth.clone();
    let include_synonyms = req.include_synonyms;
    let include_docs = req.include_documentation;
    let resources = req.resources;
    let described = ctx.settings.described.clone();
    let results = ctx
        .blocking(move |engine| {
            resources
                .into_iter()
                .map(|r| {
                    let result = DescribeConfigsResult::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone());
                    let wanted = r
                        .configuration_keys
                        // null asks for every key; so does an empty list.
                        .filter(|k| !k.is_empty())
                        .map(|k| k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
                    let is_wanted =
                        |name: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|k| k == name));
                    if let Some((code, message)) = refusal(
                        &auth,
                        AclOperation::DescribeConfigs,
                        r.resource_type,
                        &r.resource_name,
                    ) {
                        return result
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message)));
                    }
                    match r.resource_type {
                        RESOURCE_BROKER => describe_broker(
                            result,
                            &described,
                            &r.resource_name,
                            is_wanted,
                            version,
                            include_synonyms,
                            include_docs,
                        ),
                        RESOURCE_TOPIC => {
                            let info = match engine.topic(&r.resource_name) {
                                Ok(i) => i,
                                Err(e) => {
                                    return result
                                        .with_error_code(errors::code(&e))
                                        .with_error_message(Some(StrBytes::from_string(
                                            e.to_string(),
                                        )))
                                }
                            };
                            let configs = TOPIC_CONFIGS
                                .iter()
                                .filter(|d| is_wanted(d.name))
                                .map(|d| {
                                    let value =
                                        info.effective.get(d.name).cloned().unwrap_or_default();
                                    let source = if info.overrides.contains_key(d.name) {
                                        SOURCE_DYNAMIC_TOPIC
                                    } else if engine.topic_defaults().contains_key(d.name) {
                                        SOURCE_STATIC_BROKER
                                    } else {
                                        SOURCE_DEFAULT
                                    };
                                    let mut entry = DescribeConfigsResourceResult::default()
                                        .with_name(StrBytes::from_static_str(d.name))
                                        .with_value(Some(StrBytes::from_string(value.clone())))
                                        .with_config_source(if version == 0 { -1 } else { source })
                                        .with_config_type(config_type(d.type_name()));
                                    if include_docs {
                                        entry.documentation =
                                            Some(StrBytes::from_static_str(d.doc));
                                    }
                                    if include_synonyms {
                                        entry.synonyms = topic_synonyms(
                                            d.name,
                                            d.default,
                                            info.overrides.get(d.name),
                                            engine.topic_defaults().get(d.name),
                                        );
                                    }
                                    entry
                                })
                                .collect();
                            result.with_configs(configs)
                        }
                        other => result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "resource type {other} is not supported (topics: 2, broker: 4)"
                            )))),
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    DescribeConfigsResponse::default().with_results(results)
}

/// A topic config's synonyms, most specific first, as Kafka lists them:
/// the topic's override, the broker's `[topic_defaults]` value under
/// Kafka's broker name, and Kafka's default.
fn topic_synonyms(
    name: &'static str,
    default: &'static str,
    topic_override: Option<&String>,
    broker_default: Option<&String>,
) -> Vec<DescribeConfigsSynonym> {
    let broker_name = broker_synonym(name).unwrap_or(name);
    let synonym = |name: &'static str, value: &str, source: i8| {
        DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(Some(StrBytes::from_string(value.to_string())))
            .with_source(source)
    };
    let mut out = Vec::new();
    if let Some(v) = topic_override {
        out.push(synonym(name, v, SOURCE_DYNAMIC_TOPIC));
    }
    if let Some(v) = broker_default {
        out.push(synonym(broker_name, v, SOURCE_STATIC_BROKER));
    }
    out.push(synonym(broker_name, default, SOURCE_DEFAULT));
    out
}

/// The broker resource: `""` asks for the cluster-wide dynamic defaults
/// (tierlog has none), `"0"` (this broker's id) for every setting.
fn describe_broker(
    result: DescribeConfigsResult,
    described: &[DescribedSetting],
    resource_name: &str,
    is_wanted: impl Fn(&str) -> bool,
    version: i16,
    include_synonyms: bool,
    include_docs: bool,
) -> DescribeConfigsResult {
    if resource_name.is_empty() {
        return result;
    }
    if resource_name.parse::<i32>() != Ok(super::NODE_ID) {
        return result
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "unexpected broker id '{resource_name}': this broker is {}; use it or the empty string",
                super::NODE_ID
            ))));
    }
    let configs = described
        .iter()
        .filter(|s| is_wanted(&s.name))
        .map(|s| {
            let source = if s.is_default {
                SOURCE_DEFAULT
            } else {
                SOURCE_STATIC_BROKER
            };
            let value = s
                .reported_value()
                .map(|v| StrBytes::from_string(v.to_string()));
            let mut entry = DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(s.name.clone()))
                .with_value(value.clone())
                .with_read_only(true)
                .with_is_sensitive(s.sensitive)
                .with_config_source(if version == 0 { -1 } else { source })
                .with_config_type(config_type(s.type_name));
            if include_docs {
                entry.documentation = Some(StrBytes::from_static_str(s.doc));
            }
            if include_synonyms {
                entry.synonyms = vec![DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(s.name.clone()))
                    .with_value(value)
                    .with_source(source)];
            }
            entry
        })
        .collect();
    result.with_configs(configs)
}

/// Apply one operation (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT) to the
/// overrides, with the effective value as the base for list operations.
fn apply(
    overrides: &mut BTreeMap<String, String>,
    effective: &BTreeMap<String, String>,
    name: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), String> {
    match op {
        0 => {
            let v = value.ok_or_else(|| format!("SET of {name} needs a value"))?;
            overrides.insert(name.to_string(), v.to_string());
        }
        1 => {
            overrides.remove(name);
        }
        2 | 3 => {
            let is_list = TOPIC_CONFIGS
                .iter()
                .any(|d| d.name == name && d.type_name() == "LIST");
            if !is_list {
                return Err(format!(
                    "{name} is not a list config; APPEND and SUBTRACT apply to lists"
                ));
            }
            let mut items: Vec<String> = effective
                .get(name)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            for v in value
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                if op == 2 && !items.iter().any(|i| i == v) {
                    items.push(v.to_string());
                } else if op == 3 {
                    items.retain(|i| i != v);
                }
            }
            overrides.insert(name.to_string(), items.join(","));
        }
        other => return Err(format!("unknown config operation {other}")),
    }
    Ok(())
}

/// Serializes topic config changes (process-wide: they are rare and fast).
static CONFIG_CHANGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Validate and apply (unless `validate_only`) new overrides for one
/// resource, computed by `change` from the topic's current ones. Returns
/// the error code and message to report.
fn change_topic_configs(
    engine: &crate::Engine,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&crate::TopicInfo) -> Result<BTreeMap<String, String>, String>,
) -> (i16, Option<String>) {
    let fail = |code: ResponseError, msg: String| (code.code(), Some(msg));
    if resource_type == RESOURCE_BROKER {
        return fail(
            ResponseError::InvalidRequest,
            "broker settings are static in tierlog: edit tierlog.toml and restart".into(),
        );
    }
    if resource_type != RESOURCE_TOPIC {
        return fail(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} is not supported"),
        );
    }
    // Read, change and store under one lock: two concurrent alters of a
    // topic would otherwise both start from the same overrides, and the
    // later store would drop the earlier change.
    let _serialized = CONFIG_CHANGES.lock().unwrap_or_else(|p| p.into_inner());
    let info = match engine.topic(name) {
        Ok(i) => i,
        Err(e) => return fail(ResponseError::UnknownTopicOrPartition, e.to_string()),
    };
    let overrides = match change(&info) {
        Ok(o) => o,
        Err(msg) => return fail(ResponseError::InvalidConfig, msg),
    };
    tracing::debug!(
        topic = name,
        ?overrides,
        validate_only,
        "changing topic configs"
    );
    let outcome = if validate_only {
        TopicConfig::resolve(&overrides, engine.topic_defaults()).map(|_| ())
    } else {
        engine.set_topic_configs(name, &overrides).map(|_| ())
    };
    tracing::debug!(topic = name, outcome = ?outcome.as_ref().err().map(|e| e.to_string()), "topic config change");
    match outcome {
        Ok(()) => (0, None),
        Err(e) if e.kind() == ErrorKind::Invalid => {
            fail(ResponseError::InvalidConfig, e.to_string())
        }
        Err(e) => (errors::code(&e), Some(e.to_string())),
    }
}

/// Needs AlterConfigs on each topic (or the cluster for the broker).
pub async fn incremental_alter_configs(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let auth = auth.clone();
    let validate_only = req.validate_only;
    let resources = req.resources;
    let results = ctx
        .blocking(move |engine| {
            resources
                .into_iter()
                .map(|r| {
                    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
                    let refused = refusal(&auth, AclOperation::AlterConfigs, r.resource_type, &r.resource_name);
                    let (code, message) = match refused {
                        Some((code, message)) => (code, Some(message)),
                        None => change_topic_configs(engine, r.resource_type, &r.resource_name, validate_only, |info| {
                            let mut overrides = info.overrides.clone();
                            for c in &r.configs {
                                apply(&mut overrides, &info.effective, &c.name, c.config_operation, c.value.as_deref())?;
                            }
                            Ok(overrides)
                        }),
                    };
                    AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                        .with_error_code(code)
                        .with_error_message(message.map(StrBytes::from_string))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    IncrementalAlterConfigsResponse::default().with_responses(results)
}

/// The legacy AlterConfigs (what rdkafka's `AdminClient::alter_configs`
/// sends): the given set replaces all of the topic's overrides, as in Kafka.
/// Needs AlterConfigs, like IncrementalAlterConfigs.
pub async fn alter_configs(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let auth = auth.clone();
    let validate_only = req.validate_only;
    let resources = req.resources;
    let results = ctx
        .blocking(move |engine| {
            resources
                .into_iter()
                .map(|r| {
                    let refused = refusal(
                        &auth,
                        AclOperation::AlterConfigs,
                        r.resource_type,
                        &r.resource_name,
                    );
                    let (code, message) = if let Some((code, message)) = refused {
                        (code, Some(message))
                    } else {
                        change_topic_configs(
                            engine,
                            r.resource_type,
                            &r.resource_name,
                            validate_only,
                            |_| {
                                Ok(r.configs
                                    .iter()
                                    .filter_map(|c| {
                                        c.value
                                            .as_ref()
                                            .map(|v| (c.name.to_string(), v.to_string()))
                                    })
                                    .collect())
                            },
                        )
                    };
                    AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                        .with_error_code(code)
                        .with_error_message(message.map(StrBytes::from_string))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    AlterConfigsResponse::default().with_responses(results)
}
