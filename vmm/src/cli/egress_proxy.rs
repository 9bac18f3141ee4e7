//! `paddock __egress`: the egress proxy process of one sandbox (started by `start`, `run`,
//! `restore` and `fork` next to the VMM; it ends when the VMM does). It reads the policy files
//! and the secrets; the VMM reads neither. It holds no capability and cannot gain one, runs in
//! its own mount namespace that shows only the files it keeps using (the host's network stays:
//! it connects out), and every thread runs under its seccomp filter (`egress` in
//! `vmm/seccomp/x86_64.json`) before the first guest connection is accepted.

use super::EgressProxyArgs;
use anyhow::Context;
use paddock_egress::mitm::SandboxCa;
use paddock_egress::proxy::{self, ProxyConfig};
use paddock_egress::secrets::{Credentials, SecretStore};
use paddock_vmm::sandbox::egress::{self, EgressFiles};
use paddock_vmm::sandbox::SandboxPaths;
use paddock_vmm::seccomp;
use std::net::IpAddr;
use std::path::PathBuf;

/// Names the proxy resolves to given addresses instead of asking DNS (`name=ip,...`): for tests
/// and private setups. The addresses are still checked against the policy and the deny set.
const RESOLVE_ENV: &str = "PADDOCK_EGRESS_RESOLVE";
/// Extra root certificates (PEM files, `:`-separated) the proxy trusts for upstream servers
/// whose connections it terminates (hosts with a secret).
const ROOTS_ENV: &str = "PADDOCK_EGRESS_EXTRA_ROOTS";

pub fn run(args: EgressProxyArgs) -> anyhow::Result<i32> {
    // Its own log level (`PADDOCK_EGRESS_LOG`, e.g. `debug`), apart from the commands'.
    super::init_tracing_from("PADDOCK_EGRESS_LOG", "info");
    // Absolute: the jail changes the root and the working directory.
    let state_dir = std::path::absolute(&args.state_dir)
        .with_context(|| format!("the state directory {}", args.state_dir.display()))?;
    let paths = SandboxPaths::new(&state_dir, &args.name)?;
    let files = EgressFiles::new(&state_dir);
    let store = SecretStore::open(&files.secrets())?;
    let credentials = Credentials::from_store(&store);
    let ca = SandboxCa::load_or_create(&files.ca_dir(&args.ca))
        .with_context(|| format!("the sandbox's CA {}", args.ca))?;
    let mut config = ProxyConfig::new(
        args.name.clone(),
        egress::socket(&paths),
        files.global_policy(),
        files.log(),
        files.names(),
    );
    config.sandbox_policy = Some(egress::sandbox_policy(&paths));
    if let Some(fd) = args.listen_fd {
        config.listener = Some(inherited_listener(fd)?);
    }
    config.resolve_overrides = resolve_overrides()?;
    config.extra_roots = std::env::var_os(ROOTS_ENV)
        .map(|v| std::env::split_paths(&v).collect::<Vec<PathBuf>>())
        .unwrap_or_default()
        .iter()
        .map(std::path::absolute)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{ROOTS_ENV}: a path cannot be made absolute"))?;
    config.credentials = credentials;
    config.ca = Some(ca);
    config.exit_when_pid_gone = Some(args.vmm_pid);
    // Its secrets and CA read, and still one thread: into its jail, which holds only the files
    // it goes on using (see `egress::jail_plan`) and keeps the host's network.
    files
        .create_config()
        .context("creating the configuration directory")?;
    let plan = egress::jail_plan(&files, &paths, &config.extra_roots);
    // It needs no capability (its files are its user's, its sockets are Unix sockets and
    // outgoing TCP): none left, and none to gain by exec, before it reads a byte from the guest.
    super::confine::confine_helper(&plan, &egress::jail_root(&paths), "the egress proxy")?;
    // Once its files and socket are open and all its threads run, before the first guest
    // connection: a filter on every thread (an unlisted syscall fails with EPERM).
    if args.no_seccomp {
        tracing::warn!(
            "the egress proxy runs WITHOUT its seccomp filter (--no-seccomp): debugging only"
        );
    } else {
        config.confine = Some(Box::new(|| {
            seccomp::Filters::new(seccomp::Mode::from_env())
                .install_on_all_threads(seccomp::ThreadKind::Egress)
                .map_err(|e| std::io::Error::other(seccomp::describe(&e)))
        }));
    }
    // A stopped or crashed sandbox's proxy is gone within half a second.
    config.limits.pid_poll_interval = std::time::Duration::from_millis(500);
    proxy::run(config)?;
    Ok(0)
}

/// The listening Unix socket the starting process left at descriptor `fd` (checked to be one).
fn inherited_listener(fd: i32) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: fstat writes into `stat`; an invalid descriptor only makes it fail.
    let kind = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut stat) == 0).then_some(stat.st_mode & libc::S_IFMT)
    };
    anyhow::ensure!(
        kind == Some(libc::S_IFSOCK),
        "--listen-fd {fd} is not an open socket"
    );
    // SAFETY: `fd` is an open socket this process inherited for this purpose and nothing else
    // owns; the listener takes it over.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(std::os::unix::net::UnixListener::from(owned))
}

fn resolve_overrides() -> anyhow::Result<Vec<(String, IpAddr)>> {
    let Ok(spec) = std::env::var(RESOLVE_ENV) else {
        return Ok(Vec::new());
    };
    spec.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (name, ip) = entry
                .split_once('=')
                .with_context(|| format!("{RESOLVE_ENV}: expected name=address, got {entry:?}"))?;
            let ip = ip
                .trim()
                .parse()
                .with_context(|| format!("{RESOLVE_ENV}: bad address in {entry:?}"))?;
            Ok((name.trim().to_ascii_lowercase(), ip))
        })
        .collect()
}
