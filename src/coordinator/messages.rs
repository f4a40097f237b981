//! What the coordinator takes and answers, in its own terms (no wire
//! types): the broker decodes Kafka requests into these and encodes these
//! into Kafka responses.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{ClassicGroupState, GroupError};

/// A JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// KIP-345 static membership.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// Already defaulted to the session timeout where the request has none.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ (KIP-394): a new dynamic member first gets its member
    /// id with [`GroupError::MemberIdRequired`].
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A successful JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Every member for the leader, none for followers.
    pub members: Vec<JoinedMember>,
}

pub type JoinResult = Result<JoinResponse, GroupError>;

/// A SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

pub type SyncResult = Result<SyncResponse, GroupError>;

/// An answer now, or one parked until the group completes a phase (a tick
/// or another member's request sends it).
#[derive(Debug)]
pub enum Pending<T> {
    Ready(T),
    Parked(oneshot::Receiver<T>),
}

impl<T> Pending<T> {
    /// The answer; `closed` when the parked request was dropped (replaced
    /// by a newer request of the same member, or the coordinator is gone).
    pub async fn wait(self, closed: impl FnOnce() -> T) -> T {
        match self {
            Pending::Ready(v) => v,
            Pending::Parked(rx) => rx.await.unwrap_or_else(|_| closed()),
        }
    }
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub state: ClassicGroupState,
    pub protocol_type: Option<String>,
}

/// A group as DescribeGroups shows it (members' metadata and assignments
/// only when Stable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: ClassicGroupState,
    pub protocol_type: Option<String>,
    /// The protocol when Stable, else empty.
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}
