//! CreateAcls, DescribeAcls and DeleteAcls: ACL bindings in the catalog,
//! what `tierlog acl` and Kafka's `kafka-acls` call.
//!
//! Creating and deleting need Alter on the cluster, describing needs
//! Describe on it (as in Kafka). On a PLAINTEXT listener a change from a
//! non-loopback address needs an explicit grant (an ACL or a super user),
//! not merely `allow.everyone.if.no.acl.found`: a PLAINTEXT port reachable
//! from the network cannot be used to hand out permissions on an open
//! broker (the same rule as for SCRAM users, `users.rs`).

use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::logging::escape;
use super::Ctx;
use crate::security::acl::{
    AclBinding, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType, ResourceType,
};
use crate::security::SecurityProtocol;

type Refusal = (ResponseError, String);

/// May this request change cluster-wide security state (ACLs, users)?
pub(super) fn may_alter_cluster(ctx: &Ctx, auth: &Authz) -> Result<(), Refusal> {
    let d = auth.decide(
        AclOperation::Alter,
        ResourceType::Cluster,
        crate::security::acl::CLUSTER_NAME,
    );
    if !d.allowed() {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            format!("{} may not Alter the cluster", auth.principal),
        ));
    }
    if ctx.security.protocol == SecurityProtocol::Plaintext
        && !auth.peer.ip().is_loopback()
        && !d.explicitly_allowed()
    {
        return Err((
            ResponseError::ClusterAuthorizationFailed,
            "over a PLAINTEXT listener only loopback clients may change ACLs or users \
             without an ACL granting Alter on the cluster; use a SASL or SSL listener"
                .to_string(),
        ));
    }
    Ok(())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A binding from CreateAcls' wire fields.
fn binding(
    rt: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    host: &str,
    op: i8,
    perm: i8,
) -> Result<AclBinding, String> {
    let b = AclBinding {
        resource_type: ResourceType::from_code(rt)
            .ok_or_else(|| format!("resource type {rt} cannot be stored in an ACL"))?,
        resource_name: name.to_string(),
        pattern_type: PatternType::from_code(pattern).ok_or_else(|| {
            format!("pattern type {pattern} cannot be stored (3: LITERAL, 4: PREFIXED)")
        })?,
        principal: principal.to_string(),
        host: host.to_string(),
        operation: AclOperation::from_code(op)
            .ok_or_else(|| format!("operation {op} cannot be stored in an ACL"))?,
        permission: AclPermission::from_code(perm)
            .ok_or_else(|| format!("permission {perm} cannot be stored (2: DENY, 3: ALLOW)"))?,
    };
    b.validate().map_err(|e| e.to_string())?;
    Ok(b)
}

/// A filter from DescribeAcls' / DeleteAcls' wire fields (1: ANY).
fn filter(
    rt: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    op: i8,
    perm: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: match rt {
            1 => None,
            c => Some(
                ResourceType::from_code(c)
                    .ok_or_else(|| format!("unknown resource type filter {c}"))?,
            ),
        },
        resource_name: name.map(|n| n.to_string()),
        pattern: PatternFilter::from_code(pattern)
            .ok_or_else(|| format!("unknown pattern type filter {pattern}"))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: match op {
            1 => None,
            c => Some(
                AclOperation::from_code(c)
                    .ok_or_else(|| format!("unknown operation filter {c}"))?,
            ),
        },
        permission: match perm {
            1 => None,
            c => Some(
                AclPermission::from_code(c)
                    .ok_or_else(|| format!("unknown permission filter {c}"))?,
            ),
        },
    })
}

pub async fn create_acls(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let result = |code: ResponseError, message: String| {
        AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(&message)))
    };
    if let Err((code, message)) = may_alter_cluster(ctx, auth) {
        let results = req
            .creations
            .iter()
            .map(|_| result(code, message.clone()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let parsed: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            binding(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        let bindings = valid.clone();
        ctx.blocking(move |engine| engine.create_acls(&bindings))
            .await
            .and_then(|r| r)
    };
    if let Err(e) = &stored {
        tracing::error!(error = %e, "cannot store ACLs");
    } else {
        for b in &valid {
            tracing::info!(acl = %escape(&b.to_string()), by = %escape(&auth.principal), "ACL created");
        }
    }
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(why), _) => result(ResponseError::InvalidRequest, why),
            (Ok(_), Err(_)) => result(
                ResponseError::UnknownServerError,
                "the catalog could not be updated".to_string(),
            ),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe_acls(auth: &Authz, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let refuse = |code: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(&message)))
    };
    if !auth.cluster(AclOperation::Describe) {
        return refuse(
            ResponseError::ClusterAuthorizationFailed,
            format!("{} may not Describe the cluster", auth.principal),
        );
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(why) => return refuse(ResponseError::InvalidRequest, why),
    };
    // Grouped by resource (bindings are sorted by resource first).
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in auth.acls().iter().filter(|b| f.matches(b)) {
        let same = resources.last().is_some_and(|r| {
            r.resource_type == b.resource_type.code()
                && r.resource_name.as_str() == b.resource_name
                && r.pattern_type == b.pattern_type.code()
        });
        if !same {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(s(&b.resource_name))
                    .with_pattern_type(b.pattern_type.code()),
            );
        }
        if let Some(r) = resources.last_mut() {
            r.acls.push(
                AclDescription::default()
                    .with_principal(s(&b.principal))
                    .with_host(s(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete_acls(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let result = |code: ResponseError, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(s(&message)))
    };
    if let Err((code, message)) = may_alter_cluster(ctx, auth) {
        let results = req
            .filters
            .iter()
            .map(|_| result(code, message.clone()))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let deleted = ctx
        .blocking(move |engine| engine.delete_acls(&valid))
        .await
        .and_then(|r| r);
    let mut deleted = match deleted {
        Ok(d) => d.into_iter(),
        Err(e) => {
            tracing::error!(error = %e, "cannot delete ACLs");
            let results = parsed
                .iter()
                .map(|_| {
                    result(
                        ResponseError::UnknownServerError,
                        "the catalog could not be updated".to_string(),
                    )
                })
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(why) => result(ResponseError::InvalidRequest, why),
            Ok(_) => {
                let gone = deleted.next().unwrap_or_default();
                for b in &gone {
                    tracing::info!(acl = %escape(&b.to_string()), by = %escape(&auth.principal), "ACL deleted");
                }
                DeleteAclsFilterResult::default().with_matching_acls(
                    gone.iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(s(&b.resource_name))
                                .with_pattern_type(b.pattern_type.code())
                                .with_principal(s(&b.principal))
                                .with_host(s(&b.host))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
