//! DescribeLogDirs: where each partition's bytes are. The data directory is
//! one log dir (its partitions' local bytes, the file system's total and
//! usable bytes); the remote tier is reported as a second one, named by its
//! URL, with each tiered partition's bytes in the bucket (size unknown:
//! -1), so `kafka-log-dirs --describe` and admin UIs show both tiers.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::authz::Authz;
use super::{errors, Ctx};
use crate::security::acl::AclOperation;

/// Needs Describe on the cluster (CLUSTER_AUTHORIZATION_FAILED, as Kafka).
pub async fn describe_log_dirs(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !auth.cluster(AclOperation::Describe) {
        return DescribeLogDirsResponse::default()
            .with_error_code(kafka_protocol::ResponseError::ClusterAuthorizationFailed.code());
    }
    // None: every partition.
    let wanted: Option<HashSet<(String, i32)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect()
    });
    let answer = ctx
        .blocking(move |engine| {
            let status = engine.tier_status(None)?;
            let mut local: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            let mut remote: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for p in status.partitions {
                let key = (p.topic.clone(), p.partition as i32);
                if wanted.as_ref().is_some_and(|w| !w.contains(&key)) {
                    continue;
                }
                let entry = |bytes: u64| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.partition as i32)
                        .with_partition_size(bytes as i64)
                        .with_offset_lag(0)
                };
                local
                    .entry(p.topic.clone())
                    .or_default()
                    .push(entry(p.local_bytes));
                if p.remote_storage_enable || p.remote_bytes > 0 {
                    remote
                        .entry(p.topic.clone())
                        .or_default()
                        .push(entry(p.remote_bytes));
                }
            }
            let topics = |m: BTreeMap<String, Vec<DescribeLogDirsPartition>>| {
                m.into_iter()
                    .map(|(name, partitions)| {
                        DescribeLogDirsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(partitions)
                    })
                    .collect::<Vec<_>>()
            };
            let (total, usable) = disk_space(engine.data_dir()).unwrap_or((-1, -1));
            let mut results = vec![DescribeLogDirsResult::default()
                .with_log_dir(StrBytes::from_string(
                    engine.data_dir().display().to_string(),
                ))
                .with_topics(topics(local))
                .with_total_bytes(total)
                .with_usable_bytes(usable)];
            if let Some(url) = status.remote {
                results.push(
                    DescribeLogDirsResult::default()
                        .with_log_dir(StrBytes::from_string(url))
                        .with_topics(topics(remote))
                        .with_total_bytes(-1)
                        .with_usable_bytes(-1),
                );
            }
            Ok(results)
        })
        .await
        .and_then(|r| r);
    match answer {
        Ok(results) => DescribeLogDirsResponse::default().with_results(results),
        Err(e) => DescribeLogDirsResponse::default().with_error_code(errors::code(&e)),
    }
}

/// The total and available bytes of the file system holding `dir`.
fn disk_space(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a
    // zeroed, properly aligned statvfs that the call fills.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as i64;
    Some((
        (stat.f_blocks as i64).saturating_mul(block),
        (stat.f_bavail as i64).saturating_mul(block),
    ))
}
