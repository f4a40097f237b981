//! Open `.log` handles of sealed segments, bounded (Kafka keeps every
//! segment open and asks operators to raise the file limit; with tens of
//! thousands of partitions that exhausts the default limit of 1024).
//!
//! A segment holds no descriptor: every read, append, truncation and fsync
//! takes a (read-write) handle from this process-wide cache, which opens
//! the file on a miss and closes the least recently used handle beyond its
//! capacity (a caller still holding the `Arc` keeps its descriptor until
//! it is done). Busy partitions stay open; idle ones cost nothing. A
//! segment's entry is dropped with the segment (deleted, or its log
//! closed), so a deleted file's descriptor never outlives it in the cache.
//!
//! The capacity defaults to half the soft `RLIMIT_NOFILE` (at least 64),
//! read when the cache is first used; [`set_capacity`] overrides it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sync::lock;

struct Cache {
    /// path → (handle, last use)
    open: HashMap<PathBuf, (Arc<File>, u64)>,
    tick: u64,
}

static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
static CAPACITY: AtomicUsize = AtomicUsize::new(0);

fn cache() -> &'static Mutex<Cache> {
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            open: HashMap::new(),
            tick: 0,
        })
    })
}

/// The soft limit on open files of this process, if the OS tells.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            return Some(limit.rlim_cur);
        }
    }
    None
}

/// Raise this process's soft open-file limit to its hard limit (what
/// `tierlog serve` does at start-up); returns `(before, after)`, or `None`
/// where the OS does not tell.
pub fn raise_open_file_limit() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            let before = limit.rlim_cur;
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    return Some((before, limit.rlim_max));
                }
            }
            return Some((before, before));
        }
    }
    #[allow(unreachable_code)]
    None
}

/// How many segment handles may be open at once.
pub fn capacity() -> usize {
    match CAPACITY.load(Ordering::Relaxed) {
        0 => {
            let derived = open_file_limit()
                .map_or(512, |l| (l / 2).min(1 << 20) as usize)
                .max(64);
            CAPACITY.store(derived, Ordering::Relaxed);
            derived
        }
        n => n,
    }
}

/// Set the capacity (at least 1); handles beyond it close as they are
/// next used.
pub fn set_capacity(n: usize) {
    CAPACITY.store(n.max(1), Ordering::Relaxed);
}

impl Cache {
    fn open(&mut self, path: &Path, capacity: usize) -> std::io::Result<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        if let Some((file, used)) = self.open.get_mut(path) {
            *used = tick;
            return Ok(Arc::clone(file));
        }
        let opened = OpenOptions::new().read(true).write(true).open(path);
        let file = match opened {
            Ok(f) => Arc::new(f),
            // Out of descriptors (sockets took them): give back half the
            // cache's and try once more.
            Err(e) if out_of_descriptors(&e) => {
                let mut by_age: Vec<(PathBuf, u64)> = self
                    .open
                    .iter()
                    .map(|(p, (_, used))| (p.clone(), *used))
                    .collect();
                by_age.sort_by_key(|(_, used)| *used);
                for (p, _) in by_age.iter().take(by_age.len().div_ceil(2)) {
                    self.open.remove(p);
                }
                Arc::new(OpenOptions::new().read(true).write(true).open(path)?)
            }
            Err(e) => return Err(e),
        };
        self.open
            .insert(path.to_path_buf(), (Arc::clone(&file), tick));
        while self.open.len() > capacity {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            self.open.remove(&oldest);
        }
        Ok(file)
    }
}

/// A read handle on `path`, from the cache or newly opened.
pub(super) fn open(path: &Path) -> std::io::Result<Arc<File>> {
    let capacity = capacity();
    lock(cache()).open(path, capacity)
}

/// EMFILE or ENFILE: the process or the system is out of descriptors.
pub(super) fn out_of_descriptors(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Drop `path`'s handle from the cache (its segment is gone).
pub(super) fn forget(path: &Path) {
    if let Some(c) = CACHE.get() {
        lock(c).open.remove(path);
    }
}

/// Handles the cache holds open now.
pub fn open_count() -> usize {
    CACHE.get().map_or(0, |c| lock(c).open.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_handle_closes_beyond_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        let mut c = Cache {
            open: HashMap::new(),
            tick: 0,
        };
        let a = c.open(&paths[0], 2).unwrap();
        c.open(&paths[1], 2).unwrap();
        c.open(&paths[0], 2).unwrap(); // the most recent now
        c.open(&paths[2], 2).unwrap();
        assert_eq!(c.open.len(), 2);
        assert!(
            !c.open.contains_key(&paths[1]),
            "the least recently used went"
        );
        assert!(
            Arc::ptr_eq(&a, &c.open(&paths[0], 2).unwrap()),
            "a hit reuses the handle"
        );
        assert!(c.open(&dir.path().join("missing.log"), 2).is_err());
    }

    #[test]
    fn running_out_of_descriptors_is_told_apart() {
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_descriptors(&std::io::Error::from_raw_os_error(
            libc::EIO
        )));
    }
}
