//! Unit tests of the remote log manager.

use super::*;

#[test]
fn staging_files_of_interrupted_puts_are_reaped() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("t-live");
    let other = root.path().join("t-gone");
    std::fs::create_dir_all(live.join("0")).unwrap();
    std::fs::create_dir_all(other.join("0")).unwrap();
    let files = [
        live.join("0/00000000000000000000-a.log#1"),
        other.join("0/00000000000000000000-b.log#7"),
        other.join("0/00000000000000000000-c.log#3"),
        live.join("0/00000000000000000000-a.log"),
        live.join("0/not#staging"),
    ];
    for f in &files {
        std::fs::write(f, b"x").unwrap();
    }
    // One staging file outside the live topics is old.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
    std::fs::File::options()
        .write(true)
        .open(&files[2])
        .unwrap()
        .set_modified(old)
        .unwrap();
    let cutoff = 2_000_000; // ms: after `old`, before now
    assert_eq!(
        reap_staging_files(root.path(), std::slice::from_ref(&live), false, cutoff),
        1
    );
    assert!(
        !files[2].exists(),
        "old staging file outside live topics goes"
    );
    assert_eq!(reap_staging_files(root.path(), &[live], true, cutoff), 1);
    assert!(
        !files[0].exists(),
        "at start-up a live topic's staging file goes"
    );
    assert!(
        files[1].exists(),
        "a fresh one elsewhere stays (another upload may own it)"
    );
    assert!(files[3].exists() && files[4].exists(), "real objects stay");
}

#[test]
fn backoff_grows_and_is_bounded() {
    assert!(backoff_ms(1, 20) >= 800 && backoff_ms(1, 20) <= 1200);
    assert!(backoff_ms(30, 0) <= 72_000);
    assert!(backoff_ms(3, 0) > backoff_ms(1, 0));
}
