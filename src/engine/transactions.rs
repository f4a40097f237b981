//! The engine methods the transaction coordinator's driver and the fetch
//! path use: stored transaction state (forwarded to the catalog, one
//! catalog transaction each), transaction markers appended to a
//! partition, and a partition's last stable offset and aborted
//! transactions for read_committed reads.

use crate::catalog::StoredTransaction;
use crate::error::Result;
use crate::format::producer_snapshot::AbortedTxn;
use crate::format::records::ControlType;
use crate::sync::lock;

use super::Engine;

impl Engine {
    /// Store a transactional id's coordinator state (replacing it).
    pub fn store_transaction(&self, txn: &StoredTransaction) -> Result<()> {
        lock(self.catalog()).store_transaction(txn)
    }

    /// Remove a transactional id's stored state; whether there was any.
    pub fn delete_transaction(&self, transactional_id: &str) -> Result<bool> {
        lock(self.catalog()).delete_transaction(transactional_id)
    }

    /// Every stored transactional id (what a starting coordinator reloads).
    pub fn stored_transactions(&self) -> Result<Vec<StoredTransaction>> {
        lock(self.catalog()).stored_transactions()
    }

    /// Append a COMMIT or ABORT marker of `producer_id` at `epoch` to a
    /// partition; returns its offset. Wakes long-polling fetches: the last
    /// stable offset may have moved.
    pub fn append_marker(
        &self,
        topic: &str,
        partition: u32,
        producer_id: i64,
        epoch: i16,
        kind: ControlType,
        coordinator_epoch: i32,
    ) -> Result<i64> {
        let offset = self.with_log(topic, partition, |log| {
            log.append_marker(producer_id, epoch, kind, coordinator_epoch)
        })?;
        if self.appends.receiver_count() > 0 {
            self.appends.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(offset)
    }

    /// A partition's last stable offset.
    pub fn last_stable_offset(&self, topic: &str, partition: u32) -> Result<i64> {
        self.with_log(topic, partition, |log| Ok(log.last_stable_offset()))
    }

    /// Start loading, in the background, the tiered `.txnindex`es a
    /// read_committed fetch of remote read `read` will need for its
    /// aborted transactions ([`Engine::aborted_txns`]: those of its segment
    /// and every later tiered one, when no entry completes the search
    /// first): a partition's first read then finds them cached instead
    /// of waiting a GET round after its records (it held the whole
    /// response). Only when the segment read from has none cached yet;
    /// loads running already are joined, not repeated. Takes the
    /// partition's lock: call it off an async worker.
    pub fn warm_aborted_txns(&self, read: &crate::RemoteRead) {
        let Some((fetcher, handle)) = self.fetcher.as_ref() else {
            return;
        };
        let Ok((_, remote)) = read.partition().remote_below_local() else {
            return;
        };
        let from = read.offset();
        // Loaded already when the first segment from there with an index
        // to load (not recorded empty) has its entries cached: later ones
        // were loaded with it, or by the read before.
        match remote
            .iter()
            .find(|s| s.last_offset >= from && !s.txn_index_known_empty())
        {
            Some(seg) if !fetcher.txn_index_cached(seg) => {}
            _ => return,
        }
        let fetcher = fetcher.clone();
        handle.spawn(async move {
            if let Err(e) = fetcher.aborted_txns(&remote, from, i64::MAX).await {
                tracing::debug!(error = %e, "loading .txnindex objects ahead failed");
            }
        });
    }

    /// The aborted transactions overlapping `[from, upper)` of a partition
    /// (Kafka's `collectAbortedTransactions`), from the segments'
    /// `.txnindex`es: the tiered segments' objects (through the remote
    /// read path's cache) when `from` is below the local log start, then
    /// the local segments' files, until an entry's last stable offset
    /// reaches `upper`. Blocks on the remote tier: call it off an async
    /// worker.
    pub fn aborted_txns(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        upper: i64,
    ) -> Result<Vec<AbortedTxn>> {
        let p = self.logs.partition(topic, partition)?;
        let mut found = Vec::new();
        if let Some((fetcher, handle)) = self.fetcher.as_ref() {
            let (local_start, remote) = p.remote_below_local()?;
            if from < local_start && !remote.is_empty() {
                let fetcher = fetcher.clone();
                let (part, complete) = crate::unified_log::run_on(handle, async move {
                    fetcher.aborted_txns(&remote, from, upper).await
                })?;
                found = part;
                if complete {
                    return Ok(found);
                }
            }
        }
        let (local, _) = p.with_log(|log| Ok(log.aborted_txns(from, upper)))?;
        for a in local {
            // A segment both tiered and still local lists its markers once.
            if found.last().is_none_or(|l| l.last_offset < a.last_offset) {
                found.push(a);
            }
        }
        Ok(found)
    }
}
