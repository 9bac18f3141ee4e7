//! Restart decisions, and supervision of real processes with the per-child reaper.

use super::*;
use crate::reaper::ReapMode;

const POLICY: RestartPolicy = RestartPolicy {
    max_restarts: 3,
    first_backoff: Duration::from_millis(10),
    max_backoff: Duration::from_millis(25),
    stable_after: Duration::from_secs(60),
};

#[test]
fn restarts_back_off_then_give_up() {
    let mut tracker = RestartTracker::new(POLICY);
    let quick = Duration::from_millis(1);
    assert_eq!(
        tracker.on_exit(quick),
        RestartDecision::Restart {
            after: Duration::from_millis(10),
            attempt: 1
        }
    );
    assert_eq!(
        tracker.on_exit(quick),
        RestartDecision::Restart {
            after: Duration::from_millis(20),
            attempt: 2
        }
    );
    assert_eq!(
        tracker.on_exit(quick),
        RestartDecision::Restart {
            after: Duration::from_millis(25),
            attempt: 3
        }
    );
    assert_eq!(
        tracker.on_exit(quick),
        RestartDecision::GiveUp { restarts: 3 }
    );
    assert_eq!(
        tracker.on_exit(quick),
        RestartDecision::GiveUp { restarts: 3 }
    );
}

#[test]
fn a_stable_run_resets_the_count() {
    let mut tracker = RestartTracker::new(POLICY);
    for _ in 0..3 {
        tracker.on_exit(Duration::ZERO);
    }
    assert_eq!(
        tracker.on_exit(POLICY.stable_after),
        RestartDecision::Restart {
            after: POLICY.first_backoff,
            attempt: 1
        }
    );
}

#[test]
fn the_backoff_never_overflows() {
    let policy = RestartPolicy {
        max_restarts: u32::MAX,
        first_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(30),
        stable_after: Duration::MAX,
    };
    let mut tracker = RestartTracker::new(policy);
    for _ in 0..100 {
        let RestartDecision::Restart { after, .. } = tracker.on_exit(Duration::ZERO) else {
            panic!("gave up");
        };
        assert!(after <= policy.max_backoff);
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "guest-init-supervise-{name}-{}",
        std::process::id()
    ))
}

fn wait_for(supervised: &Supervised, what: &str, done: impl Fn(&DaemonStatus) -> bool) {
    let start = Instant::now();
    loop {
        let status = supervised.status();
        if done(&status) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn daemon(script: &str) -> DaemonSpec {
    DaemonSpec {
        name: "testd",
        program: "sh",
        args: vec!["-c".into(), script.into()],
        env: &[],
    }
}

#[test]
fn a_death_before_the_engine_is_up_is_not_restarted() {
    let dir = scratch("early");
    let sink = LogSink::start(&dir.join("testd.log"), 1 << 20).unwrap();
    let supervised = Supervised::start(
        daemon("echo starting; exit 3"),
        sink,
        Reaper::new(ReapMode::PerChild),
        POLICY,
    )
    .unwrap();
    wait_for(&supervised, "stopped", |s| {
        matches!(s, DaemonStatus::Stopped(_))
    });
    let DaemonStatus::Stopped(exit) = supervised.status() else {
        unreachable!()
    };
    assert!(matches!(exit, DaemonExit::Exited(ExitStatus::Code(3))));
    assert_eq!(exit.to_string(), "exited with code 3");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_daemon_gets_its_own_environment_on_top_of_the_common_one() {
    let dir = scratch("env");
    let log = dir.join("testd.log");
    let sink = LogSink::start(&log, 1 << 20).unwrap();
    let spec = DaemonSpec {
        env: &[("HTTP_PROXY", "http://127.0.0.1:3128")],
        ..daemon("echo \"proxy=$HTTP_PROXY home=$HOME\"")
    };
    let supervised =
        Supervised::start(spec, sink, Reaper::new(ReapMode::PerChild), POLICY).unwrap();
    wait_for(&supervised, "stopped", |s| {
        matches!(s, DaemonStatus::Stopped(_))
    });
    let start = Instant::now();
    let expected = "proxy=http://127.0.0.1:3128 home=/root";
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(expected)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "log lacks {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_daemon_that_keeps_dying_is_restarted_then_given_up() {
    let dir = scratch("dying");
    let log = dir.join("testd.log");
    let sink = LogSink::start(&log, 1 << 20).unwrap();
    // Runs until told to die, so the test can allow restarts first.
    let go = dir.join("go");
    let script = format!(
        "echo run; while [ ! -e {} ]; do sleep 0.01; done; kill -9 $$",
        go.display()
    );
    let supervised = Supervised::start(
        daemon(&script),
        sink,
        Reaper::new(ReapMode::PerChild),
        POLICY,
    )
    .unwrap();
    wait_for(&supervised, "running", |s| {
        matches!(s, DaemonStatus::Running { .. })
    });
    supervised.allow_restarts();
    std::fs::write(&go, "").unwrap();
    wait_for(&supervised, "gave up", |s| {
        matches!(s, DaemonStatus::GaveUp { .. })
    });
    let DaemonStatus::GaveUp { restarts, last } = supervised.status() else {
        unreachable!()
    };
    assert_eq!(restarts, POLICY.max_restarts);
    assert!(
        matches!(last, DaemonExit::Exited(ExitStatus::Signal(9))),
        "{last}"
    );
    // One first run and three restarts wrote into the same log.
    let start = Instant::now();
    while std::fs::read_to_string(&log).unwrap().lines().count() < 4 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_program_cannot_start() {
    let dir = scratch("missing");
    let sink = LogSink::start(&dir.join("testd.log"), 1 << 20).unwrap();
    let spec = DaemonSpec {
        name: "nothing",
        program: "/nonexistent/daemon",
        args: Vec::new(),
        env: &[],
    };
    let supervised =
        Supervised::start(spec, sink, Reaper::new(ReapMode::PerChild), POLICY).unwrap();
    wait_for(&supervised, "stopped", |s| {
        matches!(s, DaemonStatus::Stopped(_))
    });
    let DaemonStatus::Stopped(exit) = supervised.status() else {
        unreachable!()
    };
    assert!(matches!(exit, DaemonExit::CannotStart(_)), "{exit}");
    std::fs::remove_dir_all(&dir).unwrap();
}
