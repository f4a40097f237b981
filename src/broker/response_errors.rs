//! The error codes a response carries, for `tierlog_request_errors_total`:
//! [`ErrorCodes`] per response type, walked once the handler answered, so
//! every code a client receives is counted however it was chosen
//! (`errors.rs`, a handler's own check, a coordinator refusal).
//!
//! Owns only the walk. Must never change a response.

use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, DescribeTransactionsResponse,
    EndTxnResponse, ListTransactionsResponse, TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{
    AlterConfigsResponse, CreateAclsResponse, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteAclsResponse, DeleteGroupsResponse, DeleteRecordsResponse, DeleteTopicsResponse,
    DescribeAclsResponse, DescribeClusterResponse, DescribeConfigsResponse, DescribeGroupsResponse,
    DescribeLogDirsResponse, DescribeProducersResponse, FetchResponse, FindCoordinatorResponse,
    HeartbeatResponse, IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse,
    LeaveGroupResponse, ListGroupsResponse, ListOffsetsResponse, MetadataResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse, OffsetForLeaderEpochResponse,
    ProduceResponse, SyncGroupResponse,
};

impl ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        let v4 = self
            .results_by_transaction
            .iter()
            .flat_map(|r| &r.topic_results);
        for t in self.results_by_topic_v3_and_below.iter().chain(v4) {
            t.results_by_partition
                .iter()
                .for_each(|p| f(p.partition_error_code));
        }
    }
}

impl ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeTransactionsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.transaction_states.iter().for_each(|t| f(t.error_code));
    }
}

/// A response whose error codes can be listed (0, no error, included:
/// the counter skips it).
pub trait ErrorCodes {
    /// Call `f` with every error code in the response: its top-level one
    /// and one per topic, partition, group or member it answers for.
    fn error_codes(&self, f: &mut dyn FnMut(i16));
}

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.responses {
            t.partition_responses.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for CreateAclsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DescribeAclsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ErrorCodes for DeleteAclsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for r in &self.filter_results {
            f(r.error_code);
            r.matching_acls.iter().for_each(|m| f(m.error_code));
        }
    }
}

impl ErrorCodes for CreatePartitionsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DeleteRecordsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for OffsetForLeaderEpochResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeProducersResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeLogDirsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for FetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.responses {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.topics {
            f(t.error_code);
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
        for g in &self.groups {
            f(g.error_code);
            for t in &g.topics {
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.coordinators.iter().for_each(|c| f(c.error_code));
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.members.iter().for_each(|m| f(m.error_code));
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|g| f(g.error_code));
    }
}

/// Responses with one top-level error code.
macro_rules! top_level {
    ($($t:ty),*) => {$(
        impl ErrorCodes for $t {
            fn error_codes(&self, f: &mut dyn FnMut(i16)) {
                f(self.error_code);
            }
        }
    )*};
}

top_level!(
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ListGroupsResponse,
    InitProducerIdResponse,
    DescribeClusterResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ListTransactionsResponse
);

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };

    #[test]
    fn every_level_of_a_response_is_walked() {
        let resp = MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default().with_error_code(3),
            MetadataResponseTopic::default()
                .with_partitions(vec![MetadataResponsePartition::default().with_error_code(5)]),
        ]);
        let mut codes = Vec::new();
        resp.error_codes(&mut |c| codes.push(c));
        assert_eq!(codes, vec![0, 3, 0, 5]);
    }
}
