//! Tests of the `fd_limit` module.

use super::*;

#[test]
fn connections_fit_in_the_descriptors_left_after_the_headroom() {
    assert_eq!(connections_within(None, 512), 512);
    assert_eq!(connections_within(Some(1_048_576), 512), 512);
    assert_eq!(connections_within(Some(FD_HEADROOM + 2 * 512), 512), 512);
    assert_eq!(
        connections_within(Some(FD_HEADROOM + 2 * 512 - 1), 512),
        511
    );
    assert_eq!(connections_within(Some(1024), 512), 480);
    assert_eq!(connections_within(Some(10), 512), 0);
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let before = getrlimit(Resource::Nofile);
    let now = raise_fd_limit();
    assert_eq!(now, before.maximum);
    assert_eq!(getrlimit(Resource::Nofile).current, before.maximum);
}
