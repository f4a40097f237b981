//! Failpoints for the crash matrix (`tests/crash_matrix.rs`): named points
//! on the destructive and durable paths where a test can kill the process.
//!
//! `fail_point!("name")` compiles to nothing unless the crate is built with
//! the `failpoints` feature (off by default, never in a release). With it,
//! the environment variable `TIERLOG_FAILPOINT=<name>` (or `<name>:<n>`, the
//! n-th hit, 1-based) makes that point abort the process at once, which is
//! what a SIGKILL at that instant looks like to the files: no destructor,
//! no flush, no further write. The hit is announced on stderr first
//! (`failpoint <name> hit: aborting`) so the test knows which point fired.
//!
//! Owns: the macro and the env lookup. Must never: do anything but abort
//! (no error returns, no delays), or exist in a build without the feature.

/// A named crash point; see the module docs. Nothing without the
/// `failpoints` feature.
#[cfg(feature = "failpoints")]
macro_rules! fail_point {
    ($name:literal) => {
        $crate::failpoints::hit($name)
    };
}

/// A named crash point; see the module docs. Nothing without the
/// `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
macro_rules! fail_point {
    ($name:literal) => {};
}

pub(crate) use fail_point;

/// The armed failpoint: its name and which hit aborts (1-based).
#[cfg(feature = "failpoints")]
fn armed() -> Option<&'static (String, u64)> {
    static ARMED: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("TIERLOG_FAILPOINT").ok()?;
            let spec = spec.trim();
            if spec.is_empty() {
                return None;
            }
            Some(match spec.rsplit_once(':') {
                Some((name, n)) if n.parse::<u64>().is_ok_and(|n| n >= 1) => {
                    (name.to_string(), n.parse().unwrap_or(1))
                }
                _ => (spec.to_string(), 1),
            })
        })
        .as_ref()
}

/// Count a hit of `name`; abort the process if it is the armed one's
/// chosen hit.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((armed, nth)) = armed() else {
        return;
    };
    if armed != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        let _ = writeln!(std::io::stderr(), "failpoint {name} hit: aborting");
        std::process::abort();
    }
}
