//! Kafka ACLs, sans-io: bindings, filters and the authorizer's decision
//! (Kafka's `StandardAuthorizer` semantics).
//!
//! Owns what an ACL is (principal, host, resource type and pattern,
//! operation, allow or deny), Kafka's numeric codes for each part, how a
//! filter (DescribeAcls, DeleteAcls) selects bindings, and the decision
//! for one principal, host, operation and resource:
//!
//! 1. a super user (`super.users`) is allowed everything;
//! 2. a DENY binding that matches the principal (or `User:*`), the host
//!    (or `*`), the operation (or ALL) and the resource (the literal name,
//!    the literal `*`, or a prefix) denies;
//! 3. an ALLOW binding that matches the same way allows; Read, Write,
//!    Delete and Alter imply Describe, and AlterConfigs implies
//!    DescribeConfigs (for ALLOW only, as in Kafka);
//! 4. when no binding at all names the resource (whoever it is for), the
//!    answer is `allow.everyone.if.no.acl.found`; otherwise deny.
//!
//! Must never do I/O: the bindings come in as a slice (the broker keeps
//! them in memory, the catalog stores them).

use std::fmt;

/// A resource kind ACLs can name. Kafka's `ResourceType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Kafka's name (`TOPIC`, `GROUP`, `CLUSTER`, `TRANSACTIONAL_ID`).
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
        }
    }

    pub fn parse(name: &str) -> Option<ResourceType> {
        let n = name.to_ascii_uppercase().replace('-', "_");
        Self::ALL.into_iter().find(|t| t.name() == n)
    }

    /// The operations Kafka reports as authorized operations for this
    /// resource type (Metadata, DescribeCluster, DescribeGroups).
    pub fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
        }
    }
}

/// The one name of the cluster resource (Kafka's `kafka-cluster`).
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// How a binding's resource name applies. Kafka's `PatternType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// The name exactly, or every resource when the name is `*`.
    Literal,
    /// Every resource whose name starts with the name.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }

    pub fn parse(name: &str) -> Option<PatternType> {
        match name.to_ascii_uppercase().as_str() {
            "LITERAL" => Some(PatternType::Literal),
            "PREFIXED" => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

/// An operation. Kafka's `AclOperation` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl AclOperation {
    pub const EVERY: [AclOperation; 11] = [
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::ClusterAction,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
        AclOperation::IdempotentWrite,
    ];

    pub fn code(self) -> i8 {
        match self {
            AclOperation::All => 2,
            AclOperation::Read => 3,
            AclOperation::Write => 4,
            AclOperation::Create => 5,
            AclOperation::Delete => 6,
            AclOperation::Alter => 7,
            AclOperation::Describe => 8,
            AclOperation::ClusterAction => 9,
            AclOperation::DescribeConfigs => 10,
            AclOperation::AlterConfigs => 11,
            AclOperation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(code: i8) -> Option<AclOperation> {
        Self::EVERY.into_iter().find(|o| o.code() == code)
    }

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`, …).
    pub fn name(self) -> &'static str {
        match self {
            AclOperation::All => "ALL",
            AclOperation::Read => "READ",
            AclOperation::Write => "WRITE",
            AclOperation::Create => "CREATE",
            AclOperation::Delete => "DELETE",
            AclOperation::Alter => "ALTER",
            AclOperation::Describe => "DESCRIBE",
            AclOperation::ClusterAction => "CLUSTER_ACTION",
            AclOperation::DescribeConfigs => "DESCRIBE_CONFIGS",
            AclOperation::AlterConfigs => "ALTER_CONFIGS",
            AclOperation::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }

    /// Kafka's name in any case, with `-`, `_` or CamelCase
    /// (`DescribeConfigs`, `describe-configs`, `DESCRIBE_CONFIGS`).
    pub fn parse(name: &str) -> Option<AclOperation> {
        let squashed: String = name
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        Self::EVERY
            .into_iter()
            .find(|o| o.name().replace('_', "") == squashed)
    }

    /// Whether an ALLOW binding for `self` allows `requested`.
    fn allows(self, requested: AclOperation) -> bool {
        use AclOperation::*;
        self == All
            || self == requested
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }
}

/// ALLOW or DENY. Kafka's `AclPermissionType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclPermission {
    Deny,
    Allow,
}

impl AclPermission {
    pub fn code(self) -> i8 {
        match self {
            AclPermission::Deny => 2,
            AclPermission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<AclPermission> {
        match code {
            2 => Some(AclPermission::Deny),
            3 => Some(AclPermission::Allow),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AclPermission::Deny => "DENY",
            AclPermission::Allow => "ALLOW",
        }
    }
}

/// One ACL: `principal` from `host` may (or may not) do `operation` on
/// the resources `resource_type`/`resource_name`/`pattern_type` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:NAME`, or `User:*` for every user.
    pub principal: String,
    /// A client IP address as text, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// Why a binding cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    #[error("principal '{0}' is not of the form User:NAME (or User:*)")]
    Principal(String),
    #[error("the resource name must not be empty")]
    EmptyName,
    #[error("the host must not be empty (use * for any host)")]
    EmptyHost,
    #[error("the cluster resource is named kafka-cluster, not '{0}'")]
    ClusterName(String),
    #[error("operation {op} does not apply to a {resource}")]
    Operation {
        op: &'static str,
        resource: &'static str,
    },
}

impl AclBinding {
    /// Check what Kafka checks before storing a binding.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        match self.principal.split_once(':') {
            Some(("User", name)) if !name.is_empty() => {}
            _ => return Err(InvalidAcl::Principal(self.principal.clone())),
        }
        if self.resource_name.is_empty() {
            return Err(InvalidAcl::EmptyName);
        }
        if self.host.is_empty() {
            return Err(InvalidAcl::EmptyHost);
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(InvalidAcl::ClusterName(self.resource_name.clone()));
        }
        if self.operation != AclOperation::All
            && !self.resource_type.operations().contains(&self.operation)
        {
            return Err(InvalidAcl::Operation {
                op: self.operation.name(),
                resource: self.resource_type.name(),
            });
        }
        Ok(())
    }

    /// Does this binding's pattern cover the resource `name`?
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == "*" || self.host == host)
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}:{}:{} host={}",
            self.principal,
            self.permission.name(),
            self.operation.name(),
            self.resource_type.name(),
            self.pattern_type.name(),
            self.resource_name,
            self.host
        )
    }
}

/// How a filter selects by pattern (Kafka's filter pattern types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type; the name, if given, compared exactly.
    Any,
    /// The bindings that apply to the named resource: its literal name,
    /// the literal `*`, and every prefix of it.
    Match,
    /// Exactly this pattern type.
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<PatternFilter> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            c => PatternType::from_code(c).map(PatternFilter::Exactly),
        }
    }
}

/// A DescribeAcls / DeleteAcls filter: `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<AclPermission>,
}

impl AclFilter {
    /// The filter that matches every binding.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource = self.resource_type.is_none_or(|t| t == b.resource_type)
            && match (self.pattern, &self.resource_name) {
                (PatternFilter::Any, None) => true,
                (PatternFilter::Any, Some(n)) => *n == b.resource_name,
                (PatternFilter::Exactly(p), n) => {
                    p == b.pattern_type && n.as_ref().is_none_or(|n| *n == b.resource_name)
                }
                (PatternFilter::Match, None) => true,
                (PatternFilter::Match, Some(n)) => match b.pattern_type {
                    PatternType::Literal => b.resource_name == *n || b.resource_name == "*",
                    PatternType::Prefixed => n.starts_with(&b.resource_name),
                },
            };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The principal is a super user.
    SuperUser,
    /// An ALLOW binding matched (and no DENY).
    Allowed,
    /// No binding names the resource and `allow.everyone.if.no.acl.found`.
    NoAclFound,
    /// A DENY binding matched, or bindings exist and none allows.
    Denied,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self != Decision::Denied
    }

    /// Allowed by a super user or an ACL, not merely because no ACL
    /// exists.
    pub fn explicitly_allowed(self) -> bool {
        matches!(self, Decision::SuperUser | Decision::Allowed)
    }
}

/// The authorizer's settings: `super.users` and
/// `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parse Kafka's `super.users` (`User:admin;User:ops`).
    pub fn parse_super_users(text: &str) -> Result<Vec<String>, InvalidAcl> {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| match p.split_once(':') {
                Some(("User", n)) if !n.is_empty() => Ok(p.to_string()),
                _ => Err(InvalidAcl::Principal(p.to_string())),
            })
            .collect()
    }

    fn is_super(&self, principal: &str) -> bool {
        self.super_users.iter().any(|s| s == principal)
    }

    /// May `principal` connecting from `host` do `op` on the resource?
    pub fn authorize(
        &self,
        acls: &[AclBinding],
        principal: &str,
        host: &str,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        if self.is_super(principal) {
            return Decision::SuperUser;
        }
        let mut any = false;
        let mut allowed = false;
        for b in acls.iter().filter(|b| b.covers(resource_type, name)) {
            any = true;
            if !b.applies_to(principal, host) {
                continue;
            }
            match b.permission {
                AclPermission::Deny if b.operation == op || b.operation == AclOperation::All => {
                    return Decision::Denied
                }
                AclPermission::Allow if b.operation.allows(op) => allowed = true,
                _ => {}
            }
        }
        if allowed {
            Decision::Allowed
        } else if !any && self.allow_everyone_if_no_acl_found {
            Decision::NoAclFound
        } else {
            Decision::Denied
        }
    }

    /// May `principal` do `op` on some resource of `resource_type`
    /// (Kafka's `authorizeByResourceType`, used for idempotent producers:
    /// Write on any topic)? A DENY for the literal `*` refuses; an ALLOW
    /// of any pattern grants; with no binding of the type at all,
    /// `allow.everyone.if.no.acl.found` decides.
    pub fn authorize_any(
        &self,
        acls: &[AclBinding],
        principal: &str,
        host: &str,
        op: AclOperation,
        resource_type: ResourceType,
    ) -> Decision {
        if self.is_super(principal) {
            return Decision::SuperUser;
        }
        let of_type = || acls.iter().filter(|b| b.resource_type == resource_type);
        let applies = |b: &&AclBinding| b.applies_to(principal, host);
        let denied_everywhere = of_type().filter(applies).any(|b| {
            b.permission == AclPermission::Deny
                && b.pattern_type == PatternType::Literal
                && b.resource_name == "*"
                && (b.operation == op || b.operation == AclOperation::All)
        });
        if denied_everywhere {
            return Decision::Denied;
        }
        if of_type()
            .filter(applies)
            .any(|b| b.permission == AclPermission::Allow && b.operation.allows(op))
        {
            Decision::Allowed
        } else if of_type().next().is_none() && self.allow_everyone_if_no_acl_found {
            Decision::NoAclFound
        } else {
            Decision::Denied
        }
    }

    /// Kafka's authorized-operations bit field for one resource: a bit
    /// (1 << code) per operation of the type that is allowed.
    pub fn authorized_operations(
        &self,
        acls: &[AclBinding],
        principal: &str,
        host: &str,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        resource_type
            .operations()
            .iter()
            .filter(|op| {
                self.authorize(acls, principal, host, **op, resource_type, name)
                    .allowed()
            })
            .fold(0, |bits, op| bits | 1 << op.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclOperation::*;
    use ResourceType::*;

    fn b(
        principal: &str,
        permission: AclPermission,
        op: AclOperation,
        rt: ResourceType,
        pattern: PatternType,
        name: &str,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission,
        }
    }
    use AclPermission::{Allow, Deny};
    use PatternType::{Literal, Prefixed};

    fn strict() -> AuthorizerConfig {
        AuthorizerConfig {
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: false,
        }
    }

    #[test]
    fn allow_deny_wildcards_prefixes_and_implied_operations() {
        let acls = vec![
            b("User:alice", Allow, Write, Topic, Literal, "orders"),
            b("User:alice", Allow, Read, Topic, Prefixed, "logs-"),
            b("User:*", Allow, Describe, Topic, Literal, "public"),
            b("User:bob", Allow, All, Topic, Literal, "*"),
            b("User:bob", Deny, Read, Topic, Prefixed, "secret"),
            b("User:carol", Allow, AlterConfigs, Topic, Literal, "orders"),
        ];
        let a = strict();
        let ok = |p: &str, op, name: &str| a.authorize(&acls, p, "10.0.0.1", op, Topic, name);
        assert_eq!(ok("User:alice", Write, "orders"), Decision::Allowed);
        assert_eq!(ok("User:alice", Describe, "orders"), Decision::Allowed);
        assert_eq!(ok("User:alice", Read, "orders"), Decision::Denied);
        assert_eq!(ok("User:alice", Read, "logs-app"), Decision::Allowed);
        assert_eq!(ok("User:alice", Read, "logs"), Decision::Denied);
        assert_eq!(ok("User:dave", Describe, "public"), Decision::Allowed);
        assert_eq!(ok("User:dave", Read, "public"), Decision::Denied);
        assert_eq!(ok("User:bob", Read, "anything"), Decision::Allowed);
        assert_eq!(ok("User:bob", Read, "secret-plans"), Decision::Denied);
        // A DENY for Read does not deny Describe (implication is for ALLOW).
        assert_eq!(ok("User:bob", Describe, "secret-plans"), Decision::Allowed);
        assert_eq!(
            ok("User:carol", DescribeConfigs, "orders"),
            Decision::Allowed
        );
        assert_eq!(ok("User:carol", Describe, "orders"), Decision::Denied);
        assert_eq!(ok("User:admin", Delete, "orders"), Decision::SuperUser);
        // Not named by any ACL: the setting decides. `*` covers every
        // topic, so use a group.
        let g = |cfg: &AuthorizerConfig| cfg.authorize(&acls, "User:x", "h", Read, Group, "g");
        assert_eq!(g(&a), Decision::Denied);
        let open = AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..a.clone()
        };
        assert_eq!(g(&open), Decision::NoAclFound);
        // A resource some ACL names is closed to others even when open.
        assert_eq!(
            open.authorize(&acls, "User:x", "h", Write, Topic, "orders"),
            Decision::Denied
        );
    }

    #[test]
    fn deny_all_and_hosts() {
        let mut allow = b("User:alice", Allow, Read, Topic, Literal, "t");
        allow.host = "10.0.0.1".into();
        let deny = b("User:*", Deny, All, Topic, Prefixed, "t");
        let a = strict();
        assert!(a
            .authorize(&[allow.clone()], "User:alice", "10.0.0.1", Read, Topic, "t")
            .allowed());
        assert!(!a
            .authorize(&[allow.clone()], "User:alice", "10.0.0.2", Read, Topic, "t")
            .allowed());
        assert!(!a
            .authorize(&[allow, deny], "User:alice", "10.0.0.1", Read, Topic, "t")
            .allowed());
    }

    #[test]
    fn authorize_any_and_operations_bits() {
        let a = strict();
        let acls = vec![b("User:alice", Allow, Write, Topic, Prefixed, "o")];
        assert!(a
            .authorize_any(&acls, "User:alice", "h", Write, Topic)
            .allowed());
        assert!(!a
            .authorize_any(&acls, "User:bob", "h", Write, Topic)
            .allowed());
        let bits = a.authorized_operations(&acls, "User:alice", "h", Topic, "orders");
        assert_eq!(bits, 1 << 4 | 1 << 8, "Write and the Describe it implies");
        let admin = a.authorized_operations(&acls, "User:admin", "h", Cluster, CLUSTER_NAME);
        assert_eq!(
            admin,
            [5, 9, 10, 11, 12, 7, 8].iter().fold(0, |b, c| b | 1 << c)
        );
    }

    #[test]
    fn filters_any_match_and_exact() {
        let acls = [
            b("User:a", Allow, Read, Topic, Literal, "orders"),
            b("User:a", Allow, Read, Topic, Literal, "*"),
            b("User:a", Allow, Read, Topic, Prefixed, "ord"),
            b("User:a", Allow, Read, Topic, Prefixed, "x"),
            b("User:b", Deny, Write, Group, Literal, "orders"),
        ];
        let pick = |f: AclFilter| {
            acls.iter()
                .enumerate()
                .filter(|(_, x)| f.matches(x))
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(AclFilter::any()), vec![0, 1, 2, 3, 4]);
        let named = |pattern| AclFilter {
            resource_type: Some(Topic),
            resource_name: Some("orders".into()),
            pattern,
            ..AclFilter::any()
        };
        assert_eq!(pick(named(PatternFilter::Any)), vec![0]);
        assert_eq!(pick(named(PatternFilter::Match)), vec![0, 1, 2]);
        assert_eq!(
            pick(named(PatternFilter::Exactly(Prefixed))),
            Vec::<usize>::new()
        );
        assert_eq!(
            pick(AclFilter {
                principal: Some("User:b".into()),
                permission: Some(Deny),
                ..AclFilter::any()
            }),
            vec![4]
        );
        assert_eq!(
            pick(AclFilter {
                operation: Some(Write),
                ..AclFilter::any()
            }),
            vec![4]
        );
    }

    #[test]
    fn validation_and_names() {
        let ok = b("User:a", Allow, Read, Topic, Literal, "t");
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: fn(&mut AclBinding)| {
            let mut x = ok.clone();
            f(&mut x);
            x.validate().unwrap_err()
        };
        assert!(matches!(
            bad(|x| x.principal = "alice".into()),
            InvalidAcl::Principal(_)
        ));
        assert_eq!(bad(|x| x.resource_name.clear()), InvalidAcl::EmptyName);
        assert!(matches!(
            bad(|x| x.operation = IdempotentWrite),
            InvalidAcl::Operation { .. }
        ));
        assert!(matches!(
            bad(|x| {
                x.resource_type = Cluster;
                x.resource_name = "c".into()
            }),
            InvalidAcl::ClusterName(_)
        ));
        assert_eq!(
            AclOperation::parse("DescribeConfigs"),
            Some(DescribeConfigs)
        );
        assert_eq!(
            AclOperation::parse("idempotent-write"),
            Some(IdempotentWrite)
        );
        assert_eq!(AclOperation::parse("READ"), Some(Read));
        assert_eq!(AclOperation::parse("Reed"), None);
        for op in AclOperation::EVERY {
            assert_eq!(AclOperation::from_code(op.code()), Some(op));
        }
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_code(t.code()), Some(t));
        }
        assert_eq!(
            ResourceType::parse("transactional-id"),
            Some(TransactionalId)
        );
        assert_eq!(
            AuthorizerConfig::parse_super_users("User:admin; User:ops;").unwrap(),
            vec!["User:admin".to_string(), "User:ops".to_string()]
        );
        assert!(AuthorizerConfig::parse_super_users("admin").is_err());
    }
}
