//! The group coordinator's driver: the I/O around the sans-io
//! [`GroupCoordinator`](crate::coordinator::GroupCoordinator). It reloads
//! stored groups at start, ticks the coordinator with the engine clock,
//! writes the group records the coordinator hands out, and runs the
//! offset expiry rounds it says are due (KIP-211).
//!
//! [`step`] is what one tick does; the broker registers it with the
//! engine's task executor (`group-coordinator`, every [`TICK_INTERVAL`]),
//! and the [`GroupTicks`] test hook runs it on demand.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::logging::escape;
use super::Ctx;
use crate::coordinator::GroupRecord;
use crate::error::Result;

/// How often [`drive`] ticks the coordinator.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// Reload the groups the catalog stores into the coordinator (before the
/// broker serves anyone).
pub(crate) async fn load(ctx: &Arc<Ctx>) -> Result<()> {
    let stored = ctx.blocking(|engine| engine.stored_groups()).await??;
    if !stored.is_empty() {
        tracing::info!(groups = stored.len(), "reloading stored groups");
    }
    ctx.groups.load(stored, ctx.engine.now_ms());
    Ok(())
}

/// One tick at `now_ms`: the coordinator's timers, then its records, then
/// an offset expiry round if one is due (stopping early on `shutdown`).
pub(crate) async fn step(ctx: &Arc<Ctx>, now_ms: i64, shutdown: Option<&watch::Receiver<bool>>) {
    let outcome = ctx.groups.tick(now_ms);
    write_records(ctx).await;
    if let Some(cutoff) = outcome.expire_offsets_before {
        expire_offsets(ctx, cutoff, shutdown).await;
    }
}

/// Write what the coordinator has not persisted yet, in the order taken.
/// A record that cannot be written is logged and handed back to the
/// coordinator, to be taken again by the next write (the next tick at the
/// latest).
pub(crate) async fn write_records(ctx: &Arc<Ctx>) {
    let _in_order = ctx.groups.lock_records().await;
    let records = ctx.groups.take_records();
    if records.is_empty() {
        return;
    }
    let written = ctx
        .blocking(move |engine| {
            for (i, r) in records.iter().enumerate() {
                let done = match r {
                    GroupRecord::Store(g) => engine.store_group(g),
                    GroupRecord::Delete(id) => engine.delete_stored_group(id).map(|_| ()),
                };
                if let Err(e) = done {
                    return Err((records[i..].to_vec(), e));
                }
            }
            Ok(())
        })
        .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err((unwritten, e))) => {
            tracing::error!(error = %escape(&e.to_string()), records = unwritten.len(), "cannot store group metadata; will retry");
            ctx.groups.records_failed(&unwritten);
        }
        Err(e) => tracing::error!(error = %e, "cannot store group metadata"),
    }
}

/// One expiry round: one catalog transaction per group with something to
/// expire, under that group's offset lock (so no commit interleaves).
/// Kafka ≥ 2.1's rule: a group with members, or in any state but Empty,
/// keeps every offset; an Empty group's offsets expire
/// `offsets.retention.minutes` after it lost its last member; offsets of a
/// group that never had members here (standalone commits of `assign()`
/// consumers) expire that long after their own commit.
async fn expire_offsets(ctx: &Arc<Ctx>, cutoff: i64, shutdown: Option<&watch::Receiver<bool>>) {
    let names = match ctx
        .blocking(|engine| engine.groups_with_offsets())
        .await
        .and_then(|r| r)
    {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "offset expiry: cannot list groups with committed offsets");
            return;
        }
    };
    for name in names {
        if shutdown.is_some_and(|s| *s.borrow()) {
            return;
        }
        let guard = ctx.groups.lock_offsets(&name).await;
        match ctx.groups.offsets_age_from(&name) {
            Some(from) if from <= cutoff => {}
            _ => continue,
        }
        let n = name.clone();
        match ctx
            .blocking(move |engine| {
                let expired = engine.expire_committed_offsets(&n, cutoff);
                // The last offset of an emptied group went: so does its
                // stored row (what remained of it was when it emptied).
                if matches!(expired, Ok(c) if c > 0)
                    && engine.committed_offsets(&n).is_ok_and(|o| o.is_empty())
                {
                    if let Err(e) = engine.delete_stored_group(&n) {
                        tracing::warn!(group = %escape(&n), error = %escape(&e.to_string()), "cannot delete an expired group's stored row");
                    }
                }
                drop(guard);
                expired
            })
            .await
            .and_then(|r| r)
        {
            Ok(0) => {}
            Ok(count) => tracing::info!(group = %escape(&name), count, "committed offsets expired"),
            Err(e) => tracing::error!(group = %escape(&name), error = %escape(&e.to_string()), "cannot expire committed offsets"),
        }
    }
}

/// Test hook: run one coordinator [`step`] now, at the engine clock's now
/// (tests move a `ManualClock` and then call [`GroupTicks::run_now`]
/// instead of sleeping through timeouts). Empty until a broker serving
/// with these settings has started.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct GroupTicks(Arc<Mutex<Option<Weak<Ctx>>>>);

impl GroupTicks {
    pub(crate) fn install(&self, ctx: &Arc<Ctx>) {
        *crate::lock(&self.0) = Some(Arc::downgrade(ctx));
    }

    /// One tick, its records written and a due expiry round done; nothing
    /// when no broker is serving.
    pub async fn run_now(&self) {
        let ctx = crate::lock(&self.0).as_ref().and_then(Weak::upgrade);
        if let Some(ctx) = ctx {
            step(&ctx, ctx.engine.now_ms(), None).await;
        }
    }
}

impl std::fmt::Debug for GroupTicks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupTicks")
    }
}
