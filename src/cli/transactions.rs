//! `tierlog transactions …`: what producers the partitions remember
//! (DescribeProducers), the transactional ids the coordinator knows
//! (ListTransactions) and one of them in detail (DescribeTransactions) —
//! KIP-664, as Kafka's `kafka-transactions.sh describe-producers`, `list`
//! and `describe`, over the protocol.

use std::process::ExitCode;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tierlog::client::Cluster;
use tierlog::{Error, ErrorKind};

use super::admin::{check, runtime};

#[derive(clap::Subcommand)]
pub enum TransactionsCommand {
    /// The idempotent and transactional producers each partition of a
    /// topic remembers: id, epoch, last sequence, last write, the first
    /// offset of the open transaction.
    DescribeProducers {
        #[arg(long)]
        topic: String,
        /// One partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Every transactional id the coordinator knows: id, producer id, state.
    List {
        /// Only ids in this state (Kafka's names: Ongoing, CompleteCommit, …).
        #[arg(long)]
        state: Vec<String>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// One transactional id: producer id and epoch, state, timeout, when
    /// its transaction began and its partitions.
    Describe {
        transactional_id: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

pub fn run(cmd: TransactionsCommand) -> Result<ExitCode, Error> {
    match cmd {
        TransactionsCommand::DescribeProducers {
            topic,
            partition,
            bootstrap,
        } => describe_producers(topic, partition, bootstrap),
        TransactionsCommand::List { state, bootstrap } => list(state, bootstrap),
        TransactionsCommand::Describe {
            transactional_id,
            bootstrap,
        } => describe(transactional_id, bootstrap),
    }
}

fn list(states: Vec<String>, bootstrap: String) -> Result<ExitCode, Error> {
    runtime()?.block_on(async move {
        let mut cluster = Cluster::connect(&bootstrap).await?;
        let conn = cluster.any();
        let v = conn.version(ApiKey::ListTransactions, (0, 1))?;
        let req = ListTransactionsRequest::default()
            .with_state_filters(states.into_iter().map(StrBytes::from_string).collect())
            .with_duration_filter(-1);
        let resp: ListTransactionsResponse = conn.call(ApiKey::ListTransactions, v, &req).await?;
        check(resp.error_code, None, "cannot list transactions")?;
        if let Some(unknown) = resp.unknown_state_filters.first() {
            return Err(Error::invalid(format!(
                "unknown transaction state '{}' (Kafka's names: Empty, Ongoing, PrepareCommit, \
                 PrepareAbort, CompleteCommit, CompleteAbort, Dead)",
                unknown.as_str()
            )));
        }
        println!(
            "{:<40} {:>12} {:<16}",
            "TRANSACTIONAL_ID", "PRODUCER_ID", "STATE"
        );
        for t in &resp.transaction_states {
            println!(
                "{:<40} {:>12} {:<16}",
                tierlog::broker::escape(t.transactional_id.as_str()),
                t.producer_id.0,
                t.transaction_state.as_str()
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn describe(transactional_id: String, bootstrap: String) -> Result<ExitCode, Error> {
    runtime()?.block_on(async move {
        let mut cluster = Cluster::connect(&bootstrap).await?;
        let conn = cluster.any();
        let v = conn.version(ApiKey::DescribeTransactions, (0, 0))?;
        let req =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(transactional_id.clone()),
            )]);
        let resp: DescribeTransactionsResponse =
            conn.call(ApiKey::DescribeTransactions, v, &req).await?;
        let Some(t) = resp.transaction_states.first() else {
            return Err(Error::new(
                ErrorKind::Internal,
                "empty DescribeTransactions answer",
            ));
        };
        check(
            t.error_code,
            None,
            &format!("cannot describe transactional id '{transactional_id}'"),
        )?;
        let partitions: Vec<String> = t
            .topics
            .iter()
            .flat_map(|d| {
                d.partitions
                    .iter()
                    .map(move |p| format!("{}-{p}", d.topic.0.as_str()))
            })
            .collect();
        println!(
            "{:<12} {:>6} {:<16} {:>10} {:>16} PARTITIONS",
            "PRODUCER_ID", "EPOCH", "STATE", "TIMEOUT_MS", "START_TIME_MS"
        );
        println!(
            "{:<12} {:>6} {:<16} {:>10} {:>16} {}",
            t.producer_id.0,
            t.producer_epoch,
            t.transaction_state.as_str(),
            t.transaction_timeout_ms,
            t.transaction_start_time_ms,
            tierlog::broker::escape(&partitions.join(","))
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn describe_producers(
    topic: String,
    partition: Option<i32>,
    bootstrap: String,
) -> Result<ExitCode, Error> {
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
