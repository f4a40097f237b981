//! The transaction coordinator's driver: the I/O around the sans-io
//! [`TransactionCoordinator`](crate::coordinator::TransactionCoordinator).
//! It stores each state the coordinator decides before installing it,
//! writes the COMMIT/ABORT markers of an ended transaction to every
//! partition, makes a committed transaction's offsets visible, reloads
//! stored transactions at start (finishing those that were preparing),
//! and runs the coordinator's timers (timed-out transactions aborted,
//! expired transactional ids removed) as the executor's
//! `transaction-coordinator` job.
//!
//! Every coordinator operation runs under the broker's transaction lock
//! (written), so decisions and their writes never interleave; a
//! transactional produce holds it for reading, so no batch of a
//! transaction lands after the marker that ended it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::logging::escape;
use super::Ctx;
use crate::catalog::CommittedOffset;
use crate::coordinator::{EndPlan, TransactionCoordinator, TransactionMetadata, TxnError};
use crate::failpoints::fail_point;
use crate::format::records::ControlType;
use crate::Engine;

/// How often [`step`] runs (the coordinator itself checks for timed-out
/// transactions every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
pub const TICK_INTERVAL: Duration = Duration::from_millis(200);

/// The catalog failed: a retriable refusal.
fn unavailable(e: crate::Error) -> TxnError {
    TxnError::StoreUnavailable {
        reason: e.to_string(),
    }
}

/// Store `m`, then install it.
pub(crate) fn store(
    engine: &Engine,
    txns: &TransactionCoordinator,
    m: TransactionMetadata,
) -> Result<(), TxnError> {
    engine
        .store_transaction(&m.to_stored())
        .map_err(unavailable)?;
    txns.commit(m);
    Ok(())
}

/// Write the plan's markers to every partition, make a commit's offsets
/// visible, then store and install the completed state. A partition that
/// no longer exists is skipped; any other failure leaves the transaction
/// preparing (the next tick tries again).
pub(crate) fn finish(
    engine: &Engine,
    txns: &TransactionCoordinator,
    plan: &EndPlan,
) -> Result<(), TxnError> {
    let kind = if plan.commit {
        ControlType::Commit
    } else {
        ControlType::Abort
    };
    for (topic, partition) in &plan.partitions {
        let Ok(p) = u32::try_from(*partition) else {
            continue;
        };
        match engine.append_marker(topic, p, plan.producer_id, plan.producer_epoch, kind, 0) {
            Ok(_) => {}
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                tracing::warn!(topic = %escape(topic), partition, transactional_id = %escape(&plan.transactional_id), "partition of a transaction is gone; no marker written");
            }
            Err(e) => {
                tracing::error!(topic = %escape(topic), partition, transactional_id = %escape(&plan.transactional_id), error = %escape(&e.to_string()), "cannot write a transaction marker; will retry");
                return Err(unavailable(e));
            }
        }
    }
    if plan.commit && !plan.offsets.is_empty() {
        let now = engine.now_ms();
        let mut groups: std::collections::BTreeMap<&str, Vec<CommittedOffset>> =
            std::collections::BTreeMap::new();
        for o in &plan.offsets {
            groups.entry(&o.group).or_default().push(CommittedOffset {
                topic: o.topic.clone(),
                partition: o.partition.max(0) as u32,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                commit_ms: now,
            });
        }
        for (group, rows) in groups {
            engine.commit_offsets(group, &rows).map_err(unavailable)?;
        }
    }
    if let Some(done) = txns.complete(plan, engine.now_ms()) {
        store(engine, txns, done)?;
    }
    Ok(())
}

/// Store a Prepare* state, then write its markers and complete it.
pub(crate) fn end(
    engine: &Engine,
    txns: &TransactionCoordinator,
    prepared: TransactionMetadata,
    plan: &EndPlan,
) -> Result<(), TxnError> {
    store(engine, txns, prepared)?;
    // Killed here, a restart finds the Prepare* row and completes it.
    fail_point!("txn.end.after_prepare");
    finish(engine, txns, plan)
}

/// Reload the stored transactions (before the broker serves anyone) and
/// finish those that were preparing when the broker stopped.
pub(crate) async fn load(ctx: &Arc<Ctx>) -> crate::Result<()> {
    let _serial = ctx.txn_lock.write().await;
    let txns = Arc::clone(&ctx.txns);
    ctx.blocking(move |engine| {
        let stored = engine.stored_transactions()?;
        if !stored.is_empty() {
            tracing::info!(transactions = stored.len(), "reloading stored transactions");
        }
        for plan in txns.load(stored) {
            if let Err(e) = finish(engine, &txns, &plan) {
                tracing::error!(transactional_id = %escape(&plan.transactional_id), error = %escape(&e.to_string()), "cannot complete a prepared transaction at start; will retry");
            }
        }
        Ok(())
    })
    .await?
}

/// One tick at `now_ms`: transactions still preparing are finished,
/// timed-out ones aborted (epoch bumped), expired ids deleted.
pub(crate) async fn step(ctx: &Arc<Ctx>, now_ms: i64) {
    let _serial = ctx.txn_lock.write().await;
    let txns = Arc::clone(&ctx.txns);
    let done = ctx
        .blocking(move |engine| {
            for plan in txns.preparing() {
                if let Err(e) = finish(engine, &txns, &plan) {
                    tracing::error!(transactional_id = %escape(&plan.transactional_id), error = %escape(&e.to_string()), "cannot complete a prepared transaction; will retry");
                }
            }
            let work = txns.tick(now_ms);
            for (prepared, plan) in work.timed_out {
                tracing::info!(transactional_id = %escape(&plan.transactional_id), producer_id = plan.producer_id, "aborting a transaction open past its transaction.timeout.ms");
                if let Err(e) = end(engine, &txns, prepared, &plan) {
                    tracing::error!(transactional_id = %escape(&plan.transactional_id), error = %escape(&e.to_string()), "cannot abort a timed-out transaction; will retry");
                }
            }
            for id in work.expired {
                match engine.delete_transaction(&id) {
                    Ok(_) => tracing::info!(transactional_id = %escape(&id), "transactional id expired"),
                    Err(e) => tracing::error!(transactional_id = %escape(&id), error = %escape(&e.to_string()), "cannot delete an expired transactional id"),
                }
            }
        })
        .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "transaction coordinator tick failed");
    }
}

/// Test hook: run one transaction coordinator [`step`] now, at the engine
/// clock's now, with the timeout check due (tests move a `ManualClock`
/// and then call [`TxnTicks::run_now`] instead of sleeping).
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct TxnTicks(Arc<Mutex<Option<Weak<Ctx>>>>);

impl TxnTicks {
    pub(crate) fn install(&self, ctx: &Arc<Ctx>) {
        *crate::lock(&self.0) = Some(Arc::downgrade(ctx));
    }

    /// One tick; nothing when no broker is serving.
    pub async fn run_now(&self) {
        let ctx = crate::lock(&self.0).as_ref().and_then(Weak::upgrade);
        if let Some(ctx) = ctx {
            ctx.txns.reset_abort_check();
            step(&ctx, ctx.engine.now_ms()).await;
        }
    }
}

impl std::fmt::Debug for TxnTicks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TxnTicks")
    }
}
