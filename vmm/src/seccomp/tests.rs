//! The filters, installed in forked children: what they allow runs, what they do not kills.

use super::*;

/// Forks; the child installs `kind`'s filter and runs `body`, whose return value is its exit
/// status. Returns how the child ended: `Ok(status)` or `Err(signal)`.
///
/// The child only makes raw syscalls (no allocation: the parent is multi-threaded).
fn in_filtered_child(filters: &Filters, kind: ThreadKind, body: fn() -> i32) -> Result<i32, i32> {
    // SAFETY: the child calls only async-signal-safe code (the filter install builds its
    // program argument on the stack, `body` makes raw syscalls) and ends with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match filters.install(kind) {
            Ok(()) => body(),
            Err(_) => 99,
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(libc::WTERMSIG(status))
    }
}

fn enforcing() -> Filters {
    Filters::new(Mode::Enforce)
}

/// The filter data, as the build script compiles it.
const FILTER_DATA: &str = include_str!("../../seccomp/x86_64.json");

#[test]
fn allowed_syscalls_run_under_every_filter() {
    let filters = enforcing();
    for kind in ThreadKind::ALL {
        let ended = in_filtered_child(&filters, kind, || {
            // SAFETY: getpid and a zero-length write to stderr have no memory effects.
            unsafe {
                libc::getpid();
                libc::write(2, std::ptr::null(), 0);
            }
            7
        });
        assert_eq!(ended, Ok(7), "{kind}");
    }
}

#[test]
fn a_syscall_outside_the_filter_kills_the_process_with_sigsys() {
    let filters = enforcing();
    for kind in ThreadKind::ALL.into_iter().filter(|k| k.kills()) {
        let ended = in_filtered_child(&filters, kind, || {
            // SAFETY: getppid has no memory effects; no filter allows it.
            unsafe { libc::syscall(libc::SYS_getppid) };
            0
        });
        assert_eq!(ended, Err(libc::SIGSYS), "{kind}");
    }
}

#[test]
fn no_thread_may_start_a_program_or_a_process() {
    let filters = enforcing();
    for kind in ThreadKind::ALL.into_iter().filter(|k| k.kills()) {
        let ended = in_filtered_child(&filters, kind, || {
            // SAFETY: fork's raw syscall; if it were allowed, the child half exits at once.
            let pid = unsafe { libc::syscall(libc::SYS_fork) };
            if pid == 0 {
                // SAFETY: ends the grandchild.
                unsafe { libc::_exit(0) };
            }
            0
        });
        assert_eq!(ended, Err(libc::SIGSYS), "fork, {kind}");
        let ended = in_filtered_child(&filters, kind, || {
            // SAFETY: execve of a null path fails with EFAULT if it is allowed at all.
            unsafe {
                libc::syscall(
                    libc::SYS_execve,
                    std::ptr::null::<u8>(),
                    std::ptr::null::<u8>(),
                    std::ptr::null::<u8>(),
                )
            };
            0
        });
        assert_eq!(ended, Err(libc::SIGSYS), "execve, {kind}");
    }
}

#[test]
fn sockets_are_unix_sockets_only() {
    let filters = enforcing();
    for kind in [ThreadKind::Vmm, ThreadKind::Events] {
        let unix = in_filtered_child(&filters, kind, || {
            // SAFETY: creating (and leaking, in a child about to exit) a socket.
            let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            i32::from(fd >= 0)
        });
        assert_eq!(unix, Ok(1), "AF_UNIX, {kind}");
        let inet = in_filtered_child(&filters, kind, || {
            // SAFETY: as above.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            0
        });
        assert_eq!(inet, Err(libc::SIGSYS), "AF_INET, {kind}");
    }
    let vcpu = in_filtered_child(&filters, ThreadKind::Vcpu, || {
        // SAFETY: as above.
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        0
    });
    assert_eq!(vcpu, Err(libc::SIGSYS), "a vCPU opens no socket at all");
}

#[test]
fn the_workspace_server_makes_no_socket_connection_or_ioctl() {
    let filters = enforcing();
    let socket = in_filtered_child(&filters, ThreadKind::Workspace, || {
        // SAFETY: creating (and leaking, in a child about to exit) a socket.
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        0
    });
    assert_eq!(socket, Err(libc::SIGSYS), "socket");
    let connect = in_filtered_child(&filters, ThreadKind::Workspace, || {
        // SAFETY: connect on stderr with no address: refused by the kernel if it got there.
        unsafe { libc::connect(2, std::ptr::null(), 0) };
        0
    });
    assert_eq!(connect, Err(libc::SIGSYS), "connect");
    let ioctl = in_filtered_child(&filters, ThreadKind::Workspace, || {
        // SAFETY: an ioctl on stderr with no argument.
        unsafe { libc::ioctl(2, libc::FIONREAD, std::ptr::null::<u8>()) };
        0
    });
    assert_eq!(ioctl, Err(libc::SIGSYS), "ioctl");
    // File work beneath its directory goes ahead.
    let stat = in_filtered_child(&filters, ThreadKind::Workspace, || {
        // SAFETY: fstat of stderr into a stack buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        i32::from(unsafe { libc::fstat(2, &mut st) } == 0)
    });
    assert_eq!(stat, Ok(1), "fstat");
}

#[test]
fn ioctls_are_the_listed_requests_only() {
    let filters = enforcing();
    // KVM_RUN on stderr fails (ENOTTY) but is allowed for a vCPU.
    let run = in_filtered_child(&filters, ThreadKind::Vcpu, || {
        // SAFETY: an ioctl on stderr that the kernel refuses; no memory is passed.
        unsafe { libc::ioctl(2, 0xae80) };
        3
    });
    assert_eq!(run, Ok(3));
    // TIOCSTI (push input into a terminal) is on no list.
    for kind in ThreadKind::ALL.into_iter().filter(|k| k.kills()) {
        let sti = in_filtered_child(&filters, kind, || {
            // SAFETY: as above; a null argument.
            unsafe { libc::ioctl(2, libc::TIOCSTI, std::ptr::null::<u8>()) };
            0
        });
        assert_eq!(sti, Err(libc::SIGSYS), "TIOCSTI, {kind}");
    }
    // PAGEMAP_SCAN (finding a reset's written pages) is the VMM thread's, no one else's.
    let scan = in_filtered_child(&filters, ThreadKind::Vmm, || {
        // SAFETY: an ioctl on stderr that the kernel refuses (ENOTTY); no memory is passed.
        unsafe {
            libc::ioctl(
                2,
                crate::vstate::pagemap::PAGEMAP_SCAN as _,
                std::ptr::null::<u8>(),
            )
        };
        4
    });
    assert_eq!(scan, Ok(4));
    let scan = in_filtered_child(&filters, ThreadKind::Vcpu, || {
        // SAFETY: as above.
        unsafe {
            libc::ioctl(
                2,
                crate::vstate::pagemap::PAGEMAP_SCAN as _,
                std::ptr::null::<u8>(),
            )
        };
        0
    });
    assert_eq!(scan, Err(libc::SIGSYS));
    // The event loop has no KVM request at all.
    let events = in_filtered_child(&filters, ThreadKind::Events, || {
        // SAFETY: as above.
        unsafe { libc::ioctl(2, 0xae80) };
        0
    });
    assert_eq!(events, Err(libc::SIGSYS));
}

#[test]
fn log_mode_lets_the_syscall_through() {
    let filters = Filters::new(Mode::Log);
    let ended = in_filtered_child(&filters, ThreadKind::Vcpu, || {
        // SAFETY: getuid has no memory effects.
        let uid = unsafe { libc::syscall(libc::SYS_getuid) };
        i32::from(uid >= 0)
    });
    assert_eq!(ended, Ok(1));
}

#[test]
fn the_data_forbids_starting_threads_processes_and_programs() {
    let doc: serde_json::Value = serde_json::from_str(FILTER_DATA).unwrap();
    for list in ["common", "vmm", "events", "vcpu"] {
        for rule in doc[list].as_array().unwrap() {
            let name = rule["syscall"].as_str().unwrap();
            assert!(
                !matches!(
                    name,
                    "clone" | "clone3" | "fork" | "vfork" | "execve" | "execveat" | "ptrace"
                ),
                "{list} allows {name}"
            );
            if name == "socket" {
                assert!(
                    rule.get("args").is_some(),
                    "{list}: socket without a family"
                );
            }
            if name == "ioctl" {
                assert!(
                    rule.get("args").is_some(),
                    "{list}: ioctl without a request"
                );
            }
        }
    }
}

#[test]
fn bad_filter_data_is_a_clear_error() {
    assert!(matches!(
        data::seccompiler_json("{", "kill_process"),
        Err(data::DataError::Json(_))
    ));
    assert!(matches!(
        data::seccompiler_json(r#"{"common": [], "vmm": [], "events": []}"#, "kill_process"),
        Err(data::DataError::Missing("vcpu"))
    ));
    let unknown = r#"{"common": [{"syscall": "no_such_call"}], "vmm": [], "events": [], "vcpu": [], "workspace": [], "egress": []}"#;
    let json = data::seccompiler_json(unknown, "kill_process").unwrap();
    assert!(
        seccompiler::compile_from_json(json.as_bytes(), seccompiler::TargetArch::x86_64).is_err()
    );
}

#[test]
fn the_compiled_in_filters_are_the_data_compiled() {
    for (mode, action) in [(Mode::Enforce, "kill_process"), (Mode::Log, "log")] {
        let json = data::seccompiler_json(FILTER_DATA, action).unwrap();
        let mut compiled =
            seccompiler::compile_from_json(json.as_bytes(), seccompiler::TargetArch::x86_64)
                .unwrap();
        let filters = Filters::new(mode);
        assert_eq!(compiled.remove("vmm").unwrap(), filters.vmm);
        assert_eq!(compiled.remove("events").unwrap(), filters.events);
        assert_eq!(compiled.remove("vcpu").unwrap(), filters.vcpu);
        assert_eq!(compiled.remove("workspace").unwrap(), filters.workspace);
        assert_eq!(compiled.remove("egress").unwrap(), filters.egress);
    }
}

/// What a filtered child runs; its return value is its exit status.
type ChildBody = fn() -> i32;

/// Whether the last syscall failed with EPERM (in a forked child: no allocation).
fn refused() -> bool {
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[test]
fn the_egress_proxy_is_refused_what_it_does_not_need_and_not_killed() {
    let filters = enforcing();
    // Each body returns 1 when its syscall was refused with EPERM (and the process lived on).
    let refusals: [(&str, ChildBody); 6] = [
        ("execve", || {
            // SAFETY: execve of a null path; refused before the kernel looks at it.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_execve,
                    std::ptr::null::<u8>(),
                    std::ptr::null::<u8>(),
                    std::ptr::null::<u8>(),
                )
            };
            i32::from(rc == -1 && refused())
        }),
        ("fork", || {
            // SAFETY: fork's raw syscall; were it allowed, the child half exits at once.
            let pid = unsafe { libc::syscall(libc::SYS_fork) };
            if pid == 0 {
                // SAFETY: ends the grandchild.
                unsafe { libc::_exit(0) };
            }
            i32::from(pid == -1 && refused())
        }),
        ("ptrace", || {
            // SAFETY: PTRACE_ATTACH to ourselves; refused before the kernel looks at it.
            let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, libc::getpid(), 0, 0) };
            i32::from(rc == -1 && refused())
        }),
        ("kill with a real signal", || {
            // SAFETY: SIGTERM to ourselves, refused by the filter (only signal 0 passes); were
            // it not, only this child would end.
            let rc = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            i32::from(rc == -1 && refused())
        }),
        ("a raw packet socket", || {
            // SAFETY: creating a socket; refused by the filter (AF_PACKET is not listed).
            let rc = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            i32::from(rc == -1 && refused())
        }),
        ("mount", || {
            // SAFETY: mount with null arguments; refused before the kernel looks at them.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    std::ptr::null(),
                )
            };
            i32::from(rc == -1 && refused())
        }),
    ];
    for (what, body) in refusals {
        assert_eq!(
            in_filtered_child(&filters, ThreadKind::Egress, body),
            Ok(1),
            "{what}"
        );
    }
    // What it needs goes ahead: an outgoing TCP socket, whether a process lives.
    let allowed = in_filtered_child(&filters, ThreadKind::Egress, || {
        // SAFETY: a socket (left to the exiting child) and signal 0 to ourselves.
        let socket = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
        // SAFETY: as above.
        let alive = unsafe { libc::kill(libc::getpid(), 0) };
        i32::from(socket >= 0 && alive == 0)
    });
    assert_eq!(allowed, Ok(1));
}

#[test]
fn the_event_loop_may_only_open_files_read_only() {
    let filters = enforcing();
    let read = in_filtered_child(&filters, ThreadKind::Events, || {
        // SAFETY: a NUL-terminated path; the descriptor is left to the exiting child.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, c"/dev/null".as_ptr(), libc::O_RDONLY) };
        i32::from(fd >= 0)
    });
    assert_eq!(read, Ok(1));
    let write = in_filtered_child(&filters, ThreadKind::Events, || {
        // SAFETY: as above.
        unsafe { libc::openat(libc::AT_FDCWD, c"/dev/null".as_ptr(), libc::O_WRONLY) };
        0
    });
    assert_eq!(write, Err(libc::SIGSYS));
    let vcpu = in_filtered_child(&filters, ThreadKind::Vcpu, || {
        // SAFETY: as above.
        unsafe { libc::openat(libc::AT_FDCWD, c"/dev/null".as_ptr(), libc::O_RDONLY) };
        0
    });
    assert_eq!(vcpu, Err(libc::SIGSYS), "a vCPU opens nothing");
}
