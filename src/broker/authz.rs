//! Who is asking, and may they: the per-request view of the authorizer.
//!
//! Owns [`Authz`]: the connection's principal and address with the ACL
//! bindings current when the request arrived (`Engine::acls`) and the
//! broker's `super.users` / `allow.everyone.if.no.acl.found`. Handlers ask
//! it before they act, with the operation Kafka's `KafkaApis` checks for
//! the API; the decision itself is `security::acl` (sans-io). Must never
//! decide anything itself beyond picking the operation and resource.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::security::acl::{
    AclBinding, AclOperation, AuthorizerConfig, Decision, ResourceType, CLUSTER_NAME,
};

/// One request's principal and the ACLs it is checked against. Cheap to
/// clone into a blocking closure.
#[derive(Clone)]
pub(crate) struct Authz {
    acls: Arc<Vec<AclBinding>>,
    config: Arc<AuthorizerConfig>,
    pub principal: String,
    /// The client's IP address as ACL hosts name it.
    pub host: String,
    pub peer: SocketAddr,
}

impl Authz {
    pub fn new(
        acls: Arc<Vec<AclBinding>>,
        config: Arc<AuthorizerConfig>,
        principal: &str,
        peer: SocketAddr,
    ) -> Authz {
        Authz {
            acls,
            config,
            principal: principal.to_string(),
            host: peer.ip().to_string(),
            peer,
        }
    }

    pub fn decide(&self, op: AclOperation, rt: ResourceType, name: &str) -> Decision {
        let d = self
            .config
            .authorize(&self.acls, &self.principal, &self.host, op, rt, name);
        if !d.allowed() {
            tracing::debug!(
                principal = %super::logging::escape(&self.principal),
                host = %self.host,
                operation = op.name(),
                resource = rt.name(),
                name = %super::logging::escape(name),
                "not authorized"
            );
        }
        d
    }

    pub fn allows(&self, op: AclOperation, rt: ResourceType, name: &str) -> bool {
        self.decide(op, rt, name).allowed()
    }

    pub fn topic(&self, op: AclOperation, name: &str) -> bool {
        self.allows(op, ResourceType::Topic, name)
    }

    pub fn group(&self, op: AclOperation, name: &str) -> bool {
        self.allows(op, ResourceType::Group, name)
    }

    pub fn cluster(&self, op: AclOperation) -> bool {
        self.allows(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// May the principal do `op` on some resource of `rt`?
    pub fn any(&self, op: AclOperation, rt: ResourceType) -> bool {
        self.config
            .authorize_any(&self.acls, &self.principal, &self.host, op, rt)
            .allowed()
    }

    /// Kafka's authorized-operations bits for one resource.
    pub fn operations(&self, rt: ResourceType, name: &str) -> i32 {
        self.config
            .authorized_operations(&self.acls, &self.principal, &self.host, rt, name)
    }

    /// The bindings this request is checked against.
    pub fn acls(&self) -> &[AclBinding] {
        &self.acls
    }

    /// Whether any ACL exists at all (user management's loopback
    /// bootstrap applies only before the first).
    pub fn no_acls(&self) -> bool {
        self.acls.is_empty()
    }
}
