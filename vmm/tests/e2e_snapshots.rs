//! End-to-end tests of snapshots, restore, reset in place and fork, through the `paddock` CLI
//! with a real VMM, guest kernel and guest-init (natively with hardware KVM, or in the lab).

mod common;

use common::{e2e_available, text, Scratch};
use std::time::Duration;

/// The host's wall clock, in seconds since the Unix epoch.
fn host_unix_secs() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(now).unwrap()
}

/// Starts sandbox `name`, snapshots it and resets it to that snapshot, so plain `reset NAME`
/// goes back to it.
fn start_resettable(s: &Scratch, name: &str) {
    s.ok(&["start", "--name", name]);
    let snap = s.path(&format!("{name}-snap"));
    s.ok(&["snapshot", name, snap.to_str().unwrap()]);
    s.ok(&["reset", name, "--to", snap.to_str().unwrap()]);
}

#[test]
fn restore_keeps_processes_and_files_and_reset_forgets_what_came_after() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    s.exec_ok("base", "echo before > /tmp/before; (while :; do sleep 1; done) </dev/null >/dev/null 2>&1 & echo $! > /tmp/loop.pid");
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap()]);
    s.ok(&["rm", "--force", "base"]);

    s.ok(&["restore", snap.to_str().unwrap(), "--name", "r"]);
    assert_eq!(s.exec_ok("r", "cat /tmp/before"), "before\n");
    assert_eq!(
        s.exec_ok("r", "kill -0 $(cat /tmp/loop.pid) && echo alive"),
        "alive\n",
        "the process from before the snapshot runs on"
    );

    // Changes after the snapshot vanish on reset; what was there before stays.
    // By command line, not PID: after a reset the guest hands out the snapshot's next PIDs
    // again, so the sleeper's PID may well belong to a new process.
    let sleeper = "for c in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $c 2>/dev/null; echo; done \
                   | grep -q '^sleep 1000 ' && echo alive || echo gone";
    s.exec_ok(
        "r",
        "echo after > /tmp/after; sleep 1000 </dev/null >/dev/null 2>&1 &",
    );
    assert_eq!(s.exec_ok("r", sleeper), "alive\n");
    s.ok(&["reset", "r"]);
    assert_eq!(
        s.exec_ok("r", "ls /tmp/after 2>/dev/null || echo gone"),
        "gone\n"
    );
    assert_eq!(s.exec_ok("r", "cat /tmp/before"), "before\n");
    assert_eq!(
        s.exec_ok("r", sleeper),
        "gone\n",
        "the process started after the snapshot is gone"
    );
    assert_eq!(
        s.exec_ok("r", "kill -0 $(cat /tmp/loop.pid) && echo alive"),
        "alive\n"
    );
    s.ok(&["rm", "--force", "r"]);
    s.assert_no_sandboxes_running();
}

#[test]
fn a_reset_without_to_returns_to_the_latest_snapshot() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "b"]);
    let first = s.path("first");
    s.exec_ok("b", "echo one > /tmp/one");
    s.ok(&["snapshot", "b", first.to_str().unwrap()]);
    let entry = s.listed("b").expect("b is listed");
    assert_eq!(entry["latest_snapshot"], first.to_str().unwrap(), "{entry}");
    assert!(s.ok(&["ls"]).contains(first.to_str().unwrap()));

    // Twice: the first reset maps the new snapshot, the second drops what was written since.
    for round in 0..2 {
        s.exec_ok("b", "echo two > /tmp/two");
        s.ok(&["reset", "b"]);
        assert_eq!(
            s.exec_ok("b", "cat /tmp/one; ls /tmp/two 2>/dev/null || echo gone"),
            "one\ngone\n",
            "round {round}"
        );
    }
    let entry = s.listed("b").expect("b is listed");
    assert_eq!(entry["origin_snapshot"], first.to_str().unwrap(), "{entry}");
    assert!(entry["latest_snapshot"].is_null(), "{entry}");

    // A latest snapshot that has gone is an error that changes nothing, and stays the target.
    let second = s.path("second");
    s.ok(&["snapshot", "b", second.to_str().unwrap()]);
    std::fs::remove_dir_all(&second).unwrap();
    for _ in 0..2 {
        let out = s.cli(&["reset", "b"]);
        assert_ne!(out.status.code(), Some(0));
        assert!(
            text(&out.stderr).contains(second.to_str().unwrap()),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(s.exec_ok("b", "cat /tmp/one"), "one\n");
    s.ok(&["reset", "b", "--to", first.to_str().unwrap()]);
    assert_eq!(s.exec_ok("b", "cat /tmp/one"), "one\n");
    // A reset to another snapshot makes that one the target: the vanished latest is forgotten.
    let entry = s.listed("b").expect("b is listed");
    assert!(entry["latest_snapshot"].is_null(), "{entry}");
    s.ok(&["reset", "b"]);
    s.ok(&["rm", "--force", "b"]);
    s.assert_no_sandboxes_running();
}

/// The spans of one `--timings --json` report (a list of one), checked for shape.
fn spans_of(json: &str, want: &[&str]) -> Vec<(String, f64)> {
    let list: serde_json::Value = serde_json::from_str(json).unwrap();
    let report = &list.as_array().unwrap()[0];
    let spans: Vec<(String, f64)> = report["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["span"].as_str().unwrap().to_string(),
                s["ms"].as_f64().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = spans.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, want, "{json}");
    assert!(spans.iter().all(|(_, ms)| *ms >= 0.0), "{json}");
    let sum: f64 = spans.iter().map(|(_, ms)| ms).sum();
    // The command's own wall clock holds the VMM's spans (the reset's, or the restore's from the
    // VMM process's start).
    assert!(report["wall_ms"].as_f64().unwrap() >= sum * 0.999, "{json}");
    spans
}

#[test]
fn restore_and_reset_report_where_the_time_went() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap()]);
    s.ok(&["rm", "--force", "base"]);

    let json = s.ok(&[
        "restore",
        snap.to_str().unwrap(),
        "--name",
        "t",
        "--timings",
        "--json",
    ]);
    let restore = spans_of(
        &json,
        &[
            "VMM process started, snapshot read",
            "cgroup",
            "jail",
            "limits, capabilities dropped",
            "snapshot checked",
            "memory mapped",
            "working set prefetched",
            "VM created",
            "devices",
            "vCPU state",
            "vCPUs running",
            "guest answered",
            // The snapshot's first restore.
            "working set recorded",
        ],
    );
    let json = s.ok(&["reset", "t", "--timings", "--json"]);
    let reset = spans_of(
        &json,
        &[
            "paused",
            "memory",
            "VM and vCPU state",
            "devices",
            "resumed",
            "guest answered",
        ],
    );
    // The plain form is for people: every span named, and a total.
    let out = s.cli(&["reset", "t", "--timings"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("guest answered") && said.contains("total"),
        "{said}"
    );
    eprintln!("restore spans: {restore:?}\nreset spans: {reset:?}");
    s.ok(&["rm", "--force", "t"]);
    s.assert_no_sandboxes_running();
}

/// Starts `cat` in sandbox `name` over `paddock exec` and waits until it runs: the exec and its
/// output (past a first line the test has read).
fn cat_in(
    s: &Scratch,
    name: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut exec = s
        .paddock_command(&["exec", name, "--", "sh", "-c", "echo streaming; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn paddock exec");
    let mut stdout = std::io::BufReader::new(exec.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the exec's first line");
    assert_eq!(line, "streaming\n", "the exec in {name} started");
    (exec, stdout)
}

/// Waits for `child` to end, failing the test after 30 s; `what` names it.
fn ends_within_30_s(child: &mut std::process::Child, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "{what} did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The name of the last guest span a `--timings --json` report (a list of one) lists.
fn last_span(json: &str) -> String {
    let list: serde_json::Value = serde_json::from_str(json).expect("a JSON report");
    let spans = list[0]["spans"].as_array().expect("spans");
    let names: Vec<&str> = spans.iter().filter_map(|s| s["span"].as_str()).collect();
    names
        .iter()
        .rev()
        .find(|n| n.starts_with("guest"))
        .map(|n| (*n).to_string())
        .unwrap_or_else(|| panic!("no guest span in {json}"))
}

#[test]
fn a_snapshot_with_an_exec_streaming_keeps_guest_inits_link_and_resets_only_the_exec() {
    use std::io::BufRead;
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    let (mut streaming, mut stdout) = cat_in(&s, "base");
    let mut line = String::new();
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap()]);

    // The restore answers on the link the snapshot kept: no reconnect.
    let json = s.ok(&[
        "restore",
        snap.to_str().unwrap(),
        "--name",
        "r",
        "--timings",
        "--json",
    ]);
    assert_eq!(last_span(&json), "guest answered", "{json}");
    // The exec's connection was reset in the copy; the copy serves new ones.
    assert_eq!(s.exec_ok("r", "echo fresh"), "fresh\n");
    // The original's exec did not notice the snapshot.
    {
        use std::io::Write;
        let mut stdin = streaming.stdin.take().expect("stdin");
        stdin.write_all(b"still here\n").expect("write to the exec");
        line.clear();
        stdout.read_line(&mut line).expect("the echo");
        assert_eq!(line, "still here\n");
    }
    // A reset in place of the copy keeps the link too, with an exec running in it again.
    let (mut again, _again_out) = cat_in(&s, "r");
    let json = s.ok(&["reset", "r", "--timings", "--json"]);
    assert_eq!(last_span(&json), "guest answered", "{json}");
    // The running exec's connection was reset: it ends.
    ends_within_30_s(&mut again, "the exec whose connection the reset dropped");
    assert_eq!(s.exec_ok("r", "echo sound"), "sound\n");
    drop(streaming.stdin.take());
    let _ = streaming.kill();
    let _ = streaming.wait();
    s.ok(&["rm", "--force", "r"]);
    s.ok(&["rm", "--force", "base"]);
    s.assert_no_sandboxes_running();
}

#[test]
fn the_first_restore_records_the_working_set_and_later_ones_prefetch_it() {
    use paddock_vmm::snapshot::working_set::WorkingSet;
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    let snap = s.path("snap");
    let snap_arg = snap.to_str().unwrap();
    s.ok(&["snapshot", "base", snap_arg]);
    let record = snap.join("working-set.bin");
    assert!(!record.exists(), "a snapshot has no record until restored");

    s.ok(&["restore", snap_arg, "--name", "first"]);
    let set = WorkingSet::decode(&std::fs::read(&record).expect("recorded beside the snapshot"))
        .expect("a valid record");
    assert!(
        set.pages() > 0 && set.pages() < 256 * 256,
        "{} pages",
        set.pages()
    );
    let first = s.listed("first").unwrap();
    assert!(first["prefetched_pages"].is_null(), "{first}");
    // The first exec's end records it again, through that exec (a command run after a restore
    // is part of what later restores should find ready); once only.
    assert_eq!(
        s.ok(&[
            "exec",
            "first",
            "--",
            "sh",
            "-c",
            "ls -R /usr /etc >/dev/null; echo done"
        ]),
        "done\n"
    );
    let through_exec = std::fs::read(&record).unwrap();
    let set_through_exec = WorkingSet::decode(&through_exec).expect("a valid record");
    assert!(
        set_through_exec.pages() > set.pages(),
        "{} pages at ready, {} through the first exec",
        set.pages(),
        set_through_exec.pages()
    );
    assert_eq!(s.ok(&["exec", "first", "--", "echo", "again"]), "again\n");
    assert_eq!(
        std::fs::read(&record).unwrap(),
        through_exec,
        "recorded once"
    );
    let at_ready_pages = set.pages();
    let set = set_through_exec;
    s.ok(&["rm", "--force", "first"]);

    s.ok(&["restore", snap_arg, "--name", "second"]);
    let second = s.listed("second").unwrap();
    assert_eq!(
        second["prefetched_pages"].as_u64(),
        Some(set.pages()),
        "{second}"
    );
    // Where the host's KVM has KVM_PRE_FAULT_MEMORY (Linux 6.10+), the set is mapped into
    // its tables too, all of it, in a span of its own; elsewhere neither.
    let spans = second["spans"].to_string();
    match second["pre_faulted_pages"].as_u64() {
        Some(pages) => {
            assert_eq!(pages, set.pages(), "{second}");
            assert!(spans.contains("working set pre-faulted"), "{second}");
        }
        None => assert!(!spans.contains("pre-faulted"), "{second}"),
    }
    assert_eq!(s.ok(&["exec", "second", "--", "echo", "up"]), "up\n");
    eprintln!(
        "working set: {} pages at ready, {} in {} runs through the first exec, {} pre-faulted; \
         VMM minor faults to ready: first restore {}, second {}",
        at_ready_pages,
        set.pages(),
        set.runs.len(),
        second["pre_faulted_pages"],
        first["minor_faults"],
        second["minor_faults"]
    );

    // A corrupt record is never trusted: ignored with a warning, and recorded again.
    let mut bytes = std::fs::read(&record).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&record, &bytes).unwrap();
    s.ok(&["restore", snap_arg, "--name", "third"]);
    let third = s.listed("third").unwrap();
    assert!(third["prefetched_pages"].is_null(), "{third}");
    let log = std::fs::read_to_string(
        paddock_vmm::sandbox::paths::SandboxPaths::new(&s.state_dir(), "third")
            .unwrap()
            .vmm_log(),
    )
    .unwrap();
    assert!(log.contains("ignoring the working-set record"), "{log}");
    assert!(WorkingSet::decode(&std::fs::read(&record).unwrap()).is_ok());
    assert_eq!(s.ok(&["exec", "third", "--", "echo", "up"]), "up\n");

    // A new snapshot in the same directory drops the record of the old one.
    s.ok(&["snapshot", "base", snap_arg]);
    assert!(!record.exists());
    for name in ["base", "second", "third"] {
        s.ok(&["rm", "--force", name]);
    }
    s.assert_no_sandboxes_running();
}

#[test]
fn a_hundred_resets_do_not_grow_memory_or_descriptors() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    start_resettable(&s, "loop");
    let pid = s.pid_of("loop");
    let mut samples = Vec::new();
    for i in 0..100 {
        s.exec_ok("loop", "head -c 1048576 /dev/urandom > /tmp/junk");
        s.ok(&["reset", "loop"]);
        if i == 9 || i == 99 {
            samples.push((common::rss_kib(pid), common::settled_fds(pid)));
        }
    }
    let (rss10, fds10) = &samples[0];
    let (rss100, fds100) = &samples[1];
    assert_eq!(
        fds100.len(),
        fds10.len(),
        "open descriptors after 10 resets: {fds10:?}; after 100: {fds100:?}"
    );
    // A reset copies up to COPY_BACK_LIMIT of written pages back in place rather than
    // dropping them, so RSS may sit up to that much higher at one sample than at the other.
    let copied_back_kib = paddock_vmm::vstate::reset_pages::COPY_BACK_LIMIT >> 10;
    assert!(
        *rss100 <= rss10 + 2048 + copied_back_kib,
        "RSS grew from {rss10} KiB to {rss100} KiB over 90 resets"
    );
    assert_eq!(
        s.exec_ok("loop", "ls /tmp/junk 2>/dev/null || echo clean"),
        "clean\n"
    );
    s.ok(&["rm", "--force", "loop"]);
}

/// Resets while the host streams data into an exec: the reset drops the live connection (the
/// exec ends), and the guest, busy in its vsock interrupt handler, must come back sound every
/// time. (`e2e_vcpu.rs` pins down the vCPU side of this deterministically: a pause in the middle
/// of an MMIO read.)
#[test]
fn resets_while_the_guest_handles_device_traffic_leave_it_sound() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    start_resettable(&s, "busy");
    // The kernel log is part of the snapshot: after each reset it must hold no crash beyond
    // what it held then (a lab kernel warns once at boot).
    let crash_signs = "dmesg | grep -E 'segfault|Oops|BUG:|general protection|RIP:' || true";
    let logged_at_snapshot = s.exec_ok("busy", crash_signs);
    for round in 0..40u64 {
        let mut stream = s
            .paddock_command(&[
                "exec",
                "busy",
                "--",
                "sh",
                "-c",
                "echo streaming; cat > /dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn paddock exec");
        // Only a connection that exists when the reset comes is dropped by it.
        let mut started = String::new();
        std::io::BufReader::new(stream.stdout.take().expect("stdout"))
            .read_line(&mut started)
            .expect("read the exec's first line");
        assert_eq!(started, "streaming\n", "round {round}: the exec started");
        let mut stdin = stream.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let chunk = vec![0x5a_u8; 64 << 10];
            while stdin.write_all(&chunk).is_ok() {}
        });
        // Land the reset at varying points of the stream.
        std::thread::sleep(Duration::from_millis(20 + (round * 7) % 50));
        s.ok(&["reset", "busy"]);
        // The reset drops every connection, so the streaming exec ends on its own.
        ends_within_30_s(
            &mut stream,
            &format!("round {round}: the exec whose connection the reset dropped"),
        );
        writer.join().expect("writer thread");
        assert_eq!(
            s.exec_ok("busy", &format!("echo sound; {crash_signs}")),
            format!("sound\n{logged_at_snapshot}"),
            "round {round}: the guest is damaged after a reset during device traffic"
        );
    }
    s.ok(&["rm", "--force", "busy"]);
}

#[test]
fn forks_are_independent_and_share_memory() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    s.exec_ok("base", "head -c 20000000 /dev/urandom > /tmp/shared-blob");
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap(), "--stop"]);
    s.ok(&[
        "fork",
        snap.to_str().unwrap(),
        "--count",
        "10",
        "--prefix",
        "f",
    ]);
    s.exec_ok("f-3", "echo mine > /tmp/only-in-3");
    for i in 0..10 {
        let name = format!("f-{i}");
        // Touch the shared data in every fork, so each maps it.
        s.exec_ok(&name, "cat /tmp/shared-blob > /dev/null");
        let seen = s.exec_ok(&name, "cat /tmp/only-in-3 2>/dev/null || echo absent");
        assert_eq!(seen, if i == 3 { "mine\n" } else { "absent\n" }, "{name}");
    }
    let (rss, pss): (u64, u64) = (0..10)
        .map(|i| common::rss_pss_kib(s.pid_of(&format!("f-{i}"))))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(
        pss * 2 < rss,
        "forks share memory: total PSS {pss} KiB vs RSS {rss} KiB"
    );
    for i in 0..10 {
        s.ok(&["rm", "--force", &format!("f-{i}")]);
    }
    s.ok(&["rm", "base"]);
    s.assert_no_sandboxes_running();
}

#[test]
fn restores_get_the_current_clock_and_fresh_entropy() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap(), "--stop"]);
    // Let the snapshot age: a restore that kept the old clock would be a minute behind.
    std::thread::sleep(Duration::from_secs(61));
    s.ok(&["restore", snap.to_str().unwrap(), "--name", "a"]);
    s.ok(&["restore", snap.to_str().unwrap(), "--name", "b"]);
    let host_now = host_unix_secs();
    let guest_now: i64 = s.exec_ok("a", "date +%s").trim().parse().unwrap();
    assert!(
        (guest_now - host_now).abs() <= 5,
        "guest clock {guest_now} vs host {host_now}"
    );
    let ra = s.exec_ok("a", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    let rb = s.exec_ok("b", "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
    assert_eq!(ra.len(), 64);
    assert_ne!(
        ra, rb,
        "two restores of one snapshot must not share their random stream"
    );
    s.ok(&["reset", "a"]);
    let guest_now: i64 = s.exec_ok("a", "date +%s").trim().parse().unwrap();
    let host_now = host_unix_secs();
    assert!(
        (guest_now - host_now).abs() <= 5,
        "after reset: guest clock {guest_now} vs host {host_now}"
    );
    for n in ["a", "b", "base"] {
        s.ok(&["rm", "--force", n]);
    }
}

#[test]
fn bad_snapshots_are_refused_and_nothing_is_started() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    s.ok(&["start", "--name", "base"]);
    let good = s.path("good");
    s.ok(&["snapshot", "base", good.to_str().unwrap()]);

    let refused = |dir: &std::path::Path, want: &str| {
        let out = s.cli(&["restore", dir.to_str().unwrap(), "--name", "victim"]);
        assert_eq!(
            out.status.code(),
            Some(paddock_vmm::exit_codes::PADDOCK_ERROR),
            "{}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "expected {want:?} in: {}",
            text(&out.stderr)
        );
        assert!(
            !s.state_dir().join("sandboxes/victim").exists(),
            "nothing is left behind"
        );
    };
    let variant = |name: &str, edit: &dyn Fn(&std::path::Path)| {
        let dir = s.path(name);
        common::copy_dir(&good, &dir);
        edit(&dir);
        dir
    };
    let patch_state = |offset: usize, byte: u8| {
        move |dir: &std::path::Path| {
            let p = dir.join("state.bin");
            let mut b = std::fs::read(&p).unwrap();
            b[offset] = byte;
            std::fs::write(&p, b).unwrap();
        }
    };
    refused(&variant("magic", &patch_state(0, b'X')), "bad magic");
    refused(&variant("version", &patch_state(8, 77)), "version 77");
    refused(
        &variant("checksum", &|d| {
            let p = d.join("state.bin");
            let mut b = std::fs::read(&p).unwrap();
            let last = b.len() - 1;
            b[last] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        }),
        "checksum",
    );
    refused(
        &variant("truncated", &|d| {
            let mem = common::memory_file(d);
            let f = std::fs::OpenOptions::new().write(true).open(&mem).unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        }),
        "truncated",
    );
    refused(
        &variant("cpu", &|d| {
            common::rewrite_state(d, |st| {
                // Claim a feature no host KVM offers: CPUID.7.0:EBX bit 31 set on a guest.
                for e in st.vcpus[0].cpuid.iter_mut() {
                    if e.function == 7 && e.index == 0 {
                        e.ebx |= 1 << 31;
                        e.ecx |= 1 << 31;
                    }
                }
            })
        }),
        "features this host lacks",
    );
    refused(
        &variant("vcpus", &|d| {
            common::rewrite_state(d, |st| st.vcpu_count = 2)
        }),
        "inconsistent",
    );

    // Shape mismatches for reset --to: another memory size, another vCPU count.
    s.ok(&["start", "--name", "small", "--memory", "128"]);
    let small = s.path("small-snap");
    s.ok(&["snapshot", "small", small.to_str().unwrap()]);
    let out = s.cli(&["reset", "base", "--to", small.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("differs from this sandbox"),
        "{}",
        text(&out.stderr)
    );
    s.ok(&["start", "--name", "two", "--vcpus", "2"]);
    let two = s.path("two-snap");
    s.ok(&["snapshot", "two", two.to_str().unwrap()]);
    let out = s.cli(&["reset", "base", "--to", two.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("2 vCPUs"),
        "{}",
        text(&out.stderr)
    );
    // The refused resets left base running as it was.
    assert_eq!(s.exec_ok("base", "echo still-here"), "still-here\n");

    // Killing the VMM in the middle of a snapshot leaves the previous snapshot usable. The VMM
    // is started with a fault hook that stalls a snapshot between writing memory and state
    // while a trigger file exists, so the kill lands mid-snapshot every time.
    let trigger = s.path("stall-trigger");
    let console = s.path("crashy.console");
    let out = s.cli_env(
        &[
            "start",
            "--name",
            "crashy",
            "--console",
            console.to_str().unwrap(),
        ],
        &[("PADDOCK_FAULT_SNAPSHOT_STALL", trigger.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let crash_snap = s.path("crash-snap");
    s.ok(&["snapshot", "crashy", crash_snap.to_str().unwrap()]);
    s.exec_ok("crashy", "echo second-generation > /tmp/gen");
    std::fs::write(&trigger, b"").unwrap();
    let pid = s.pid_of("crashy");
    let mut child = s.cli_background(&["snapshot", "crashy", crash_snap.to_str().unwrap()]);
    let stalled = trigger.with_extension("stalled");
    for _ in 0..600 {
        if stalled.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stalled.exists(),
        "the snapshot never reached the stall point"
    );
    common::kill9(pid);
    let _ = child.wait();
    s.ok(&[
        "restore",
        crash_snap.to_str().unwrap(),
        "--name",
        "after-crash",
    ]);
    assert_eq!(
        s.exec_ok(
            "after-crash",
            "cat /tmp/gen 2>/dev/null || echo first-generation"
        ),
        "first-generation\n"
    );
    for n in ["base", "small", "two", "crashy", "after-crash"] {
        let _ = s.cli(&["rm", "--force", n]);
    }
}
