//! tierlog patch: a per-thread budget of array elements a decode may make.
//!
//! A request's arrays nest (Produce: topics, then each topic's partitions),
//! and every element decodes into a struct many times larger than the bytes
//! it took on the wire. [`with_element_budget`] runs a decode with at most
//! `limit` array elements in all, at every nesting level together: the
//! `Array` and `CompactArray` decoders take one element from the budget
//! before decoding each, reserve no more capacity than is left of it, and
//! fail once it is spent. Outside [`with_element_budget`] nothing is
//! counted (the crate behaves as released).

use std::cell::Cell;

use anyhow::{bail, Result};

thread_local! {
    /// Elements the running decode may still make; `None`: not counted.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    /// Did the running decode fail for want of budget?
    static SPENT: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a decode on this thread) with at most `limit` array elements
/// decoded in all. Returns what `f` returned and whether it ran out of
/// budget (an `Err` from `f` is then that).
pub fn with_element_budget<R>(limit: usize, f: impl FnOnce() -> R) -> (R, bool) {
    struct Restore(Option<usize>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LEFT.with(|l| l.set(self.0));
            SPENT.with(|s| s.set(self.1));
        }
    }
    let _restore = Restore(
        LEFT.with(|l| l.replace(Some(limit))),
        SPENT.with(|s| s.replace(false)),
    );
    let r = f();
    (r, SPENT.with(|s| s.get()))
}

/// At most how many of `n` declared elements to reserve room for.
pub(crate) fn capacity(n: usize) -> usize {
    LEFT.with(|l| l.get()).map_or(n, |left| n.min(left))
}

/// Take one element from the budget (if one is running).
pub(crate) fn take_one() -> Result<()> {
    LEFT.with(|l| match l.get() {
        None => Ok(()),
        Some(0) => {
            SPENT.with(|s| s.set(true));
            bail!("more array elements than this request may hold")
        }
        Some(n) => {
            l.set(Some(n - 1));
            Ok(())
        }
    })
}
