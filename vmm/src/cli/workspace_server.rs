//! `paddock __workspace`: the workspace server process of one sandbox (started by `start
//! --workspace` and `run AGENT DIR` beside the VMM; it ends when the VMM does). It opens the
//! directory, then confines itself to it: a mount namespace holding the directory alone (at its
//! own path), no network, no capabilities and no way to gain one, and a seccomp filter for
//! every thread (`workspace` in `vmm/seccomp/x86_64.json`), before it reads a byte from the
//! guest.

use super::WorkspaceServerArgs;
use anyhow::Context;
use paddock_vmm::sandbox::jail::{Bind, JailPlan};
use paddock_vmm::sandbox::rlimits;
use paddock_vmm::sandbox::workspace::WorkspaceMode;
use paddock_vmm::seccomp;
use paddock_workspace::{HostChanges, Owner, WorkspaceServer};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

pub fn run(args: WorkspaceServerArgs) -> anyhow::Result<i32> {
    super::init_tracing_from("PADDOCK_WORKSPACE_LOG", "info");
    let mode = if args.cow {
        WorkspaceMode::Cow
    } else {
        WorkspaceMode::Live
    };
    // The agent image's user: what the host user's files look like in the guest.
    let agent = &rootfs_builder::agent::AGENT.user;
    let guest = Owner {
        uid: agent.uid,
        gid: agent.gid,
    };
    let open_files =
        rlimits::raise_open_files().context("raising the workspace server's open-file limit")?;
    tracing::debug!("open-file limit {open_files}");
    // `PADDOCK_WORKSPACE_WATCH=off`: the host's changes polled, as before the watch (for
    // comparing the two in one lab boot).
    let changes = match std::env::var("PADDOCK_WORKSPACE_WATCH").as_deref() {
        Ok("off") => HostChanges::Polled,
        _ => HostChanges::Watched,
    };
    let server = Arc::new(WorkspaceServer::with_host_changes(
        &args.dir, mode, guest, changes,
    )?);
    let vmm = pidfd(args.vmm_pid)
        .with_context(|| format!("watching the sandbox's VMM (pid {})", args.vmm_pid))?;
    // The control socket first: the host loads a snapshot's state through it as soon as the
    // guest's socket listens.
    let control = listen(&args.control_socket)?;
    let listener = listen(&args.socket)?;
    let plan = JailPlan {
        binds: vec![Bind {
            path: args.dir.clone(),
            writable: true,
        }],
        bare: true,
        keep_network: false,
    };
    super::confine::confine_helper(&plan, &args.jail_root, "the workspace server")?;
    let (started, running) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("vmm-watch".into())
        .spawn(move || {
            let _ = started.send(());
            exit_when_readable(&vmm)
        })?;
    // Running its own code: the syscalls a thread makes as it starts are behind it.
    running.recv().context("starting the VMM watch")?;
    let sessions = server
        .start_sessions()
        .context("starting the session thread")?;
    server
        .start_control(control)
        .context("starting the control thread")?;
    // Every thread exists now; the filter covers them all and starts none.
    if args.no_seccomp {
        tracing::warn!(
            "the workspace server runs WITHOUT its seccomp filter (--no-seccomp): debugging only"
        );
    } else {
        seccomp::Filters::new(seccomp::Mode::from_env())
            .install_on_all_threads(seccomp::ThreadKind::Workspace)
            .context("confining the workspace server")?;
    }
    tracing::info!("serving {}", args.dir.display());
    sessions
        .accept(&listener)
        .context("accepting guest connections")?;
    Ok(0)
}

/// A listening socket at `path` (anything there before is replaced). A VMM that runs as a user
/// of its own reaches it through its sandbox's directory, which is closed to everyone else (see
/// `vmm_user::share_dir`): there it is open to all.
fn listen(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    if path
        .parent()
        .is_some_and(paddock_vmm::sandbox::vmm_user::dir_is_shared)
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .with_context(|| format!("opening {} to the VMM", path.display()))?;
    }
    Ok(listener)
}

/// A pidfd of `pid`: readable once the process has ended (it works without `/proc`, which the
/// jail does not have).
fn pidfd(pid: u32) -> std::io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Ends the process once the VMM behind `pidfd` has ended.
fn exit_when_readable(pidfd: &OwnedFd) {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, -1) };
        if ready > 0 {
            tracing::info!("the sandbox's VMM ended; the workspace server ends");
            std::process::exit(0);
        }
    }
}
