//! Whether to start the engine, from the boot parameters and how the root switch went.

use super::setup_root::RootOutcome;
use crate::boot_params::{BootParams, EngineChoice};
use crate::engine::EngineConfig;
use paddock_protocol::{EngineStage, EngineState};

/// What to do about the engine at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineDecision {
    /// Nothing to start; the state is known.
    Settled(EngineState),
    /// Start it with this configuration.
    Start(Box<EngineConfig>),
}

/// A failed root switch is reported as the engine's failure whatever the engine choice, so
/// the host learns of it from `BootInfo`.
pub fn decide(params: &BootParams, root: &RootOutcome) -> EngineDecision {
    if let RootOutcome::Failed(e) = root {
        return EngineDecision::Settled(EngineState::failed(EngineStage::Root, &e.to_string()));
    }
    match params.engine {
        EngineChoice::None => EngineDecision::Settled(EngineState::Absent),
        EngineChoice::Docker => {
            EngineDecision::Start(Box::new(EngineConfig::docker(params.engine_timeout)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot_params::parse;
    use crate::pid1::root_switch::RootSwitchError;
    use std::io;
    use std::time::Duration;

    fn params(cmdline: &str) -> BootParams {
        parse(cmdline).0
    }

    #[test]
    fn the_minimal_profile_has_no_engine() {
        assert_eq!(
            decide(&params(""), &RootOutcome::Initramfs),
            EngineDecision::Settled(EngineState::Absent)
        );
        assert_eq!(
            decide(
                &params("paddock.root=/dev/vda paddock.engine=none"),
                &RootOutcome::Switched
            ),
            EngineDecision::Settled(EngineState::Absent)
        );
    }

    #[test]
    fn the_agent_profile_starts_docker_with_the_given_timeout() {
        let decision = decide(
            &params("paddock.root=/dev/vda paddock.engine_timeout=60"),
            &RootOutcome::Switched,
        );
        let EngineDecision::Start(config) = decision else {
            panic!("{decision:?}");
        };
        assert_eq!(*config, EngineConfig::docker(Duration::from_secs(60)));
        let args = &config.dockerd.spec.args;
        for arg in [
            "--containerd=/run/containerd/containerd.sock",
            "--host=unix:///var/run/docker.sock",
            "--ip6tables=false",
            "--iptables=true",
            "--storage-driver=overlay2",
            "--data-root=/var/lib/docker",
            "--group=docker",
        ] {
            assert!(args.iter().any(|a| a == arg), "{arg} missing from {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("tcp://")));
        let env = config.dockerd.spec.env;
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"] {
            assert!(
                env.iter().any(|(n, _)| *n == name),
                "{name} missing from {env:?}"
            );
        }
    }

    #[test]
    fn a_failed_root_is_reported_even_without_an_engine() {
        for cmdline in [
            "paddock.root=/dev/vda",
            "paddock.root=/dev/vda paddock.engine=none",
        ] {
            let root = RootOutcome::Failed(RootSwitchError::Mount {
                device: "/dev/vda".into(),
                fstype: "erofs".into(),
                target: "/run/paddock/lower".into(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            });
            let EngineDecision::Settled(EngineState::Failed { stage, detail }) =
                decide(&params(cmdline), &root)
            else {
                panic!("not a failure");
            };
            assert_eq!(stage, EngineStage::Root);
            assert!(
                detail.starts_with("cannot mount /dev/vda (erofs)"),
                "{detail}"
            );
        }
    }
}
