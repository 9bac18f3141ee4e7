//! Shared helpers for the end-to-end tests.
// Test code: its casts convert small literal sizes, indices and counts.
#![allow(clippy::cast_possible_truncation)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one `paddock` command of a test may take before it counts as hung
/// (`$PADDOCK_E2E_COMMAND_LIMIT` seconds, default 300: a cold agent boot in the lab takes ~50).
pub fn command_limit() -> Duration {
    let secs = std::env::var("PADDOCK_E2E_COMMAND_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// Whether this machine can run the end-to-end tests; panics when they are required but can't.
pub fn e2e_available() -> bool {
    let required = std::env::var("PADDOCK_E2E_REQUIRED").is_ok_and(|v| v == "1");
    let problem = match paddock_vmm::kvm::open_kvm() {
        Err(e) => Some(e.to_string()),
        Ok(_) => {
            let kernel = paddock_vmm::config::default_kernel(None);
            let rootfs = paddock_vmm::config::default_rootfs(None);
            if !kernel.is_file() || !rootfs.is_file() {
                Some(format!(
                    "guest artifacts missing ({} / {}); run `cargo xtask build`",
                    kernel.display(),
                    rootfs.display()
                ))
            } else {
                None
            }
        }
    };
    match problem {
        None => true,
        Some(p) if required => panic!("end-to-end tests required but cannot run: {p}"),
        Some(p) => {
            eprintln!("skipped: {p}");
            false
        }
    }
}

/// Whether the agent profile's root image is here too (after `e2e_available`); panics when the
/// end-to-end tests are required but it is missing.
pub fn agent_image_available() -> bool {
    let image = paddock_vmm::artifacts::Profile::Agent
        .artifacts(None, None, None)
        .image
        .expect("the agent profile has an image");
    if image.is_file() {
        return true;
    }
    let problem = format!(
        "agent root image missing ({}); run `cargo xtask rootfs --profile agent`",
        image.display()
    );
    if std::env::var("PADDOCK_E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("end-to-end tests required but cannot run: {problem}");
    }
    eprintln!("skipped: {problem}");
    false
}

/// The `paddock` binary under test.
pub fn paddock_bin() -> PathBuf {
    std::env::var_os("PADDOCK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_paddock")))
}

/// Lossy text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory per test: TMPDIR and the sandbox state directory live in it, so
/// leftovers can be checked and tests cannot see each other's sandboxes.
pub struct Scratch {
    dir: tempfile::TempDir,
    profile: &'static str,
}

impl Scratch {
    /// A fresh scratch area whose sandboxes are of the `minimal` profile (busybox guest).
    pub fn new() -> Self {
        Self::with_profile("minimal")
    }

    /// A fresh scratch area whose sandboxes are of the `agent` profile (Debian, Docker engine).
    pub fn agent() -> Self {
        Self::with_profile("agent")
    }

    fn with_profile(profile: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir");
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        Self { dir, profile }
    }
    /// A path inside the scratch area (outside TMPDIR).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The sandbox state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    /// TMPDIR of the paddock processes.
    /// The configuration directory (global egress policy, secrets).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }
    /// A `paddock` command with this scratch's environment.
    pub fn paddock(&self) -> Command {
        let mut cmd = Command::new(paddock_bin());
        cmd.env("TMPDIR", self.tmp())
            .env("XDG_RUNTIME_DIR", self.tmp())
            .env("XDG_STATE_HOME", self.dir.path().join("xdg-state"))
            .env("PADDOCK_CONFIG_DIR", self.config_dir())
            .env("PADDOCK_PROFILE", self.profile)
            .env("PADDOCK_BIN", paddock_bin());
        cmd
    }
    fn with_state(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // `template`, `agents` and `secret` take no state directory (templates live in the
        // cache, the agents in the image, secrets in the configuration directory).
        // `pool` takes it after its own subcommand.
        let at = if args.first() == Some(&"pool") { 2 } else { 1 };
        if !matches!(args.first(), Some(&"template" | &"agents" | &"secret")) {
            v.insert(at, "--state-dir".into());
            v.insert(at + 1, self.state_dir().display().to_string());
        }
        v
    }
    /// A `paddock ARGS` command (with --state-dir), not yet run.
    pub fn paddock_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.paddock();
        cmd.args(self.with_state(args));
        cmd
    }
    /// Runs `paddock ARGS` (with --state-dir) and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }
    /// Like `cli`, with extra environment.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.paddock();
        cmd.args(self.with_state(args)).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.output_within(cmd, args, command_limit())
    }

    /// Runs `cmd` (a `paddock` command) with `stdin` written to it, within the command limit
    /// (a hang is a failure that says where, not a wait until the whole run is cut off).
    pub fn output_with_stdin(&self, mut cmd: Command, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paddock");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let pid = child.id();
        let limit = command_limit();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(limit).is_err() {
                kill9(pid);
                true
            } else {
                false
            }
        });
        let out = child.wait_with_output().expect("wait paddock");
        let _ = done.send(());
        assert!(
            !watchdog.join().unwrap(),
            "paddock {args:?} still ran after {} s and was killed; stderr:\n{}\n{}",
            limit.as_secs(),
            text(&out.stderr),
            self.all_sandbox_logs()
        );
        writer.join().unwrap();
        out
    }

    /// Runs `cmd` to completion like `Command::output`, but a command still running after
    /// `limit` is killed and the test fails at once with the sandboxes' logs: a hang is a
    /// failure that says where, not a silent wait until the whole run is cut off.
    pub fn output_within(&self, mut cmd: Command, args: &[&str], limit: Duration) -> Output {
        use std::io::Read;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run paddock");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for paddock") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "paddock {args:?} still ran after {} s and was killed; stderr so far:\n{}\n{}",
                    limit.as_secs(),
                    text(&stderr.join().unwrap_or_default()),
                    self.all_sandbox_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }
    /// Starts `paddock ARGS` without waiting.
    pub fn cli_background(&self, args: &[&str]) -> Child {
        self.paddock()
            .args(self.with_state(args))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn paddock")
    }
    /// Runs `sh -c SCRIPT` in sandbox `name` and asserts it succeeded; returns its stdout.
    pub fn exec_ok(&self, name: &str, script: &str) -> String {
        let out = self.cli(&["exec", name, "--", "sh", "-c", script]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "exec {script:?} in {name}: {}\n{}",
            text(&out.stderr),
            self.sandbox_logs(name)
        );
        text(&out.stdout)
    }
    /// Runs `paddock ARGS` and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "paddock {args:?} failed: {}\n{}",
            text(&out.stderr),
            self.all_sandbox_logs()
        );
        text(&out.stdout)
    }
    /// [`Scratch::sandbox_logs`] of every sandbox in the state directory.
    pub fn all_sandbox_logs(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.state_dir().join("sandboxes")) else {
            return "(no state directory)".into();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| self.sandbox_logs(name))
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// `paddock ls --json`'s entry for sandbox `name`, if it is listed.
    pub fn listed(&self, name: &str) -> Option<serde_json::Value> {
        let list: serde_json::Value = serde_json::from_str(&self.ok(&["ls", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    }
    /// The VMM pid of a sandbox.
    pub fn pid_of(&self, name: &str) -> u32 {
        self.listed(name)
            .and_then(|s| s["pid"].as_u64())
            .unwrap_or_else(|| panic!("no sandbox {name} in `ls --json`")) as u32
    }
    /// The last lines of a sandbox's guest console and VMM log, for failure messages.
    pub fn sandbox_logs(&self, name: &str) -> String {
        let Ok(paths) = paddock_vmm::sandbox::paths::SandboxPaths::new(&self.state_dir(), name)
        else {
            return format!("(no sandbox paths for {name})");
        };
        let tail = |path: &Path| {
            // Lossy: a guest may write any bytes to its console.
            let content =
                String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
            let lines: Vec<&str> = content.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        // A console is kept where the test asked for one (`start --console`), else in the
        // sandbox's directory when it was restored with one.
        let asked = self.path(&format!("{name}.console"));
        let console = if asked.exists() {
            asked
        } else {
            paths.console()
        };
        format!(
            "--- {name}: console (last 40 lines) ---\n{}\n--- {name}: vmm.log (last 40 lines) ---\n{}",
            tail(&console),
            tail(&paths.vmm_log())
        )
    }
    /// Asserts every sandbox here is stopped.
    pub fn assert_no_sandboxes_running(&self) {
        let json = self.ok(&["ls", "--json"]);
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        for s in list.as_array().unwrap() {
            assert_ne!(s["state"], "running", "still running: {s}");
        }
    }
    /// Asserts TMPDIR is empty (no stray sockets or temporary files) and no paddock process
    /// of this test is left running.
    pub fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "paddock left files behind: {left:?}");
        // A sandbox's egress proxy ends on its own within a poll interval of its VMM.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut stray = paddock_processes_using(&self.state_dir());
        while !stray.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            stray = paddock_processes_using(&self.state_dir());
        }
        assert!(
            stray.is_empty(),
            "paddock processes left running: {stray:?}"
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Warm VMMs of a pool this test filled end with it.
        if self.state_dir().join("pool").exists() {
            let _ = self
                .paddock()
                .args(["pool", "drain", "--state-dir"])
                .arg(self.state_dir())
                .output();
        }
        // Never leave VMM processes behind, whatever the test did.
        if let Ok(out) = self
            .paddock()
            .args(["ls", "--json", "--state-dir"])
            .arg(self.state_dir())
            .output()
        {
            if let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                for s in list.as_array().into_iter().flatten() {
                    if let Some(pid) = s["pid"].as_u64() {
                        if s["state"] == "running" {
                            kill9(pid as u32);
                        }
                    }
                }
            }
        }
    }
}

/// Asserts that process `pid` holds no effective capability and cannot gain one (`CapEff` 0,
/// `NoNewPrivs` 1).
pub fn assert_unprivileged(pid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
}

/// SIGKILLs a process.
pub fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

fn status_field(pid: u32, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(field))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Resident set of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "status", "VmRSS:")
}

/// (RSS, PSS) of a process, KiB.
pub fn rss_pss_kib(pid: u32) -> (u64, u64) {
    (
        status_field(pid, "smaps_rollup", "Rss:"),
        status_field(pid, "smaps_rollup", "Pss:"),
    )
}

/// What a process's open descriptors point at, once settled: the smallest of a few samples
/// 50 ms apart, so a connection the process is just closing is not counted.
pub fn settled_fds(pid: u32) -> Vec<String> {
    let sample = || -> Vec<String> {
        let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .map(|t| t.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        targets.sort();
        targets
    };
    let mut best = sample();
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let next = sample();
        if next.len() < best.len() {
            best = next;
        }
    }
    best
}

/// Copies a snapshot directory (sparse files stay sparse enough for tests).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The memory file of a snapshot directory.
pub fn memory_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("memory-")
        })
        .expect("memory file")
}

/// Decodes a snapshot's state, applies `edit`, and writes it back with a valid envelope.
pub fn rewrite_state(
    dir: &Path,
    edit: impl FnOnce(&mut paddock_vmm::snapshot::state::SnapshotState),
) {
    use paddock_vmm::snapshot::format;
    let p = dir.join("state.bin");
    let mut st: paddock_vmm::snapshot::state::SnapshotState =
        format::decode(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut st);
    std::fs::write(&p, format::encode(&st).unwrap()).unwrap();
}

/// Live paddock processes whose command line mentions `needle` (e.g. a test's state dir), or
/// that `paddock run` started from this process.
pub fn paddock_processes_using(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'));
        let parent_is_me = stat
            .rsplit_once(") ")
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .is_some_and(|ppid| ppid == me);
        if !zombie && cmdline.contains("paddock") && (cmdline.contains(&needle) || parent_is_me) {
            found.push(pid);
        }
    }
    found
}

/// Whether the bytes of `needle` (which holds no NUL) occur in the file at `path`. Reads only
/// the file's data, skipping holes (a snapshot's memory file is mostly holes), and searches
/// bytes, not lines: a line-based grep (busybox's, in the lab) misses text that follows a NUL
/// on its line, as every environment string and most of guest memory does.
pub fn file_contains(path: &Path, needle: &str) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let needle = needle.as_bytes();
    assert!(!needle.is_empty() && !needle.contains(&0));
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = file.metadata().unwrap().len();
    let finder = memchr::memmem::Finder::new(needle);
    let mut buf = vec![0u8; (8 << 20) + needle.len()];
    let seek = |at: u64, whence: i32| {
        // SAFETY: lseek on a descriptor this function owns; no memory is touched.
        let to = unsafe { libc::lseek(file.as_raw_fd(), i64::try_from(at).unwrap(), whence) };
        u64::try_from(to).ok()
    };
    let mut pos = 0;
    while pos < len {
        // No data past `pos` (ENXIO) ends the search.
        let Some(data) = seek(pos, libc::SEEK_DATA) else {
            break;
        };
        let hole = seek(data, libc::SEEK_HOLE).unwrap_or(len).min(len);
        let mut at = data;
        while at < hole {
            let n = usize::try_from(hole - at).map_or(buf.len(), |left| left.min(buf.len()));
            file.read_exact_at(&mut buf[..n], at).unwrap();
            if finder.find(&buf[..n]).is_some() {
                return true;
            }
            if at + n as u64 >= hole {
                break;
            }
            // Overlap by the needle's length less one: a match across the boundary is found.
            at += (n - (needle.len() - 1)) as u64;
        }
        pos = hole;
    }
    false
}

/// The seccomp mode of each thread of `pid` (`Seccomp:` in its status: 2 is a filter).
pub fn seccomp_modes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect()
}
