//! `tierlog transactions …`: what producers the partitions remember
//! (DescribeProducers, KIP-664), as Kafka's `kafka-transactions.sh
//! describe-producers`, over the protocol.

use std::process::ExitCode;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tierlog::client::Cluster;
use tierlog::{Error, ErrorKind};

use super::admin::{check, runtime};

#[derive(clap::Subcommand)]
pub enum TransactionsCommand {
    /// The idempotent (and, later, transactional) producers each partition
    /// of a topic remembers: id, epoch, last sequence, last write.
    DescribeProducers {
        #[arg(long)]
        topic: String,
        /// One partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

pub fn run(cmd: TransactionsCommand) -> Result<ExitCode, Error> {
    let TransactionsCommand::DescribeProducers {
        topic,
        partition,
        bootstrap,
    } = cmd;
    runtime()?.block_on(async move {
        let mut cluster = Cluster::connect(&bootstrap).await?;
        let partitions: Vec<i32> = match partition {
            Some(p) => vec![p],
            None => {
                let md = cluster.metadata(Some(std::slice::from_ref(&topic))).await?;
                let t = md.first().ok_or_else(|| {
                    Error::new(ErrorKind::NotFound, format!("unknown topic '{topic}'"))
                })?;
                (0..t.leaders.len() as i32).collect()
            }
        };
        let conn = cluster.any();
        let v = conn.version(ApiKey::DescribeProducers, (0, 0))?;
        let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_partition_indexes(partitions)]);
        let resp: DescribeProducersResponse = conn.call(ApiKey::DescribeProducers, v, &req).await?;
        println!(
            "{:<10} {:>12} {:>6} {:>14} {:>15} {:>20}",
            "PARTITION",
            "PRODUCER_ID",
            "EPOCH",
            "LAST_SEQUENCE",
            "LAST_TIMESTAMP",
            "TXN_START_OFFSET"
        );
        for t in &resp.topics {
            for p in &t.partitions {
                check(
                    p.error_code,
                    p.error_message.as_ref(),
                    &format!("cannot describe producers of {topic}-{}", p.partition_index),
                )?;
                for s in &p.active_producers {
                    println!(
                        "{:<10} {:>12} {:>6} {:>14} {:>15} {:>20}",
                        p.partition_index,
                        s.producer_id.0,
                        s.producer_epoch,
                        s.last_sequence,
                        s.last_timestamp,
                        s.current_txn_start_offset
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
