//! Unit tests of the remote log manager.

use super::*;

#[test]
fn backoff_grows_and_is_bounded() {
    assert!(backoff_ms(1, 20) >= 800 && backoff_ms(1, 20) <= 1200);
    assert!(backoff_ms(30, 0) <= 72_000);
    assert!(backoff_ms(3, 0) > backoff_ms(1, 0));
}
