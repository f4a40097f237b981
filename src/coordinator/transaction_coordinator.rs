//! [`TransactionCoordinator`]: every transactional id's state and the
//! decisions about it (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager`), sans-io.
//!
//! Each request is decided here against the current state and returns the
//! new [`TransactionMetadata`] to make durable; the driver stores it in the
//! catalog and only then installs it with [`TransactionCoordinator::commit`]
//! (Kafka's pending transition, completed when its log append is). The
//! driver serialises requests for all transactional ids, so decisions never
//! interleave with an unfinished one. Markers are the driver's to write: an
//! EndTxn (or an abort the coordinator decides) hands out an [`EndPlan`].

use std::collections::HashMap;
use std::sync::Mutex;

use crate::catalog::{PendingTxnOffset, StoredTransaction};
use crate::sync::lock;

use super::transaction_metadata::TransactionMetadata;
use super::transaction_state::TransactionState;
use super::txn_error::TxnError;

/// The transaction coordinator's broker settings (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionSettings {
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms`
    /// a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long a transactional id with
    /// no transaction open is kept after its last state change.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`:
    /// between checks for transactions open longer than their timeout.
    pub abort_cleanup_interval_ms: i64,
}

impl Default for TransactionSettings {
    fn default() -> Self {
        TransactionSettings {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3_600_000,
            abort_cleanup_interval_ms: 10_000,
        }
    }
}

/// The markers an ended transaction needs: one COMMIT or ABORT marker of
/// the producer id and epoch in every partition, then (commit only) the
/// pending offsets made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndPlan {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
    pub offsets: Vec<PendingTxnOffset>,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Store this state, install it and answer its producer id and epoch.
    Ready(TransactionMetadata),
    /// A transaction is open: store this PrepareAbort state (the epoch
    /// bumped, fencing the old producer), write the plan's markers,
    /// complete it, then ask again.
    AbortFirst(TransactionMetadata, EndPlan),
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Store this Prepare* state, install it, write the markers, complete.
    Prepared(Box<(TransactionMetadata, EndPlan)>),
    /// A retry of an EndTxn that already completed: answer success.
    AlreadyDone,
}

/// What a tick found to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TxnTickWork {
    /// Open transactions past their timeout: store each PrepareAbort state
    /// (epoch bumped), write its markers, complete it.
    pub timed_out: Vec<(TransactionMetadata, EndPlan)>,
    /// Transactional ids that expired (now Dead, forgotten here): delete
    /// their rows.
    pub expired: Vec<String>,
}

/// Every transactional id's state.
#[derive(Debug)]
pub struct TransactionCoordinator {
    settings: TransactionSettings,
    txns: Mutex<HashMap<String, TransactionMetadata>>,
    /// When the last timeout check ran.
    last_abort_check_ms: Mutex<i64>,
}

/// The epoch after `epoch` (it stays at the maximum rather than wrap).
fn bump(epoch: i16) -> i16 {
    epoch.checked_add(1).unwrap_or(epoch)
}

impl TransactionCoordinator {
    pub fn new(settings: TransactionSettings) -> Self {
        TransactionCoordinator {
            settings,
            txns: Mutex::new(HashMap::new()),
            last_abort_check_ms: Mutex::new(i64::MIN),
        }
    }

    /// Reload stored rows; returns the plans of transactions that were
    /// preparing (their markers are written again and they complete, as
    /// Kafka's coordinator does when it loads its partition). A row whose
    /// state this build does not know is skipped with a warning.
    pub fn load(&self, stored: Vec<StoredTransaction>) -> Vec<EndPlan> {
        let mut txns = lock(&self.txns);
        let mut plans = Vec::new();
        for row in stored {
            let id = row.transactional_id.clone();
            let Some(m) = TransactionMetadata::from_stored(row) else {
                tracing::warn!(transactional_id = %crate::text::escape(&id), "skipping a stored transaction in an unknown state");
                continue;
            };
            if m.state.is_preparing() {
                plans.push(plan(&m, m.state == TransactionState::PrepareCommit));
            }
            txns.insert(id, m);
        }
        plans
    }

    /// Install a state once it is durable (or forget a Dead id).
    pub fn commit(&self, m: TransactionMetadata) {
        let mut txns = lock(&self.txns);
        if m.state == TransactionState::Dead {
            txns.remove(&m.transactional_id);
        } else {
            txns.insert(m.transactional_id.clone(), m);
        }
    }

    /// A transactional id's current state.
    pub fn describe(&self, transactional_id: &str) -> Option<TransactionMetadata> {
        lock(&self.txns).get(transactional_id).cloned()
    }

    /// Every transactional id's state, by id.
    pub fn list(&self) -> Vec<TransactionMetadata> {
        let mut all: Vec<_> = lock(&self.txns).values().cloned().collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }

    /// InitProducerId with a transactional id (Kafka's
    /// `handleInitProducerId`): a new id gets a fresh producer id
    /// (`allocate`) at epoch 0; a known one gets its epoch bumped, which
    /// fences every older instance. An open transaction is aborted first.
    /// With `expected` (KIP-360: the producer's current id and epoch), a
    /// producer that is no longer the current one is fenced.
    pub fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
        allocate: impl FnOnce() -> Result<i64, TxnError>,
    ) -> Result<InitOutcome, TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidTransactionalId);
        }
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout {
                timeout_ms,
                max_ms: self.settings.max_timeout_ms,
            });
        }
        let current = self.describe(transactional_id);
        let Some(m) = current.filter(|m| m.state != TransactionState::Dead) else {
            let producer_id = allocate()?;
            return Ok(InitOutcome::Ready(TransactionMetadata::new(
                transactional_id,
                producer_id,
                timeout_ms,
                now_ms,
            )));
        };
        if let Some((producer_id, epoch)) = expected.filter(|(p, _)| *p >= 0) {
            if producer_id != m.producer_id || epoch != m.producer_epoch {
                return Err(TxnError::ProducerFenced {
                    producer_id,
                    current: m.producer_epoch,
                    got: epoch,
                });
            }
        }
        if m.state.is_preparing() {
            return Err(TxnError::ConcurrentTransactions {
                transactional_id: transactional_id.to_string(),
            });
        }
        if m.state == TransactionState::Ongoing {
            let (prepared, plan) = prepare_end(&m, false, true, now_ms)?;
            return Ok(InitOutcome::AbortFirst(prepared, plan));
        }
        let mut next = m.clone();
        if m.producer_epoch == i16::MAX - 1 || m.producer_epoch == i16::MAX {
            // The epoch is exhausted: a new producer id (Kafka does the same).
            next.producer_id = allocate()?;
            next.producer_epoch = 0;
        } else {
            next.producer_epoch = bump(m.producer_epoch);
        }
        next.timeout_ms = timeout_ms;
        next.txn_start_ms = -1;
        next.partitions.clear();
        next.groups.clear();
        next.pending_offsets.clear();
        next.transition(TransactionState::Empty, now_ms, "InitProducerId")?;
        Ok(InitOutcome::Ready(next))
    }

    /// The id's state, checked for a request of the producer
    /// `(producer_id, epoch)` (Kafka's checks, in its order).
    fn checked(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<TransactionMetadata, TxnError> {
        let m = self
            .describe(transactional_id)
            .filter(|m| m.state != TransactionState::Dead)
            .ok_or_else(|| TxnError::InvalidProducerIdMapping {
                transactional_id: transactional_id.to_string(),
                producer_id,
            })?;
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping {
                transactional_id: transactional_id.to_string(),
                producer_id,
            });
        }
        if m.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced {
                producer_id,
                current: m.producer_epoch,
                got: epoch,
            });
        }
        if m.state.is_preparing() {
            return Err(TxnError::ConcurrentTransactions {
                transactional_id: transactional_id.to_string(),
            });
        }
        Ok(m)
    }

    /// The state with a transaction open (begun now if none was).
    fn ongoing(
        m: &TransactionMetadata,
        now_ms: i64,
        operation: &'static str,
    ) -> Result<TransactionMetadata, TxnError> {
        let mut next = m.clone();
        if m.state != TransactionState::Ongoing {
            next.txn_start_ms = now_ms;
            next.partitions.clear();
            next.groups.clear();
            next.pending_offsets.clear();
        }
        next.transition(TransactionState::Ongoing, now_ms, operation)?;
        Ok(next)
    }

    /// AddPartitionsToTxn: the partitions join the transaction (opening
    /// it). `None`: all were in it already, nothing to store.
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<TransactionMetadata>, TxnError> {
        let m = self.checked(transactional_id, producer_id, epoch)?;
        if m.state == TransactionState::Ongoing
            && partitions.iter().all(|p| m.partitions.contains(p))
        {
            return Ok(None);
        }
        let mut next = Self::ongoing(&m, now_ms, "AddPartitionsToTxn")?;
        next.partitions.extend(partitions.iter().cloned());
        Ok(Some(next))
    }

    /// AddOffsetsToTxn: the group's offsets may be sent in the transaction
    /// (Kafka adds the group's `__consumer_offsets` partition).
    pub fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        now_ms: i64,
    ) -> Result<Option<TransactionMetadata>, TxnError> {
        let m = self.checked(transactional_id, producer_id, epoch)?;
        if m.state == TransactionState::Ongoing && m.groups.contains(group) {
            return Ok(None);
        }
        let mut next = Self::ongoing(&m, now_ms, "AddOffsetsToTxn")?;
        next.groups.insert(group.to_string());
        Ok(Some(next))
    }

    /// TxnOffsetCommit: the offsets wait in the transaction, replacing
    /// earlier ones of the same group and partition; the group must have
    /// been added (AddOffsetsToTxn), else INVALID_TXN_STATE.
    pub fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<PendingTxnOffset>,
        now_ms: i64,
    ) -> Result<TransactionMetadata, TxnError> {
        let m = self.checked(transactional_id, producer_id, epoch)?;
        if m.state != TransactionState::Ongoing || !m.groups.contains(group) {
            return Err(TxnError::InvalidTxnState {
                transactional_id: transactional_id.to_string(),
                state: m.state.name(),
                operation: "TxnOffsetCommit for a group not added with AddOffsetsToTxn",
            });
        }
        let mut next = m;
        for o in offsets {
            next.pending_offsets.retain(|p| {
                !(p.group == o.group && p.topic == o.topic && p.partition == o.partition)
            });
            next.pending_offsets.push(o);
        }
        next.updated_ms = now_ms;
        Ok(next)
    }

    /// EndTxn: prepare the commit or abort of the open transaction.
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndOutcome, TxnError> {
        let m = self.checked(transactional_id, producer_id, epoch)?;
        match (m.state, commit) {
            (TransactionState::CompleteCommit, true) | (TransactionState::CompleteAbort, false) => {
                Ok(EndOutcome::AlreadyDone)
            }
            (TransactionState::Ongoing, _) => {
                let (prepared, plan) = prepare_end(&m, commit, false, now_ms)?;
                Ok(EndOutcome::Prepared(Box::new((prepared, plan))))
            }
            (state, _) => Err(TxnError::InvalidTxnState {
                transactional_id: transactional_id.to_string(),
                state: state.name(),
                operation: if commit {
                    "EndTxn(commit)"
                } else {
                    "EndTxn(abort)"
                },
            }),
        }
    }

    /// The completed state after `plan`'s markers are written (`None`: the
    /// id is no longer preparing that transaction).
    pub fn complete(&self, plan: &EndPlan, now_ms: i64) -> Option<TransactionMetadata> {
        let m = self.describe(&plan.transactional_id)?;
        let to = if plan.commit {
            TransactionState::CompleteCommit
        } else {
            TransactionState::CompleteAbort
        };
        let mut next = m;
        next.transition(to, now_ms, "complete").ok()?;
        next.txn_start_ms = -1;
        next.partitions.clear();
        next.groups.clear();
        next.pending_offsets.clear();
        Some(next)
    }

    /// Whether a transactional produce of `(producer_id, epoch)` to
    /// `topic`-`partition` belongs to the open transaction (KIP-890's
    /// verification): the partition must have been added.
    pub fn check_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let m = self
            .describe(transactional_id)
            .filter(|m| m.producer_id == producer_id)
            .ok_or_else(|| TxnError::InvalidProducerIdMapping {
                transactional_id: transactional_id.to_string(),
                producer_id,
            })?;
        if epoch < m.producer_epoch {
            return Err(TxnError::InvalidProducerEpoch {
                producer_id,
                current: m.producer_epoch,
                got: epoch,
            });
        }
        if epoch != m.producer_epoch
            || m.state != TransactionState::Ongoing
            || !m.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(TxnError::InvalidTxnState {
                transactional_id: transactional_id.to_string(),
                state: m.state.name(),
                operation: "Produce to a partition not added to the transaction",
            });
        }
        Ok(())
    }

    /// Timers at `now_ms`: open transactions past their
    /// `transaction.timeout.ms` are aborted with the epoch bumped (checked
    /// every `transaction.abort.timed.out.transaction.cleanup.interval.ms`),
    /// and ids with no open transaction unchanged for
    /// `transactional.id.expiration.ms` expire (forgotten here; the driver
    /// deletes their rows).
    pub fn tick(&self, now_ms: i64) -> TxnTickWork {
        {
            let mut last = lock(&self.last_abort_check_ms);
            if now_ms.saturating_sub(*last) < self.settings.abort_cleanup_interval_ms {
                return TxnTickWork::default();
            }
            *last = now_ms;
        }
        let mut work = TxnTickWork::default();
        let mut txns = lock(&self.txns);
        for m in txns.values() {
            if m.state == TransactionState::Ongoing
                && now_ms.saturating_sub(m.txn_start_ms) >= i64::from(m.timeout_ms)
            {
                if let Ok(prepared) = prepare_end(m, false, true, now_ms) {
                    work.timed_out.push(prepared);
                }
            }
        }
        let expiration = self.settings.id_expiration_ms;
        txns.retain(|id, m| {
            let idle = matches!(
                m.state,
                TransactionState::Empty
                    | TransactionState::CompleteCommit
                    | TransactionState::CompleteAbort
            ) && now_ms.saturating_sub(m.updated_ms) >= expiration;
            if idle {
                work.expired.push(id.clone());
            }
            !idle
        });
        work.expired.sort();
        work
    }

    /// Plans of transactions still preparing (their markers could not all
    /// be written): the driver tries them again.
    pub fn preparing(&self) -> Vec<EndPlan> {
        let txns = lock(&self.txns);
        let mut plans: Vec<EndPlan> = txns
            .values()
            .filter(|m| m.state.is_preparing())
            .map(|m| plan(m, m.state == TransactionState::PrepareCommit))
            .collect();
        plans.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        plans
    }

    /// Test hook: forget when the timeout check last ran, so the next
    /// tick checks.
    pub fn reset_abort_check(&self) {
        *lock(&self.last_abort_check_ms) = i64::MIN;
    }
}

/// The Prepare* state and plan that end `m`'s open transaction; with
/// `fence`, the epoch is bumped first (an abort the coordinator decides:
/// the producer's later requests are fenced).
fn prepare_end(
    m: &TransactionMetadata,
    commit: bool,
    fence: bool,
    now_ms: i64,
) -> Result<(TransactionMetadata, EndPlan), TxnError> {
    let mut next = m.clone();
    if fence {
        next.producer_epoch = bump(m.producer_epoch);
    }
    let to = if commit {
        TransactionState::PrepareCommit
    } else {
        TransactionState::PrepareAbort
    };
    next.transition(to, now_ms, if commit { "EndTxn(commit)" } else { "abort" })?;
    let plan = plan(&next, commit);
    Ok((next, plan))
}

fn plan(m: &TransactionMetadata, commit: bool) -> EndPlan {
    EndPlan {
        transactional_id: m.transactional_id.clone(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit,
        partitions: m.partitions.iter().cloned().collect(),
        offsets: if commit {
            m.pending_offsets.clone()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator() -> TransactionCoordinator {
        TransactionCoordinator::new(TransactionSettings {
            max_timeout_ms: 60_000,
            id_expiration_ms: 100_000,
            abort_cleanup_interval_ms: 1_000,
        })
    }

    /// Run InitProducerId to completion as the driver does (store =
    /// commit here; an abort first completes at once).
    fn init(
        c: &TransactionCoordinator,
        id: &str,
        now: i64,
        next_pid: i64,
    ) -> (i64, i16, Option<EndPlan>) {
        let mut aborted = None;
        loop {
            match c
                .init_producer_id(id, 10_000, None, now, || Ok(next_pid))
                .unwrap()
            {
                InitOutcome::Ready(m) => {
                    let answer = (m.producer_id, m.producer_epoch);
                    c.commit(m);
                    return (answer.0, answer.1, aborted);
                }
                InitOutcome::AbortFirst(prepared, plan) => {
                    c.commit(prepared);
                    c.commit(c.complete(&plan, now).unwrap());
                    aborted = Some(plan);
                }
            }
        }
    }

    fn parts(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn offset(group: &str, offset: i64) -> PendingTxnOffset {
        PendingTxnOffset {
            group: group.into(),
            topic: "in".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    #[test]
    fn a_commit_goes_through_prepare_and_carries_the_offsets() {
        let c = coordinator();
        let (pid, epoch, _) = init(&c, "t", 0, 7);
        assert_eq!((pid, epoch), (7, 0));
        assert_eq!(
            c.check_produce("t", pid, epoch, "a", 0),
            Err(TxnError::InvalidTxnState {
                transactional_id: "t".into(),
                state: "Empty",
                operation: "Produce to a partition not added to the transaction",
            })
        );
        let m = c
            .add_partitions("t", pid, epoch, &parts(&[("a", 0), ("b", 1)]), 5)
            .unwrap()
            .unwrap();
        assert_eq!((m.state, m.txn_start_ms), (TransactionState::Ongoing, 5));
        c.commit(m);
        assert_eq!(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 6)
                .unwrap(),
            None,
            "already in"
        );
        c.check_produce("t", pid, epoch, "b", 1).unwrap();
        assert!(
            matches!(
                c.txn_offset_commit("t", pid, epoch, "g", vec![offset("g", 1)], 7),
                Err(TxnError::InvalidTxnState { .. })
            ),
            "the group was not added"
        );
        c.commit(c.add_offsets("t", pid, epoch, "g", 7).unwrap().unwrap());
        c.commit(
            c.txn_offset_commit("t", pid, epoch, "g", vec![offset("g", 1)], 8)
                .unwrap(),
        );
        c.commit(
            c.txn_offset_commit("t", pid, epoch, "g", vec![offset("g", 3)], 9)
                .unwrap(),
        );
        let EndOutcome::Prepared(prepared) = c.end_txn("t", pid, epoch, true, 10).unwrap() else {
            panic!("an open transaction is prepared");
        };
        let (prepared, plan) = *prepared;
        assert_eq!(prepared.state, TransactionState::PrepareCommit);
        assert_eq!(plan.partitions, parts(&[("a", 0), ("b", 1)]));
        assert_eq!(
            plan.offsets,
            vec![offset("g", 3)],
            "the last offset per partition"
        );
        c.commit(prepared);
        assert!(matches!(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 11),
            Err(TxnError::ConcurrentTransactions { .. })
        ));
        let done = c.complete(&plan, 12).unwrap();
        assert_eq!(done.state, TransactionState::CompleteCommit);
        assert!(done.partitions.is_empty() && done.pending_offsets.is_empty());
        c.commit(done);
        assert_eq!(
            c.end_txn("t", pid, epoch, true, 13).unwrap(),
            EndOutcome::AlreadyDone
        );
        assert!(matches!(
            c.end_txn("t", pid, epoch, false, 13),
            Err(TxnError::InvalidTxnState { .. })
        ));
    }

    #[test]
    fn a_new_instance_fences_the_old_one_and_aborts_its_transaction() {
        let c = coordinator();
        let (pid, epoch, _) = init(&c, "t", 0, 7);
        c.commit(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 1)
                .unwrap()
                .unwrap(),
        );
        let (pid2, epoch2, aborted) = init(&c, "t", 2, 99);
        assert_eq!(pid2, pid, "the same producer id");
        assert_eq!(epoch2, epoch + 2, "bumped by the abort, then by the init");
        let plan = aborted.expect("the open transaction was aborted");
        assert_eq!((plan.commit, plan.producer_epoch), (false, epoch + 1));
        assert_eq!(plan.partitions, parts(&[("a", 0)]));
        assert!(matches!(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 3),
            Err(TxnError::ProducerFenced { .. })
        ));
        assert!(matches!(
            c.check_produce("t", pid, epoch, "a", 0),
            Err(TxnError::InvalidProducerEpoch { .. })
        ));
        assert!(
            matches!(
                c.init_producer_id("t", 10_000, Some((pid, epoch)), 4, || Ok(1)),
                Err(TxnError::ProducerFenced { .. })
            ),
            "KIP-360: a stale expected epoch is fenced"
        );
        assert!(matches!(
            c.init_producer_id("t", 60_001, None, 4, || Ok(1)),
            Err(TxnError::InvalidTransactionTimeout { .. })
        ));
        assert!(matches!(
            c.add_partitions("t", 12345, epoch2, &parts(&[("a", 0)]), 3),
            Err(TxnError::InvalidProducerIdMapping { .. })
        ));
    }

    #[test]
    fn ticks_abort_timed_out_transactions_and_expire_idle_ids() {
        let c = coordinator();
        let (pid, epoch, _) = init(&c, "open", 0, 1);
        init(&c, "idle", 0, 2);
        c.commit(
            c.add_partitions("open", pid, epoch, &parts(&[("a", 0)]), 1_000)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(
            c.tick(10_999),
            TxnTickWork {
                timed_out: vec![],
                expired: vec![]
            }
        );
        assert!(
            c.tick(11_000).timed_out.is_empty(),
            "checked only every cleanup interval"
        );
        let work = c.tick(12_000);
        assert_eq!(work.timed_out.len(), 1);
        let (prepared, plan) = &work.timed_out[0];
        assert_eq!(
            (prepared.state, prepared.producer_epoch),
            (TransactionState::PrepareAbort, epoch + 1)
        );
        assert!(!plan.commit);
        c.commit(prepared.clone());
        assert_eq!(c.preparing(), vec![plan.clone()], "retried until completed");
        c.commit(c.complete(plan, 12_000).unwrap());
        assert!(c.preparing().is_empty());
        let work = c.tick(100_000);
        assert_eq!(work.expired, vec!["idle".to_string()]);
        assert!(c.describe("idle").is_none() && c.describe("open").is_some());
    }

    #[test]
    fn load_returns_the_transactions_left_preparing() {
        let c = coordinator();
        let (pid, epoch, _) = init(&c, "t", 0, 1);
        c.commit(
            c.add_partitions("t", pid, epoch, &parts(&[("a", 0)]), 1)
                .unwrap()
                .unwrap(),
        );
        let EndOutcome::Prepared(p) = c.end_txn("t", pid, epoch, true, 2).unwrap() else {
            panic!()
        };
        let stored = vec![p.0.to_stored()];
        let reloaded = coordinator();
        assert_eq!(reloaded.load(stored), vec![p.1.clone()]);
        assert_eq!(
            reloaded.describe("t").unwrap().state,
            TransactionState::PrepareCommit
        );
    }
}
