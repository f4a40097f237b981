//! Unit tests of the remote log manager.

use super::*;

#[test]
fn backoff_grows_and_is_bounded() {
    assert!(backoff_ms(1, 20) >= 800 && backoff_ms(1, 20) <= 1200);
    assert!(backoff_ms(30, 0) <= 72_000);
    assert!(backoff_ms(3, 0) > backoff_ms(1, 0));
}

/// The nice value (field 19 of /proc/thread-self/stat) of the thread
/// calling it.
fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    after
        .split(' ')
        .nth(16)
        .expect("nice")
        .parse()
        .expect("nice")
}

/// `remote.thread.nice`: the remote tier's runtime threads, its workers
/// and its blocking pool (object_store's file reads), run at the nice
/// value set; 0 leaves them at the caller's.
#[test]
fn the_remote_tier_threads_run_at_the_configured_nice_value() {
    let store = || {
        RemoteStore::new(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "memory://test",
        )
    };
    let base = own_nice();
    for nice in [0, 7] {
        let rlm = RemoteLogManager::new(
            store(),
            RemoteSettings {
                thread_nice: nice,
                ..RemoteSettings::new("memory://test")
            },
        )
        .unwrap();
        let handle = rlm.handle().expect("a runtime");
        let (worker, blocking) = handle.block_on(async {
            let worker = tokio::spawn(async { own_nice() }).await.unwrap();
            let blocking = tokio::task::spawn_blocking(own_nice).await.unwrap();
            (worker, blocking)
        });
        let want = if nice == 0 { base } else { nice };
        assert_eq!(
            (worker, blocking),
            (want, want),
            "remote.thread.nice {nice}"
        );
    }
    assert_eq!(own_nice(), base, "the caller's own priority is untouched");
}
