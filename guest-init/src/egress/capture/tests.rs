//! The rules text, and the whole installation in a network namespace of the test's own with a
//! stand-in for iptables-restore that keeps its input.

use super::*;
use crate::egress::test_netns::{in_new_net_namespace, interface_kind};
use crate::reaper::ReapMode;
use std::net::TcpStream;
use std::path::PathBuf;

#[test]
fn the_rules_redirect_outside_tcp_and_spare_the_guest_and_its_containers() {
    let rules = capture_rules("paddock0");
    let lines: Vec<&str> = rules.lines().collect();
    assert_eq!(lines.first(), Some(&"*nat"));
    assert_eq!(lines.last(), Some(&"COMMIT"));
    for expected in [
        ":PADDOCK_EGRESS_OUTPUT - [0:0]",
        ":PADDOCK_EGRESS_PREROUTING - [0:0]",
        "-A OUTPUT -j PADDOCK_EGRESS_OUTPUT",
        "-A PREROUTING -j PADDOCK_EGRESS_PREROUTING",
        "-A PADDOCK_EGRESS_OUTPUT -o paddock0 -p tcp -m addrtype ! --dst-type LOCAL \
         -j REDIRECT --to-ports 3129",
        "-A PADDOCK_EGRESS_PREROUTING -p udp --dport 53 -j REDIRECT --to-ports 53",
        "-A PADDOCK_EGRESS_PREROUTING -p tcp -j REDIRECT --to-ports 3129",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in\n{rules}"
        );
    }
    // The exceptions come before the redirects of the containers' chain.
    let position = |line: &str| lines.iter().position(|l| *l == line).unwrap();
    let first_redirect =
        position("-A PADDOCK_EGRESS_PREROUTING -p udp --dport 53 -j REDIRECT --to-ports 53");
    let guest_dns = position(
        "-A PADDOCK_EGRESS_PREROUTING -p udp --dport 53 -m addrtype --dst-type LOCAL \
         -j REDIRECT --to-ports 53",
    );
    // The containers' DNS questions to the guest are redirected before anything local returns.
    let first_container_rule = lines
        .iter()
        .position(|l| l.starts_with("-A PADDOCK_EGRESS_PREROUTING "))
        .unwrap();
    assert_eq!(guest_dns, first_container_rule);
    for exception in [
        "-A PADDOCK_EGRESS_PREROUTING -m addrtype --dst-type LOCAL -j RETURN",
        "-A PADDOCK_EGRESS_PREROUTING -d 172.16.0.0/12 -j RETURN",
        "-A PADDOCK_EGRESS_PREROUTING -d 192.168.0.0/16 -j RETURN",
    ] {
        assert!(position(exception) < first_redirect, "{exception}");
    }
    // Every line is one iptables-restore understands: a table, a chain, a rule, COMMIT.
    assert!(lines.iter().all(|l| l.starts_with('*')
        || l.starts_with(':')
        || l.starts_with("-A ")
        || *l == "COMMIT"));
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("guest-init-capture-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(kind: &str, rules_tool: ToolCommand) -> CaptureSetup {
    CaptureSetup {
        kind: kind.to_string(),
        rules_tool,
        ..CaptureSetup::guest()
    }
}

/// Whether a connection to an outside address is routed (it then times out: the interface
/// sends nowhere) rather than refused for want of a route.
fn outside_is_routed() -> bool {
    let outside = "203.0.113.9:80".parse().unwrap();
    match TcpStream::connect_timeout(&outside, Duration::from_millis(100)) {
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => false,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => true,
        other => panic!("unexpected: {other:?}"),
    }
}

#[test]
fn installing_feeds_the_rules_then_routes_the_outside_to_the_interface() {
    let scratch = Scratch::new("install");
    let saved = scratch.0.join("rules");
    in_new_net_namespace("capture", move || {
        let Some(kind) = interface_kind() else {
            println!("capture: skipped (no dummy or ifb interfaces)");
            return;
        };
        let reaper = Reaper::new(ReapMode::PerChild);
        let script = format!("cat > {}", saved.display());
        let setup = setup(kind, ToolCommand::new("sh", &["-c", &script]));
        assert_eq!(setup.install(&reaper).unwrap(), CaptureOutcome::Installed);
        assert_eq!(
            std::fs::read_to_string(&saved).unwrap(),
            capture_rules(CAPTURE_INTERFACE)
        );
        assert!(outside_is_routed());
        // The interface's address is the guest's own.
        std::net::TcpListener::bind((CAPTURE_ADDRESS, 0)).unwrap();
        // A second run finds everything in place.
        assert_eq!(setup.install(&reaper).unwrap(), CaptureOutcome::Installed);
    });
}

#[test]
fn without_rules_nothing_is_routed_to_the_interface() {
    in_new_net_namespace("capture", || {
        let Some(kind) = interface_kind() else {
            println!("capture: skipped (no dummy or ifb interfaces)");
            return;
        };
        let reaper = Reaper::new(ReapMode::PerChild);
        let missing = setup(kind, ToolCommand::new("/nonexistent/iptables-restore", &[]));
        assert_eq!(
            missing.install(&reaper).unwrap(),
            CaptureOutcome::NoIptables
        );
        assert!(!outside_is_routed());
        // The address is there all the same.
        std::net::TcpListener::bind((CAPTURE_ADDRESS, 0)).unwrap();

        let failing = setup(
            kind,
            ToolCommand::new("sh", &["-c", "echo no nat >&2; exit 2"]),
        );
        let err = failing.install(&reaper).unwrap_err();
        assert!(
            matches!(&err, CaptureError::Rules(ToolError::Failed { output, .. }) if output == "no nat"),
            "{err:?}"
        );
        assert!(!outside_is_routed());
    });
}
