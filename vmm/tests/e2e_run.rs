//! End-to-end tests of `paddock run AGENT [DIR]`: an agent in a kept sandbox of its own, run as
//! user `agent`, named after the agent and the directory, re-attached when run again; several
//! such sandboxes side by side. Agent profile (Debian guest with its Docker engine).
//!
//! They need hardware KVM (natively, or inside the lab: `cargo xtask ci`); without it each test
//! says so and returns.

mod common;
mod host_terminal;

use common::{agent_image_available, e2e_available, text, Scratch};
use host_terminal::{wait, Terminal};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn available() -> bool {
    e2e_available() && agent_image_available()
}

/// A project directory on the host, as `paddock run` names and records it.
fn project(s: &Scratch, name: &str) -> String {
    let dir = s.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(&dir).unwrap().display().to_string()
}

#[test]
fn run_shell_runs_commands_as_agent_in_a_sandbox_named_after_the_directory() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let dir = project(&s, "My Project");
    let out = s.cli(&["run", "shell", &dir, "--", "id", "-u"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1000\n");
    assert!(
        text(&out.stderr).contains("sandbox shell-my-project ready"),
        "{}",
        text(&out.stderr)
    );

    // The same agent and directory: the same sandbox, still running.
    let script = "pwd; echo HOME=$HOME USER=$USER; sudo -n true && echo sudo-ok; \
                  docker info --format '{{.ServerVersion}}' >/dev/null && echo docker-ok; \
                  touch mine && stat -c %U mine";
    let out = s.cli(&["run", "shell", &dir, "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{dir}\nHOME=/home/agent USER=agent\nsudo-ok\ndocker-ok\nagent\n")
    );
    assert!(
        text(&out.stderr).contains("shell-my-project is running"),
        "{}",
        text(&out.stderr)
    );

    // Piped stdin without a terminal.
    let mut cat = s
        .paddock_command(&["run", "shell", &dir, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cat.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = cat.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));

    // The exit status is the command's, and `ls` tells what the sandbox is for.
    let out = s.cli(&["run", "shell", &dir, "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let entry = s.listed("shell-my-project").expect("listed");
    assert_eq!(entry["state"], "running");
    assert_eq!(entry["agent"], "shell");
    assert_eq!(entry["workspace"], dir.as_str());
    assert!(entry["template"].is_string(), "{entry}");
    let table = s.ok(&["ls"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shell-my-project") && l.contains(&dir)),
        "{table}"
    );

    // --rm: gone when the command ends; an unknown agent or a missing directory is refused.
    let other = project(&s, "other");
    let out = s.cli(&["run", "--rm", "shell", &other, "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.listed("shell-other").is_none());
    let out = s.cli(&["run", "vim", &dir]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("possible values"),
        "{}",
        text(&out.stderr)
    );
    let out = s.cli(&["run", "shell", &s.path("missing").display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(paddock_vmm::exit_codes::PADDOCK_ERROR)
    );
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    s.ok(&["rm", "--force", "shell-my-project"]);
}

#[test]
fn agent_sandboxes_run_side_by_side_and_removing_one_leaves_the_other() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let (a, b) = (project(&s, "alpha"), project(&s, "beta"));
    let started = |dir: &str, script: &str| {
        let out = s.cli(&["run", "shell", dir, "--", "sh", "-c", script]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // A container in alpha's engine, built from the guest's busybox.
    let build = r#"set -e; echo from-alpha > /tmp/mark; d=$(mktemp -d); cp /bin/busybox "$d/"
printf 'FROM scratch\nCOPY busybox /bin/busybox\n' > "$d/Dockerfile"
docker build -q -t bb "$d" >/dev/null; docker run -d --name busy bb /bin/busybox sleep 1000 >/dev/null
docker ps -q | wc -l"#;
    assert_eq!(started(&a, build), "1\n");
    assert_eq!(
        started(
            &b,
            "cat /tmp/mark 2>/dev/null || echo no-mark; docker ps -q | wc -l"
        ),
        "no-mark\n0\n",
        "each sandbox is its own VM with its own Docker engine"
    );
    let pid_a = s.pid_of("shell-alpha");
    let pid_b = s.pid_of("shell-beta");
    assert_ne!(pid_a, pid_b, "each sandbox is its own VMM process");
    s.ok(&["rm", "--force", "shell-alpha"]);
    assert!(s.listed("shell-alpha").is_none());
    assert_eq!(started(&b, "echo still-here"), "still-here\n");
    assert_eq!(s.listed("shell-beta").unwrap()["state"], "running");
    s.ok(&["rm", "--force", "shell-beta"]);
}

#[test]
fn run_on_a_terminal_detaches_and_run_again_comes_back() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let dir = project(&s, "tty");
    let mut term = Terminal::new(30, 100);
    let before = term.settings();
    let mut child = term.spawn(s.paddock_command(&["run", "shell", &dir]));
    term.send(b"X=kept; echo who-$(id -un)-$((2+2)); stty size\r");
    term.expect("who-agent-4");
    term.expect("30 100");
    term.send(b"\x10\x11");
    assert_eq!(wait(&mut child, &term), Some(0), "{}", term.text());
    term.expect("detached");
    assert_eq!(term.settings(), before, "the host terminal is restored");

    let mut again = Terminal::new(20, 60);
    let mut child = again.spawn(s.paddock_command(&["run", "shell", &dir]));
    again.expect("back to the detached session");
    again.send(b"echo var=$X-$((1+1)); stty size\r");
    again.expect("var=kept-2");
    again.expect("20 60");
    again.send(b"exit 3\r");
    assert_eq!(wait(&mut child, &again), Some(3), "{}", again.text());
    again.expect("keeps running");
    assert_eq!(s.listed("shell-tty").unwrap()["state"], "running");
    s.ok(&["rm", "--force", "shell-tty"]);
}

/// What an agent's output shows when it could not reach its API (lower case): the lab has no
/// internet, so the egress proxy cannot resolve the API's name (the DNS stub answers NXDOMAIN,
/// a proxied CONNECT gets 403/502).
const NETWORK_FAILURE_SIGNS: [&str; 16] = [
    "eai_again",
    "enotfound",
    "lookup address",
    "reach the api",
    "fetch failed",
    "failed to connect",
    "network",
    "getaddrinfo",
    "connection error",
    "502",
    "403",
    "bad gateway",
    "forbidden",
    // Claude Code when the egress proxy answers its CONNECT with an error (no route out of
    // the lab): "Couldn't connect through your proxy (ERR_PROXY_TUNNEL)".
    "err_proxy_tunnel",
    "connect through your proxy",
    "proxy refused",
];

/// Runs `paddock ARGS` until it ends or, if `may_wait`, until its output shows a network
/// failure (then it is killed: the agent would keep retrying); `limit` bounds both. Returns the
/// exit status (`None` if killed) and stdout and stderr together.
fn agent_output(
    s: &Scratch,
    args: &[&str],
    may_wait: bool,
    limit: Duration,
) -> (Option<i32>, String) {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let mut child = s
        .paddock_command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = Arc::new(Mutex::new(Vec::new()));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let said = said.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                said.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let readers = [
        collect(Box::new(child.stdout.take().unwrap())),
        collect(Box::new(child.stderr.take().unwrap())),
    ];
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        let lower = String::from_utf8_lossy(&said.lock().unwrap()).to_lowercase();
        let shown = NETWORK_FAILURE_SIGNS
            .iter()
            .any(|sign| lower.contains(sign));
        assert!(
            Instant::now() < deadline,
            "paddock {args:?}: still running after {} s; said:\n{lower}",
            limit.as_secs()
        );
        if may_wait && shown {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for reader in readers {
        let _ = reader.join();
    }
    let all = String::from_utf8_lossy(&said.lock().unwrap()).into_owned();
    (code, all)
}

#[test]
fn the_coding_agents_start_and_fail_cleanly_without_their_api() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let dir = project(&s, "agents");
    // Each agent, asked one thing with a key, starts and reports that it cannot reach its API
    // (the lab has no internet; e2e_egress has Claude Code reach a fake API): not a missing
    // file, module or permission. Claude Code (told to retry once instead of ten times) then
    // ends with an error status; Gemini CLI and Codex keep retrying with backoff, so once they
    // have said why, the test hangs up on them.
    for (agent, args, may_wait) in [
        ("claude", &["-p", "say hi"][..], false),
        ("gemini", &["-p", "say hi"][..], true),
        (
            "codex",
            &["exec", "--skip-git-repo-check", "say hi"][..],
            true,
        ),
    ] {
        let mut cli = vec![
            "run",
            "--name",
            "agents",
            "-e",
            "ANTHROPIC_API_KEY=sk-paddock-test",
            "-e",
            "GEMINI_API_KEY=paddock-test",
            "-e",
            "OPENAI_API_KEY=sk-paddock-test",
            "-e",
            "CLAUDE_CODE_MAX_RETRIES=1",
            agent,
            &dir,
            "--",
        ];
        cli.extend_from_slice(args);
        let (code, all) = agent_output(&s, &cli, may_wait, Duration::from_secs(240));
        eprintln!("{agent}: status {code:?}; said:\n{}", all.trim());
        let ended_with_an_error = !matches!(code, Some(0 | 124 | 125 | 126 | 127));
        assert!(
            ended_with_an_error || (may_wait && code.is_none()),
            "{agent}: status {code:?}"
        );
        for sign in [
            "Cannot find module",
            "ENOENT",
            "EACCES",
            "command not found",
            "not trusted",
        ] {
            assert!(!all.contains(sign), "{agent}: {sign:?} in its output");
        }
        let lower = all.to_lowercase();
        assert!(
            NETWORK_FAILURE_SIGNS
                .iter()
                .any(|sign| lower.contains(sign)),
            "{agent}: no sign of a network failure in its output"
        );
    }
    s.ok(&["rm", "--force", "agents"]);
}
