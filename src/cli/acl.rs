//! `tierlog acl add|list|remove`: Kafka ACLs over the protocol
//! (CreateAcls, DescribeAcls, DeleteAcls), like Kafka's `kafka-acls`.
//!
//! The broker decides who may: Alter on the cluster to add or remove,
//! Describe on it to list. On a broker with ACLs that close the cluster,
//! authenticate as a user who may (a super user) with `--sasl-username`
//! against a SASL_PLAINTEXT listener; the password comes from
//! `TIERLOG_SASL_PASSWORD` or stdin (`--sasl-password-stdin`), never a flag.

use std::process::ExitCode;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tierlog::client::{describe_error, Connection};
use tierlog::security::acl::{
    AclOperation, AclPermission, PatternType, ResourceType, CLUSTER_NAME,
};
use tierlog::{Error, ErrorKind};

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// How to reach the broker (the security flags, `--security-protocol`,
/// `--sasl-username`, …, are the CLI's global ones).
#[derive(clap::Args, Clone)]
pub struct ConnectArgs {
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap: String,
}

/// Which resource(s), for add (exactly one) and for filters (at most one).
#[derive(clap::Args, Clone)]
pub struct ResourceArgs {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    group: Option<String>,
    /// The cluster resource (user and ACL management, cluster-wide
    /// operations).
    #[arg(long)]
    cluster: bool,
    #[arg(long)]
    transactional_id: Option<String>,
    /// literal or prefixed (add; default literal); for list and remove
    /// also any or match (default: any).
    #[arg(long)]
    resource_pattern_type: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum AclCommand {
    /// Add ACLs: the principal may (or, with --deny, may not) do each
    /// operation on the resource.
    Add {
        /// User:NAME, or User:* for every user.
        #[arg(long)]
        principal: String,
        /// Read, Write, Create, Delete, Alter, Describe, ClusterAction,
        /// DescribeConfigs, AlterConfigs, IdempotentWrite or All;
        /// repeatable.
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[command(flatten)]
        resource: ResourceArgs,
        /// A DENY ACL (deny wins over any allow).
        #[arg(long)]
        deny: bool,
        /// The client address it applies to (default: any host, *).
        #[arg(long, default_value = "*")]
        host: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List ACLs, all of them or those the filters match.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove every ACL the filters match (at least one filter is
    /// required) and print them.
    Remove {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Args, Clone)]
pub struct FilterArgs {
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    operation: Option<String>,
    #[command(flatten)]
    resource: ResourceArgs,
    #[arg(long)]
    host: Option<String>,
    /// Only DENY ACLs.
    #[arg(long, conflicts_with = "allow")]
    deny: bool,
    /// Only ALLOW ACLs.
    #[arg(long)]
    allow: bool,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn operation(name: &str) -> Result<AclOperation, Error> {
    AclOperation::parse(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown operation '{name}' (Read, Write, Create, Delete, Alter, Describe, \
             ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All)"
        ))
    })
}

/// The resource named, if any: (type, name).
fn resource(r: &ResourceArgs) -> Result<Option<(ResourceType, String)>, Error> {
    let mut named = Vec::new();
    if let Some(t) = &r.topic {
        named.push((ResourceType::Topic, t.clone()));
    }
    if let Some(g) = &r.group {
        named.push((ResourceType::Group, g.clone()));
    }
    if r.cluster {
        named.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
    }
    if let Some(t) = &r.transactional_id {
        named.push((ResourceType::TransactionalId, t.clone()));
    }
    match named.len() {
        0 => Ok(None),
        1 => Ok(named.pop()),
        _ => Err(Error::invalid(
            "name one resource: --topic, --group, --cluster or --transactional-id",
        )),
    }
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let detail = message
        .map(|m| format!(": {}", m.as_str()))
        .unwrap_or_default();
    Err(Error::new(
        ErrorKind::Invalid,
        format!("{what}: {}{detail}", describe_error(code)),
    ))
}

/// Connect to `--bootstrap` with the CLI's security flags (a SASL login
/// when they name a user).
pub async fn connect(c: &ConnectArgs) -> Result<Connection, Error> {
    Connection::connect(&c.bootstrap).await
}

/// One line per binding, in the form `add` takes.
fn line(rt: i8, name: &str, pattern: i8, principal: &str, host: &str, op: i8, perm: i8) -> String {
    let rt = ResourceType::from_code(rt).map_or("?", |t| t.name());
    let pattern = PatternType::from_code(pattern).map_or("?", |p| p.name());
    let op = AclOperation::from_code(op).map_or("?", |o| o.name());
    let perm = AclPermission::from_code(perm).map_or("?", |p| p.name());
    format!("{principal}\t{perm}\t{op}\t{rt}\t{pattern}\t{name}\thost={host}")
}

/// Filter fields as the wire has them (1: ANY).
struct WireFilter {
    rt: i8,
    name: Option<StrBytes>,
    pattern: i8,
    principal: Option<StrBytes>,
    host: Option<StrBytes>,
    op: i8,
    perm: i8,
}

fn wire_filter(f: &FilterArgs) -> Result<WireFilter, Error> {
    let res = resource(&f.resource)?;
    let pattern = match f.resource.resource_pattern_type.as_deref() {
        None => 1,
        Some(p) => match p.to_ascii_lowercase().as_str() {
            "any" => 1,
            "match" => 2,
            "literal" => 3,
            "prefixed" => 4,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown pattern type '{p}' (any, match, literal, prefixed)"
                )))
            }
        },
    };
    Ok(WireFilter {
        rt: res.as_ref().map_or(1, |(t, _)| t.code()),
        name: res.map(|(_, n)| s(&n)),
        pattern,
        principal: f.principal.as_deref().map(s),
        host: f.host.as_deref().map(s),
        op: match &f.operation {
            Some(o) => operation(o)?.code(),
            None => 1,
        },
        perm: if f.deny {
            AclPermission::Deny.code()
        } else if f.allow {
            AclPermission::Allow.code()
        } else {
            1
        },
    })
}

pub fn run(cmd: AclCommand) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}")))?;
    runtime.block_on(async move {
        match cmd {
            AclCommand::Add {
                principal,
                operations,
                resource: r,
                deny,
                host,
                connect: c,
            } => {
                let (rt, name) = resource(&r)?.ok_or_else(|| {
                    Error::invalid(
                        "name the resource: --topic, --group, --cluster or --transactional-id",
                    )
                })?;
                let pattern = match r.resource_pattern_type.as_deref() {
                    None => PatternType::Literal,
                    Some(p) => PatternType::parse(p).ok_or_else(|| {
                        Error::invalid(format!("unknown pattern type '{p}' (literal or prefixed)"))
                    })?,
                };
                let perm = if deny {
                    AclPermission::Deny
                } else {
                    AclPermission::Allow
                };
                let ops = operations
                    .iter()
                    .map(|o| operation(o))
                    .collect::<Result<Vec<_>, _>>()?;
                let req = CreateAclsRequest::default().with_creations(
                    ops.iter()
                        .map(|op| {
                            AclCreation::default()
                                .with_resource_type(rt.code())
                                .with_resource_name(s(&name))
                                .with_resource_pattern_type(pattern.code())
                                .with_principal(s(&principal))
                                .with_host(s(&host))
                                .with_operation(op.code())
                                .with_permission_type(perm.code())
                        })
                        .collect(),
                );
                let mut conn = connect(&c).await?;
                let v = conn.version(ApiKey::CreateAcls, (1, 3))?;
                let resp: CreateAclsResponse = conn.call(ApiKey::CreateAcls, v, &req).await?;
                for (op, r) in ops.iter().zip(&resp.results) {
                    let l = line(
                        rt.code(),
                        &name,
                        pattern.code(),
                        &principal,
                        &host,
                        op.code(),
                        perm.code(),
                    );
                    check(r.error_code, r.error_message.as_ref(), &format!("ACL {l}"))?;
                    println!("added\t{l}");
                }
            }
            AclCommand::List { filter, connect: c } => {
                let f = wire_filter(&filter)?;
                let req = DescribeAclsRequest::default()
                    .with_resource_type_filter(f.rt)
                    .with_resource_name_filter(f.name)
                    .with_pattern_type_filter(f.pattern)
                    .with_principal_filter(f.principal)
                    .with_host_filter(f.host)
                    .with_operation(f.op)
                    .with_permission_type(f.perm);
                let mut conn = connect(&c).await?;
                let v = conn.version(ApiKey::DescribeAcls, (1, 3))?;
                let resp: DescribeAclsResponse = conn.call(ApiKey::DescribeAcls, v, &req).await?;
                check(resp.error_code, resp.error_message.as_ref(), "list ACLs")?;
                for r in &resp.resources {
                    for a in &r.acls {
                        println!(
                            "{}",
                            line(
                                r.resource_type,
                                &r.resource_name,
                                r.pattern_type,
                                &a.principal,
                                &a.host,
                                a.operation,
                                a.permission_type
                            )
                        );
                    }
                }
            }
            AclCommand::Remove { filter, connect: c } => {
                let f = wire_filter(&filter)?;
                if f.rt == 1 && f.principal.is_none() {
                    return Err(Error::invalid(
                        "name a resource (--topic, --group, --cluster, --transactional-id) or \
                         a --principal: remove does not remove every ACL at once",
                    ));
                }
                let req =
                    DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                        .with_resource_type_filter(f.rt)
                        .with_resource_name_filter(f.name)
                        .with_pattern_type_filter(f.pattern)
                        .with_principal_filter(f.principal)
                        .with_host_filter(f.host)
                        .with_operation(f.op)
                        .with_permission_type(f.perm)]);
                let mut conn = connect(&c).await?;
                let v = conn.version(ApiKey::DeleteAcls, (1, 3))?;
                let resp: DeleteAclsResponse = conn.call(ApiKey::DeleteAcls, v, &req).await?;
                for r in &resp.filter_results {
                    check(r.error_code, r.error_message.as_ref(), "remove ACLs")?;
                    if r.matching_acls.is_empty() {
                        println!("no ACL matched");
                    }
                    for m in &r.matching_acls {
                        println!(
                            "removed\t{}",
                            line(
                                m.resource_type,
                                &m.resource_name,
                                m.pattern_type,
                                &m.principal,
                                &m.host,
                                m.operation,
                                m.permission_type
                            )
                        );
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
