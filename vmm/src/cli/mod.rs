//! Argument parsing and dispatch for the `paddock` binary.

mod agents;
mod attach;
mod confine;
mod egress;
mod egress_proxy;
mod interactive;
mod internal;
mod lifecycle;
mod machine;
mod outcome;
mod policy;
mod pool;
mod review;
mod run;
mod run_agent;
mod secret;
mod signals;
mod template;
mod workspace_server;

use clap::{Args, Parser, Subcommand};
pub use internal::{dispatch_internal, InternalCli, InternalCommand};
use std::path::PathBuf;

/// paddock: millisecond-reset microVM sandboxes for AI coding agents, on KVM.
#[derive(Parser)]
#[command(name = "paddock", version, about, long_about = None, after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// Log VMM internals to stderr (repeat for more detail).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_STATUS_HELP: &str = "\
Exit status of `run`, `exec` and `attach`: the command's own status, 128+N if a signal N killed
it (or, on a terminal, if signal N made paddock hang the session up), 0 after detaching,
123 if the guest shut down or rebooted before the command finished, 124 if --timeout expired,
125 if paddock itself failed (no usable KVM, bad kernel or rootfs, boot failure),
126/127 if the command could not be executed / was not found.";

const RUN_HELP: &str = "\
Agents:
  claude   Claude Code, started with --dangerously-skip-permissions
  gemini   Gemini CLI, started with --yolo
  codex    Codex, started with --dangerously-bypass-approvals-and-sandbox
  shell    bash as user agent; `paddock run shell -- make test` runs that command instead
  The agents run unattended by default: the VM is the boundary. --ask keeps their own prompts.
  Arguments after `--` go to the agent. `paddock agents` lists the versions in the image.

Terminal:
  Ctrl-P Ctrl-Q detaches and leaves the agent running; `paddock attach NAME` (or the same
  `paddock run`) comes back to it. Ctrl-C, Ctrl-Z and Ctrl-D go to the agent.

What the sandbox can reach:
  Its own kernel, filesystem and Docker engine, reset to the template's state when started.
  The network only through paddock's egress proxy on the host (the VM has no network card):
  TCP to the hosts the policy allows (default preset `balanced`: AI APIs, package and container
  registries, code hosts; see `paddock policy --help`, --policy/--allow/--deny here), DNS
  answered inside the sandbox, no UDP or ICMP. API keys stay on the host: `paddock secret set
  anthropic` stores one, the agent sees a placeholder, the proxy adds the key for the API's
  hosts only. Host files: DIR alone, shared live at the same absolute path (the agent's working
  directory); nothing else of the host's is reachable from the sandbox.

Examples:
  paddock run claude .              Claude Code for this directory (sandbox claude-<dir>)
  paddock run shell -- id           one command as user agent, in a kept sandbox
  paddock run --rm codex ~/src/app  removed when Codex exits
  paddock run -- uname -a           a throwaway sandbox for one command

Exit status: the agent's or the command's own; see `paddock --help` for paddock's own codes.";

#[derive(Subcommand)]
pub enum Command {
    /// Run a coding agent in its own sandbox (`paddock run claude .`), or one command in a
    /// throwaway sandbox (`paddock run -- CMD`).
    ///
    /// `paddock run AGENT [DIR]` starts a sandbox from the agent template (a restore, not a
    /// boot) named after the agent and DIR (default: the current directory), e.g.
    /// `claude-myproject`, and runs the agent in it as user `agent` (HOME=/home/agent, passwordless
    /// sudo, its own Docker engine), in DIR's path. The sandbox keeps running after the agent
    /// exits unless `--rm`; `paddock run` with the same agent and DIR (or `--name`) comes back
    /// to it: to the detached session if there is one, else a new one.
    ///
    /// `paddock run -- CMD` boots a sandbox for CMD alone and tears it down when CMD ends; it
    /// has no egress proxy, so no network (`paddock run shell -- CMD` has both).
    ///
    /// When stdin and stdout are terminals, the command runs on a terminal in the guest with
    /// this one in raw mode (window size followed, Ctrl-C / Ctrl-Z / Ctrl-D typed through;
    /// `-T` to opt out). Otherwise stdin is forwarded to the command, its stdout and stderr are
    /// streamed separately, and Ctrl-C (SIGINT), SIGTERM and SIGHUP are forwarded to it.
    /// paddock exits with the command's status.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Boot a sandbox in the background (one VMM process); return once it is ready.
    Start(StartArgs),
    /// Run a command in a running sandbox (same stdin/stdout/stderr/exit-status rules as `run`;
    /// `-it` for a terminal, as with Docker).
    ///
    /// With `-it` and stdin a terminal, the command runs on a terminal in the guest and this
    /// one is in raw mode: Ctrl-C, Ctrl-Z and Ctrl-D are typed through, the window size is
    /// followed, and Ctrl-P Ctrl-Q detaches, leaving the command running (`paddock attach`
    /// returns to it). SIGINT, SIGTERM or SIGHUP sent to paddock hang the session up.
    #[command(after_help = EXIT_STATUS_HELP)]
    Exec(ExecArgs),
    /// Return to a terminal session left with Ctrl-P Ctrl-Q (the most recent one, or --pid);
    /// the screen is redrawn and the last 64 KiB of its output while detached is shown first.
    #[command(after_help = EXIT_STATUS_HELP)]
    Attach(AttachArgs),
    /// List sandboxes: name, state, pid, memory, uptime, origin snapshot.
    Ls(LsArgs),
    /// Stop a sandbox (its VMM process exits; `rm` removes the record).
    Stop(NameArgs),
    /// Remove a stopped sandbox (or a running one with --force).
    Rm(RmArgs),
    /// Snapshot a running sandbox into DIR (atomically replacing any snapshot there).
    Snapshot(SnapshotArgs),
    /// Start a sandbox from a snapshot; memory is mapped lazily and shared with other restores.
    Restore(RestoreArgs),
    /// Reset a sandbox in place to the snapshot it came from (or --to DIR), in milliseconds.
    Reset(ResetArgs),
    /// Start COUNT independent sandboxes from one snapshot, sharing its memory file.
    Fork(ForkArgs),
    /// What the agent changed in a copy-on-write workspace (`--workspace-mode cow`): A added,
    /// M modified, D deleted; `--patch` shows them as a unified diff against the host's files.
    Diff(DiffArgs),
    /// Copy the reviewed changes of a copy-on-write workspace (all, or those at or beneath
    /// PATH...) to the host directory, a file at a time; a file the host changed meanwhile is
    /// refused and stays in the sandbox.
    Apply(ApplyArgs),
    /// Print a sandbox's guest console log (kernel messages, guest-init's and the engine's
    /// startup reports).
    Logs(LogsArgs),
    /// List the coding agents the agent image holds (claude, gemini, codex, shell) and their
    /// versions, read from the image without booting it.
    Agents(AgentsArgs),
    /// Templates: snapshots of a booted guest (engine up) that `start` and `run` restore.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Warm VMMs: idle VMM processes with their VM made ahead, which `restore`, `fork`, `start`
    /// and `run` claim instead of starting one (a claimed one is replaced in the background).
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Egress policy: which hosts sandboxes may reach (global, or per sandbox with
    /// --sandbox); changes apply to running sandboxes at their next connection.
    #[command(after_help = POLICY_HELP)]
    Policy(PolicyArgs),
    /// API keys and tokens, kept on the host: sandboxes see a placeholder, and the egress proxy
    /// puts the real value into requests to the service's hosts only.
    #[command(subcommand)]
    Secret(SecretCommand),
}

const POLICY_HELP: &str = "\
Presets: open (everything not denied), balanced (the default: AI APIs, package registries, code
hosts and container registries), locked (only what is allowed explicitly).
Rules: example.com (exact), *.example.com (one label below), **.example.com (any depth below),
any of those with :PORT, 10.0.0.0/8 (addresses, CIDR), 192.0.2.7:5432 (an address and port).
Deny wins over allow. Loopback, link-local (cloud metadata), private and CGNAT addresses are
refused even for allowed names unless a CIDR rule allows them. TCP that is neither HTTP nor TLS
needs a rule with its port. UDP and ICMP never leave a sandbox; DNS is answered inside it.";

#[derive(Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// Which policy a `paddock policy` command changes or shows.
#[derive(Args, Clone, Debug)]
pub struct PolicyScope {
    /// This sandbox's own rules instead of the global ones.
    #[arg(long, value_name = "NAME")]
    pub sandbox: Option<String>,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show the preset and rules (global, or the sandbox's and what it inherits).
    Ls {
        #[command(flatten)]
        scope: PolicyScope,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow hosts, addresses or ports (see the rules below).
    Allow {
        #[command(flatten)]
        scope: PolicyScope,
        #[arg(required = true, value_name = "RULE")]
        rules: Vec<String>,
    },
    /// Deny hosts, addresses or ports; deny wins over allow.
    Deny {
        #[command(flatten)]
        scope: PolicyScope,
        #[arg(required = true, value_name = "RULE")]
        rules: Vec<String>,
    },
    /// Remove rules (from the allow and the deny list).
    Rm {
        #[command(flatten)]
        scope: PolicyScope,
        #[arg(required = true, value_name = "RULE")]
        rules: Vec<String>,
    },
    /// Set the preset: open, balanced or locked.
    Preset {
        #[command(flatten)]
        scope: PolicyScope,
        #[arg(value_name = "PRESET")]
        preset: String,
    },
    /// Show the egress decisions (one line each: time, sandbox, verdict, host:port, rule).
    Log {
        #[command(flatten)]
        scope: PolicyScope,
        /// Only the last N decisions.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Print the JSON lines as they are stored.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a secret: the value comes from --from-env VAR, from --command CMD's output, or
    /// from stdin (one line; not echoed on a terminal).
    ///
    /// SERVICE is anthropic (ANTHROPIC_API_KEY, api.anthropic.com), openai (OPENAI_API_KEY,
    /// api.openai.com), google (GEMINI_API_KEY, generativelanguage.googleapis.com), github
    /// (GH_TOKEN, github.com, api.github.com), or `custom NAME --host H --header NAME` (put the
    /// printed placeholder where the program in the sandbox reads its key).
    Set {
        /// anthropic, openai, google, github or custom.
        service: String,
        /// For `custom`: the secret's name.
        name: Option<String>,
        /// Read the value from this environment variable.
        #[arg(long, value_name = "VAR", conflicts_with = "command")]
        from_env: Option<String>,
        /// Read the value from this shell command's standard output.
        #[arg(long, value_name = "CMD")]
        command: Option<String>,
        /// For `custom`: a host the secret is for (repeatable).
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// For `custom`: the request header that carries it.
        #[arg(long, value_name = "NAME")]
        header: Option<String>,
    },
    /// List the stored secrets (services, hosts, variables; never the values).
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored secret.
    Rm {
        /// The service or custom name.
        name: String,
    },
}

/// Per-sandbox egress options of `start` and `run`.
#[derive(Args, Clone, Debug, Default)]
pub struct EgressArgs {
    /// The sandbox's preset: open, balanced or locked (default: the global one, `balanced`
    /// unless `paddock policy preset` changed it).
    #[arg(long, value_name = "PRESET")]
    pub policy: Option<String>,
    /// Allow a host, address or port for this sandbox (repeatable; see `paddock policy --help`).
    #[arg(long, value_name = "RULE")]
    pub allow: Vec<String>,
    /// Deny a host, address or port for this sandbox (repeatable).
    #[arg(long, value_name = "RULE")]
    pub deny: Vec<String>,
}

#[derive(Args)]
pub struct EgressProxyArgs {
    #[arg(long)]
    pub state_dir: PathBuf,
    #[arg(long)]
    pub name: String,
    /// The VMM process; the proxy ends when it is gone.
    #[arg(long)]
    pub vmm_pid: u32,
    /// The CA the sandbox's guest trusts.
    #[arg(long)]
    pub ca: String,
    /// The descriptor of its socket, bound and listening already (socket activation by the
    /// process that starts it); without it the proxy binds the socket itself.
    #[arg(long, value_name = "FD")]
    pub listen_fd: Option<i32>,
    /// Runs without the proxy's seccomp filter: for debugging only.
    #[arg(long)]
    pub no_seccomp: bool,
}

#[derive(Args)]
pub struct WorkspaceServerArgs {
    /// The shared directory (absolute, symlinks resolved).
    #[arg(long)]
    pub dir: PathBuf,
    /// Where to listen for the guest's connections.
    #[arg(long)]
    pub socket: PathBuf,
    /// Where to listen for the host's control connections (the VMM saving and loading the
    /// server's state for snapshots); the guest cannot reach it.
    #[arg(long)]
    pub control_socket: PathBuf,
    /// The empty directory its jail is built on.
    #[arg(long)]
    pub jail_root: PathBuf,
    /// The VMM process; the server ends when it is gone.
    #[arg(long)]
    pub vmm_pid: u32,
    /// Runs without the server's seccomp filter: for debugging only.
    #[arg(long)]
    pub no_seccomp: bool,
    /// Serve the directory read-only (a copy-on-write share).
    #[arg(long)]
    pub cow: bool,
}

/// Where sandboxes are recorded.
#[derive(Args, Clone, Debug)]
pub struct StateArgs {
    /// State directory (default: $XDG_STATE_HOME/paddock, else ~/.local/state/paddock).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
}

/// Resource limits of the sandboxes a command starts (cgroup v2, where delegated).
#[derive(Args, Clone, Debug, Default)]
pub struct LimitArgs {
    /// CPU quota of the sandbox's VMM, in CPUs (e.g. 0.5 or 2). Its memory is bounded by the
    /// guest's RAM plus the VMM's overhead, its threads by a pids limit, whenever a delegated
    /// cgroup exists ($PADDOCK_CGROUP, or one next to paddock's own).
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// DEBUGGING ONLY: run the sandbox's VMM without its seccomp filters, so that a guest that
    /// breaks out of its VM meets the host kernel's whole interface. Use it to tell whether a
    /// filter killed a VMM (its log says so), never to run agents.
    #[arg(long)]
    pub no_seccomp: bool,
    /// When paddock runs as root: the user the sandbox's VMM runs as (NAME, UID, NAME:GROUP or
    /// UID:GID; default $PADDOCK_VMM_USER, else root without capabilities). Use a user of its
    /// own: the sandbox's directory and the snapshots it writes are opened to its group.
    #[arg(long, value_name = "USER")]
    pub vmm_user: Option<String>,
}

impl LimitArgs {
    /// The VMM's user: `--vmm-user`, else `$PADDOCK_VMM_USER` (empty: none).
    pub fn vmm_user(
        &self,
    ) -> Result<
        Option<paddock_vmm::sandbox::vmm_user::VmmUser>,
        paddock_vmm::sandbox::vmm_user::VmmUserError,
    > {
        let named = self
            .vmm_user
            .clone()
            .or_else(|| std::env::var("PADDOCK_VMM_USER").ok())
            .filter(|s| !s.is_empty());
        named
            .map(|name| paddock_vmm::sandbox::vmm_user::VmmUser::parse(&name))
            .transpose()
    }

    /// Says loudly that the filters are off, when they are; whether they are on.
    pub fn seccomp(&self) -> bool {
        if self.no_seccomp {
            eprintln!(
                "paddock: WARNING: --no-seccomp: this sandbox's VMM runs WITHOUT its seccomp \
                 filters (debugging only; a guest that escapes its VM meets the whole host kernel)"
            );
        }
        !self.no_seccomp
    }
}

fn parse_cpus(text: &str) -> Result<f64, String> {
    use paddock_vmm::sandbox::cgroup::{MAX_CPUS, MIN_CPUS};
    match text.parse::<f64>() {
        Ok(cpus) if (MIN_CPUS..=MAX_CPUS).contains(&cpus) => Ok(cpus),
        _ => Err(format!(
            "expected a number of CPUs from {MIN_CPUS} to {MAX_CPUS}"
        )),
    }
}

#[derive(Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Name of the sandbox (default: a generated one, printed).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
}

/// The host directory a new sandbox shares (`start`, `restore`, `fork`).
#[derive(Args, Clone, Debug)]
pub struct WorkspaceArgs {
    /// Share this host directory with the sandbox: the guest sees it at the same absolute
    /// path (symlinks resolved), and nothing else of the host's files.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// `live` (the default): the guest's changes go straight to DIR. `cow`: DIR is read-only
    /// to the guest, its changes stay in the sandbox (`paddock diff`, `paddock apply`; a reset
    /// drops them). A snapshot's share keeps the mode it had.
    #[arg(long, value_name = "MODE", requires = "workspace")]
    pub workspace_mode: Option<WorkspaceModeArg>,
}

/// How the workspace is shared (`--workspace-mode`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkspaceModeArg {
    /// Changes go straight to the host, both ways.
    #[default]
    Live,
    /// Changes stay in the sandbox until reviewed and applied.
    Cow,
}

impl From<WorkspaceModeArg> for paddock_vmm::sandbox::workspace::WorkspaceMode {
    fn from(mode: WorkspaceModeArg) -> Self {
        match mode {
            WorkspaceModeArg::Live => Self::Live,
            WorkspaceModeArg::Cow => Self::Cow,
        }
    }
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Keep stdin attached (Docker's -i). Without -t, stdin is always forwarded; with -t, it
    /// makes the terminal interactive.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a terminal in the guest when stdin is a terminal (Docker's -t);
    /// stdout and stderr are then one stream.
    #[arg(short, long)]
    pub tty: bool,
    /// The sandbox.
    pub name: String,
    #[command(flatten)]
    pub cmd: CommandArgs,
}

#[derive(Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The session whose command has this pid in the guest (default: the most recently
    /// detached).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// The sandbox.
    pub name: String,
}

/// The command to run in a sandbox, and how.
#[derive(Args)]
pub struct CommandArgs {
    /// Kill the command after this many seconds (a `run` sandbox ends with it); exit status 124.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Environment variable for the command (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the command inside the guest.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AgentsArgs {
    /// The agent image. Default: $PADDOCK_IMAGE, else the one `cargo xtask rootfs --profile
    /// agent` built.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Print JSON (`{"image", "agents": [{"name", "command", "version"}]}`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct NameArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The sandbox.
    pub name: String,
}

#[derive(Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Show the changes of files as a unified diff (text files; binary ones and ones over
    /// 16 MiB are named).
    #[arg(long)]
    pub patch: bool,
    /// The sandbox.
    pub name: String,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The sandbox.
    pub name: String,
    /// Only these paths and what lies beneath them (relative to the workspace, or absolute
    /// within it).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Args)]
pub struct RmArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Stop the sandbox first if it is running.
    #[arg(short, long)]
    pub force: bool,
    /// The sandboxes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The sandbox.
    pub name: String,
    /// The snapshot directory (created if needed).
    pub dir: PathBuf,
    /// Stop the sandbox after the snapshot instead of resuming it.
    #[arg(long)]
    pub stop: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The sandbox.
    pub name: String,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Keep SIZE warm VMMs (default 2): start them (stopping any beyond SIZE), wait until they
    /// are ready, and show the pool. Only sandboxes started with the same options (and the same
    /// paddock binary and PADDOCK_* environment) claim them.
    Fill(PoolFillArgs),
    /// Show the pool's size and its warm VMMs (state, pid, resident memory, age).
    Show(PoolShowArgs),
    /// Stop every warm VMM and set the size to 0.
    Drain(PoolDrainArgs),
}

#[derive(Args)]
pub struct PoolFillArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// How many warm VMMs to keep.
    #[arg(default_value_t = 2)]
    pub size: usize,
    /// DEBUGGING ONLY: warm VMMs without seccomp filters (claimed only by sandboxes started
    /// with --no-seccomp).
    #[arg(long)]
    pub no_seccomp: bool,
    /// When paddock runs as root: the user the warm VMMs become once claimed (as `start`'s).
    #[arg(long, value_name = "USER")]
    pub vmm_user: Option<String>,
    /// Print the pool as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PoolShowArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PoolDrainArgs {
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Boot the guest once, wait until it is ready (agent profile: the Docker engine answers),
    /// and snapshot it into the cache; prints the template's key.
    Build(TemplateBuildArgs),
    /// List the templates in the cache.
    Ls(TemplateLsArgs),
    /// Remove templates (by key or unique key prefix); running sandboxes are not affected.
    Rm(TemplateRmArgs),
}

#[derive(Args)]
pub struct TemplateBuildArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Build it again even if a template of this shape exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct TemplateLsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TemplateRmArgs {
    /// Remove every template.
    #[arg(long, conflicts_with = "keys")]
    pub all: bool,
    /// Keys or unique key prefixes (at least 4 hex digits).
    #[arg(required_unless_present = "all")]
    pub keys: Vec<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Name of the new sandbox (default: a generated one, printed).
    #[arg(long)]
    pub name: Option<String>,
    /// The snapshot's root image moved: use this file (it must have the same content).
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// (The default now: the guest console always goes to <state>/sandboxes/<name>/console.log.)
    #[arg(long, hide = true)]
    pub console_log: bool,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
}

/// `--timings [--json]`: where a restore, reset or fork's time went.
#[derive(Args, Clone, Copy, Debug)]
pub struct TimingArgs {
    /// Report where the time went, span by span (docs/BENCHMARKS.md), on stderr.
    #[arg(long)]
    pub timings: bool,
    /// With --timings: the report as JSON on stdout instead (for harnesses).
    #[arg(long, requires = "timings")]
    pub json: bool,
}

#[derive(Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The sandbox.
    pub name: String,
    /// Reset to this snapshot (same vCPU count and memory size) instead of the latest snapshot
    /// taken, or the origin.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    #[command(flatten)]
    pub timings: TimingArgs,
}

#[derive(Args)]
pub struct ForkArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The snapshot directory.
    pub dir: PathBuf,
    /// How many sandboxes.
    #[arg(long, value_name = "K")]
    pub count: usize,
    /// Names are PREFIX-0 .. PREFIX-(K-1).
    #[arg(long, value_name = "NAME", default_value = "fork")]
    pub prefix: String,
    #[command(flatten)]
    pub workspace: WorkspaceArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
}

#[derive(Args)]
pub struct VmmArgs {
    #[arg(long)]
    pub state_dir: PathBuf,
    #[arg(long, required_unless_present = "pool_entry")]
    pub name: Option<String>,
    /// The launch description (JSON).
    #[arg(long, required_unless_present = "pool_entry")]
    pub launch: Option<String>,
    /// Be a warm VMM of the pool, in this entry: make the VM ahead and wait to be claimed.
    #[arg(long, conflicts_with_all = ["name", "launch", "cpus"])]
    pub pool_entry: Option<String>,
    /// The CPU quota, in CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// No seccomp filters (debugging only).
    #[arg(long)]
    pub no_seccomp: bool,
    /// The user to become (UID:GID), when started by root.
    #[arg(long, value_name = "UID:GID")]
    pub vmm_user: Option<String>,
}

/// What a sandbox VM is built from.
#[derive(Args, Clone, Debug)]
pub struct MachineArgs {
    /// The guest: `agent` (Debian with its own Docker engine; the default, or $PADDOCK_PROFILE)
    /// or `minimal` (guest-init and busybox only).
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<paddock_vmm::artifacts::Profile>,
    /// Guest kernel (uncompressed vmlinux). Default: $PADDOCK_KERNEL, else the one
    /// `cargo xtask kernel` built.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The initramfs holding guest-init. Default: $PADDOCK_ROOTFS, else the one
    /// `cargo xtask rootfs` built.
    #[arg(long, value_name = "PATH")]
    pub rootfs: Option<PathBuf>,
    /// The agent profile's read-only root image. Default: $PADDOCK_IMAGE, else the one
    /// `cargo xtask rootfs --profile agent` built.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// A writable scratch disk (a raw file; the guest sees it as /dev/vdb, or /dev/vda in the
    /// minimal profile). Its writes go to the file and are not undone by a reset; a sandbox with
    /// a disk boots instead of restoring a template.
    #[arg(long, value_name = "PATH")]
    pub disk: Option<PathBuf>,
    /// Boot the kernel instead of restoring the matching template.
    #[arg(long)]
    pub cold_boot: bool,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub vcpus: u8,
    /// Guest memory in MiB (default: 2048 for the agent profile, 256 for minimal).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Append the guest's serial console to this file (default: kept in memory and shown only
    /// when the guest fails to boot).
    #[arg(long, value_name = "PATH")]
    pub console: Option<PathBuf>,
    /// Extra guest kernel arguments (e.g. "loglevel=7" to see the kernel's boot log in --console).
    #[arg(long, value_name = "ARGS")]
    pub kernel_args: Option<String>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The agent to run: claude, gemini, codex or shell. Without one, the command after `--`
    /// runs in a throwaway sandbox.
    #[arg(value_name = "AGENT", value_parser = clap::builder::PossibleValuesParser::new(["claude", "gemini", "codex", "shell"]))]
    pub agent: Option<String>,
    /// The project directory the agent is for (default: the current directory).
    #[arg(value_name = "DIR", requires = "agent")]
    pub dir: Option<PathBuf>,
    /// The sandbox's name (default: the agent and DIR's name, e.g. `claude-myproject`).
    #[arg(long, value_name = "NAME", requires = "agent")]
    pub name: Option<String>,
    /// Remove the sandbox when the agent exits (it is kept when you detach).
    #[arg(long, requires = "agent")]
    pub rm: bool,
    /// Keep the agent's own permission prompts (no unattended flags).
    #[arg(long, requires = "agent")]
    pub ask: bool,
    /// How DIR is shared: `live` (the agent's changes go straight to DIR) or `cow` (they stay
    /// in the sandbox until `paddock diff` and `paddock apply`; a reset drops them).
    #[arg(long, value_name = "MODE", default_value = "live", requires = "agent")]
    pub workspace_mode: WorkspaceModeArg,
    #[command(flatten)]
    pub egress: EgressArgs,
    /// A terminal for the command whenever stdin is one, even if stdout is not.
    #[arg(short, long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never a terminal: stdin forwarded, stdout and stderr apart, even on a terminal.
    #[arg(short = 'T', long)]
    pub no_tty: bool,
    /// Accepted for Docker's `-it` habit: `run` always forwards stdin.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give up if guest-init is not ready after this many seconds (default: 120, or 600 for a
    /// boot from a root image, which waits for the Docker engine).
    #[arg(long, value_name = "SECS")]
    pub boot_timeout: Option<u64>,
    /// Kill the command after this many seconds (a throwaway sandbox ends with it); exit
    /// status 124.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Environment variable for the command (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the command inside the guest (default for an agent: DIR's path).
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// With an agent: its arguments (for `shell`, the command to run). Without: the command.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

impl RunArgs {
    /// The command part, for a run without an agent.
    pub fn command(&self) -> CommandArgs {
        CommandArgs {
            timeout: self.timeout,
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            command: self.args.clone(),
        }
    }
}

/// Sets up `tracing` output on stderr according to `-v`.
pub fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    init_tracing_from("PADDOCK_LOG", level);
}

/// Sets up `tracing` output on stderr: the filter in environment variable `var`, else `level`.
pub fn init_tracing_from(var: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Plain stderr, except in a VMM process, which caps its log (a guest can trigger its
        // warnings).
        .with_writer(|| paddock_vmm::capped_log::VmmLogWriter)
        .with_target(false)
        .try_init();
}

/// Runs the parsed command; returns the process exit status.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Start(args) => lifecycle::start(args),
        Command::Exec(args) => run::exec(args),
        Command::Attach(args) => attach::attach(args),
        Command::Ls(args) => lifecycle::ls(args),
        Command::Stop(args) => lifecycle::stop(args),
        Command::Rm(args) => lifecycle::rm(args),
        Command::Snapshot(args) => lifecycle::snapshot(args),
        Command::Restore(args) => lifecycle::restore(args),
        Command::Reset(args) => lifecycle::reset(args),
        Command::Fork(args) => lifecycle::fork(args),
        Command::Logs(args) => lifecycle::logs(args),
        Command::Diff(args) => review::diff(args),
        Command::Apply(args) => review::apply(args),
        Command::Agents(args) => agents::agents(args),
        Command::Template(command) => template::dispatch(command),
        Command::Pool(command) => pool::dispatch(command),
        Command::Policy(args) => policy::dispatch(args),
        Command::Secret(command) => secret::dispatch(command),
    }
}

/// Splits `KEY=VALUE` arguments.
pub fn parse_env(vars: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    vars.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--env expects KEY=VALUE, got {kv:?}"),
        })
        .collect()
}
