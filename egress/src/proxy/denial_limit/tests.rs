//! Tests of the `denial_limit` module.

use super::*;

fn denial(port: u16) -> EgressLogEntry {
    EgressLogEntry::new(
        "box",
        EgressPath::Transparent,
        "x.test",
        port,
        Verdict::Deny,
    )
}

#[test]
fn denials_past_the_window_limit_are_counted_then_summed_up() {
    let start = Instant::now();
    let mut limiter = DenialLimiter::default();
    let admitted = (0..50)
        .filter(|port| limiter.admit(&denial(*port), start))
        .count();
    assert_eq!(admitted, MAX_DENIALS_PER_WINDOW as usize);
    // Allowed connections are never held back.
    let allowed = EgressLogEntry::new("box", EgressPath::Connect, "a.test", 443, Verdict::Allow);
    assert!(limiter.admit(&allowed, start));
    assert!(limiter.close_passed(start + DENIAL_WINDOW / 2).is_none());

    let summary = limiter
        .close_passed(start + DENIAL_WINDOW)
        .expect("a summary once the window passed");
    assert_eq!(summary.verdict, Verdict::Deny);
    assert_eq!(summary.reason.as_deref(), Some(RATE_LIMITED));
    assert_eq!(summary.suppressed, Some(30));
    assert_eq!(summary.path, EgressPath::Transparent);
    assert_eq!(summary.sandbox, "box");
    // A new window has room again, and nothing is summed up twice.
    assert!(limiter.admit(&denial(1), start + DENIAL_WINDOW));
    assert!(limiter.close_passed(start + DENIAL_WINDOW * 3).is_none());
}

#[test]
fn a_quiet_window_has_no_summary() {
    let start = Instant::now();
    let mut limiter = DenialLimiter::default();
    assert!(limiter.admit(&denial(1), start));
    assert!(limiter.close_passed(start + DENIAL_WINDOW).is_none());
    assert!(limiter.take_summary().is_none());
}
