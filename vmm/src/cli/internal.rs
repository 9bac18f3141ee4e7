//! The processes paddock starts for a sandbox (`paddock __vmm|__egress|__workspace ...`):
//! their command line, parsed apart from the commands users type.

use super::{
    egress_proxy, init_tracing, lifecycle, workspace_server, EgressProxyArgs, VmmArgs,
    WorkspaceServerArgs,
};
use clap::{Parser, Subcommand};
use paddock_vmm::sandbox::helper::{EGRESS_PROCESS, VMM_PROCESS, WORKSPACE_PROCESS};

/// The processes paddock starts for a sandbox (`paddock __vmm|__egress|__workspace ...`),
/// parsed apart from the commands users type: a parser of every command, with all its help,
/// costs more to build than the helper's own arguments take to read, and a VMM, proxy or
/// server starting is on the path of every `start`, `restore` and `fork`.
#[derive(Parser)]
#[command(name = "paddock")]
pub struct InternalCli {
    #[command(subcommand)]
    pub command: InternalCommand,
}

#[derive(Subcommand)]
pub enum InternalCommand {
    /// The background VMM process of one sandbox.
    #[command(name = VMM_PROCESS)]
    Vmm(VmmArgs),
    /// The egress proxy process of one sandbox.
    #[command(name = EGRESS_PROCESS)]
    Egress(EgressProxyArgs),
    /// The workspace server process of one sandbox.
    #[command(name = WORKSPACE_PROCESS)]
    Workspace(WorkspaceServerArgs),
}

impl InternalCommand {
    /// Whether `first` (the first argument) names an internal process.
    pub fn is_named(first: &std::ffi::OsStr) -> bool {
        [VMM_PROCESS, EGRESS_PROCESS, WORKSPACE_PROCESS]
            .iter()
            .any(|name| first == *name)
    }
}

/// Runs an internal process; returns its exit status. A VMM logs as `PADDOCK_LOG` says
/// (warnings by default); the proxy and the server set up their own logging.
pub fn dispatch_internal(cli: InternalCli) -> anyhow::Result<i32> {
    match cli.command {
        InternalCommand::Vmm(args) => {
            init_tracing(0);
            lifecycle::vmm_process(args)
        }
        InternalCommand::Egress(args) => egress_proxy::run(args),
        InternalCommand::Workspace(args) => workspace_server::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_processes_parse_apart_and_users_cannot_name_them() {
        let egress = InternalCli::try_parse_from([
            "paddock",
            "__egress",
            "--state-dir",
            "/s",
            "--name",
            "a",
            "--vmm-pid",
            "7",
            "--ca",
            "c",
            "--listen-fd",
            "3",
        ])
        .map(|cli| cli.command);
        assert!(
            matches!(&egress, Ok(InternalCommand::Egress(args)) if args.vmm_pid == 7 && args.listen_fd == Some(3))
        );
        let warm_vmm = [
            "paddock",
            "__vmm",
            "--state-dir",
            "/s",
            "--pool-entry",
            "w-1",
        ];
        assert!(InternalCli::try_parse_from(warm_vmm).is_ok());
        assert!(InternalCli::try_parse_from(["paddock", "ls"]).is_err());
        assert!(super::super::Cli::try_parse_from(warm_vmm).is_err());
        for name in ["__vmm", "__egress", "__workspace"] {
            assert!(InternalCommand::is_named(name.as_ref()), "{name}");
        }
        for other in ["ls", "__", "__vmm2", "-v"] {
            assert!(!InternalCommand::is_named(other.as_ref()), "{other}");
        }
    }
}
