//! End-to-end tests of the workspace share (natively with hardware KVM, or in the lab): the
//! host directory appears in the guest at its own path, live both ways; nothing outside it is
//! reachable or changed, whatever the guest's root tries; a mount a snapshot holds carries on
//! across restores, resets and forks, open files included; the server is confined and ends
//! with its sandbox.

mod common;

use common::{e2e_available, text, Scratch};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every path under `root` (symlinks not followed) with what it is: kind, size, mode, links and
/// a hash of a file's bytes or a link's target; `skip` and what is under it left out.
fn tree_state(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.starts_with(skip) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                format!("file {:x}", Sha256::digest(&bytes))
            };
            let facts = format!(
                "{what} size {} mode {:o} links {}",
                meta.len(),
                meta.mode(),
                meta.nlink()
            );
            out.insert(path, facts);
        }
    }
    out
}

/// Runs `script` in the guest with `sh -c` (as root) in `cwd`; returns (exit code, stdout,
/// stderr).
fn guest(s: &Scratch, name: &str, cwd: &Path, script: &str) -> (Option<i32>, String, String) {
    let cwd = cwd.to_str().unwrap();
    let out = s.cli(&["exec", "-w", cwd, name, "--", "sh", "-c", script]);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn guest_ok(s: &Scratch, name: &str, cwd: &Path, script: &str) -> String {
    let (code, stdout, stderr) = guest(s, name, cwd, script);
    assert_eq!(
        code,
        Some(0),
        "{script}: {stderr}\n{}",
        s.sandbox_logs(name)
    );
    stdout
}

/// A host tree: `host/ws` (the workspace) beside `host/outside` (a host-only file), with a
/// symlink and a hard link to that file inside the workspace.
struct HostTree {
    host: PathBuf,
    ws: PathBuf,
    outside: PathBuf,
}

fn host_tree(s: &Scratch) -> HostTree {
    let host = s.path("host");
    let ws = host.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let host = std::fs::canonicalize(&host).unwrap();
    let ws = host.join("ws");
    let outside = host.join("outside");
    std::fs::write(&outside, b"host secret\n").unwrap();
    std::fs::write(ws.join("from-host"), b"written on the host\n").unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("link-out")).unwrap();
    std::os::unix::fs::symlink("/", ws.join("link-root")).unwrap();
    std::fs::hard_link(&outside, ws.join("hard-out")).unwrap();
    HostTree { host, ws, outside }
}

#[test]
fn the_directory_is_shared_live_at_its_own_path_and_nothing_else() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let t = host_tree(&s);
    let ws = t.ws.to_str().unwrap();
    s.ok(&["start", "--name", "w", "--workspace", ws]);
    let before = tree_state(&t.host, &t.ws);

    // Host to guest, at the same path; the command runs there.
    let out = guest_ok(&s, "w", &t.ws, "pwd; cat from-host");
    assert_eq!(out, format!("{ws}\nwritten on the host\n"));
    // Guest to host, at once: files, directories, a name that is not UTF-8, a 255-byte name.
    let long = "n".repeat(255);
    guest_ok(
        &s,
        "w",
        &t.ws,
        &format!(
            "echo from the guest > made && mkdir -p d/e && echo deep > d/e/f && \
             touch \"$(printf 'bad\\377name')\" && touch {long}"
        ),
    );
    assert_eq!(
        std::fs::read(t.ws.join("made")).unwrap(),
        b"from the guest\n"
    );
    assert_eq!(std::fs::read(t.ws.join("d/e/f")).unwrap(), b"deep\n");
    assert!(t
        .ws
        .join(std::ffi::OsStr::from_bytes(b"bad\xffname"))
        .exists());
    assert!(t.ws.join(&long).exists());
    let (code, _, _) = guest(&s, "w", &t.ws, &format!("touch {long}x"));
    assert_ne!(code, Some(0), "a 256-byte name");
    // A new host file is there at once; a changed one after the attribute timeout (1 s).
    std::fs::write(t.ws.join("new-on-host"), b"new\n").unwrap();
    assert_eq!(guest_ok(&s, "w", &t.ws, "cat new-on-host"), "new\n");
    std::fs::write(t.ws.join("from-host"), b"changed on the host, longer\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        guest_ok(&s, "w", &t.ws, "cat from-host"),
        "changed on the host, longer\n"
    );
    // Files the guest made belong to the host user who ran paddock.
    // SAFETY: geteuid has no memory effects.
    let me = unsafe { libc::geteuid() };
    assert_eq!(std::fs::metadata(t.ws.join("made")).unwrap().uid(), me);
    // ... and, in the guest, to its agent user (uid and gid 1000), as the host user's other
    // files do.
    assert_eq!(
        guest_ok(&s, "w", &t.ws, "stat -c %u:%g made from-host"),
        "1000:1000\n1000:1000\n"
    );

    // Escapes, tried by the guest's root: each fails, or reaches only the guest's own files.
    let secret = "host secret";
    for (what, script) in [
        ("parent", "cat ../outside"),
        ("symlink to a host file", "cat link-out"),
        (
            "symlink to /",
            &format!("cat link-root{}", t.outside.display()),
        ),
        ("absolute path", &format!("cat {}", t.outside.display())),
    ] {
        let (_, stdout, _) = guest(&s, "w", &t.ws, script);
        assert!(!stdout.contains(secret), "{what}: {stdout}");
    }
    // The symlink to / shows the guest's root: its guest-init is there, the host's tree not.
    guest_ok(
        &s,
        "w",
        &t.ws,
        "test -e link-root/init || test -e link-root/sbin/init || ls link-root/",
    );
    for (what, script) in [
        ("write through a hard link", "echo pwned > hard-out"),
        ("truncate through a hard link", ": > hard-out"),
        ("device node", "mknod dev c 1 3"),
        ("FIFO", "mkfifo fifo"),
    ] {
        let (code, _, _) = guest(&s, "w", &t.ws, script);
        assert_ne!(code, Some(0), "{what} succeeded");
    }
    assert!(!t.ws.join("dev").exists() && !t.ws.join("fifo").exists());
    // Moving a file out of the workspace moves it into the guest's own tree.
    guest_ok(&s, "w", &t.ws, "mv made /tmp/moved && cat /tmp/moved");
    assert!(!t.ws.join("made").exists());
    assert_eq!(std::fs::read(&t.outside).unwrap(), b"host secret\n");
    assert_eq!(
        tree_state(&t.host, &t.ws),
        before,
        "the host tree around the workspace changed"
    );

    // A snapshot of the sandbox with its share mounted; a reset to it (the latest snapshot)
    // carries the mount on, live.
    let snap = s.path("snap");
    s.ok(&["snapshot", "w", snap.to_str().unwrap()]);
    assert_eq!(guest_ok(&s, "w", &t.ws, "cat d/e/f"), "deep\n");
    guest_ok(&s, "w", Path::new("/"), "echo gone > /root-marker");
    s.ok(&["reset", "w"]);
    let (code, _, _) = guest(&s, "w", Path::new("/"), "test -e /root-marker");
    assert_ne!(code, Some(0), "the reset kept a guest file");
    std::fs::write(t.ws.join("after-reset"), b"still shared\n").unwrap();
    assert_eq!(
        guest_ok(
            &s,
            "w",
            &t.ws,
            "cat after-reset; echo back > from-guest-after-reset; cat d/e/f"
        ),
        "still shared\ndeep\n"
    );
    assert_eq!(
        std::fs::read(t.ws.join("from-guest-after-reset")).unwrap(),
        b"back\n"
    );
    // A restore of that snapshot shares the directory the snapshot shared.
    s.ok(&["restore", snap.to_str().unwrap(), "--name", "again"]);
    assert_eq!(
        guest_ok(&s, "again", &t.ws, "cat after-reset"),
        "still shared\n"
    );
    s.ok(&["rm", "--force", "again"]);
    s.ok(&["rm", "--force", "w"]);
    s.assert_clean();
}

#[test]
fn a_checkout_of_many_small_files_and_a_large_file_go_both_ways() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let t = host_tree(&s);
    let ws = t.ws.to_str().unwrap();
    s.ok(&["start", "--name", "many", "--workspace", ws]);
    // More files than the usual open-file limit (1024), all looked up and kept in the guest's
    // caches at once, as a clone or an `npm install` does; and a file larger than one request.
    const FILES: usize = 1500;
    guest_ok(
        &s,
        "many",
        &t.ws,
        &format!(
            "mkdir tree && i=0 && while [ $i -lt {FILES} ]; do \
             mkdir -p tree/d$((i % 50)) && echo $i > tree/d$((i % 50))/f$i; i=$((i+1)); done && \
             yes 0123456789abcdef | head -c 16777216 > large && sync"
        ),
    );
    let listed = guest_ok(
        &s,
        "many",
        &t.ws,
        "find tree -type f | wc -l; cat tree/*/* | wc -l",
    );
    assert_eq!(listed, format!("{FILES}\n{FILES}\n"));
    let mut on_host = 0;
    for dir in std::fs::read_dir(t.ws.join("tree")).unwrap() {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let file = file.unwrap();
            let name = file.file_name().into_string().unwrap();
            let n = name.strip_prefix('f').unwrap();
            assert_eq!(
                std::fs::read_to_string(file.path()).unwrap(),
                format!("{n}\n")
            );
            on_host += 1;
        }
    }
    assert_eq!(on_host, FILES);
    let large = std::fs::read(t.ws.join("large")).unwrap();
    assert_eq!(large.len(), 16 << 20);
    let line = b"0123456789abcdef\n";
    assert!(
        large
            .iter()
            .enumerate()
            .all(|(i, b)| *b == line[i % line.len()]),
        "the large file's bytes"
    );
    // Host to guest: a tree made on the host, then removed by the guest.
    std::fs::create_dir(t.ws.join("from-host-tree")).unwrap();
    for i in 0..300 {
        std::fs::write(t.ws.join(format!("from-host-tree/h{i}")), i.to_string()).unwrap();
    }
    assert_eq!(
        guest_ok(
            &s,
            "many",
            &t.ws,
            "ls from-host-tree | wc -l; rm -rf tree from-host-tree large"
        ),
        "300\n"
    );
    assert!(!t.ws.join("tree").exists() && !t.ws.join("from-host-tree").exists());
    s.ok(&["rm", "--force", "many"]);
    s.assert_clean();
}

#[test]
fn the_server_is_confined_and_ends_with_its_sandbox() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let t = host_tree(&s);
    s.ok(&[
        "start",
        "--name",
        "c",
        "--workspace",
        t.ws.to_str().unwrap(),
    ]);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.state_dir().join("sandboxes/c/workspace.json")).unwrap(),
    )
    .unwrap();
    let pid = u32::try_from(record["server_pid"].as_u64().unwrap()).unwrap();
    common::assert_unprivileged(pid);
    // Its own mount namespace, whose root holds the workspace alone.
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
    assert_ne!(ns(&pid.to_string()), ns("self"));
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let seen: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let first = t.ws.components().nth(1).unwrap();
    assert_eq!(
        seen,
        vec![first.as_os_str().to_string_lossy().into_owned()],
        "the server's root"
    );
    assert!(root
        .join(t.ws.strip_prefix("/").unwrap())
        .join("from-host")
        .exists());
    assert!(!root.join(t.outside.strip_prefix("/").unwrap()).exists());
    s.ok(&["stop", "c"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while paddock_vmm::sandbox::process_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !paddock_vmm::sandbox::process_alive(pid),
        "the server outlived its sandbox"
    );
    s.ok(&["rm", "c"]);
}

#[test]
fn a_workspace_that_is_not_a_directory_leaves_nothing_behind() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let file = s.path("a-file");
    std::fs::write(&file, b"x").unwrap();
    for bad in [file.clone(), s.path("missing")] {
        let out = s.cli(&[
            "start",
            "--name",
            "bad",
            "--workspace",
            bad.to_str().unwrap(),
        ]);
        assert_ne!(out.status.code(), Some(0));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("workspace"), "{stderr}");
        assert!(s.listed("bad").is_none(), "a sandbox was left: {stderr}");
    }
    s.assert_no_sandboxes_running();
}

/// The lines of `paddock diff NAME`, sorted.
fn diff_lines(s: &Scratch, name: &str) -> Vec<String> {
    let mut lines: Vec<String> = s.ok(&["diff", name]).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn a_copy_on_write_workspace_keeps_changes_until_applied_and_a_reset_drops_them() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let t = host_tree(&s);
    std::fs::write(t.ws.join("edit-both"), b"base\n").unwrap();
    std::fs::write(t.ws.join("remove-me"), b"old\n").unwrap();
    let ws = t.ws.to_str().unwrap();
    s.ok(&[
        "start",
        "--name",
        "cw",
        "--workspace",
        ws,
        "--workspace-mode",
        "cow",
    ]);
    let before = tree_state(&t.host, Path::new("/nonexistent"));

    // The guest changes files; the host's directory does not change.
    guest_ok(
        &s,
        "cw",
        &t.ws,
        "echo new > added && printf 'changed\\n' > from-host && rm remove-me && \
         mkdir -p newdir && echo n > newdir/f && echo guest > edit-both",
    );
    assert_eq!(
        guest_ok(&s, "cw", &t.ws, "cat added from-host"),
        "new\nchanged\n"
    );
    assert_eq!(tree_state(&t.host, Path::new("/nonexistent")), before);
    assert_eq!(
        diff_lines(&s, "cw"),
        [
            "A  added",
            "A  newdir/",
            "A  newdir/f",
            "D  remove-me",
            "M  edit-both",
            "M  from-host"
        ]
    );
    let patch = s.ok(&["diff", "--patch", "cw"]);
    assert!(
        patch.contains("-written on the host\n+changed\n"),
        "{patch}"
    );
    assert!(patch.contains("+++ b/added\n"), "{patch}");

    // The host edits a file the guest edited too: that one is refused, the rest applied.
    std::fs::write(t.ws.join("edit-both"), b"the host's edit\n").unwrap();
    let out = s.cli(&["apply", "cw"]);
    assert_ne!(out.status.code(), Some(0), "a refusal is a failure");
    assert!(
        text(&out.stderr).contains("refused M  edit-both"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(t.ws.join("added")).unwrap(), b"new\n");
    assert_eq!(std::fs::read(t.ws.join("from-host")).unwrap(), b"changed\n");
    assert_eq!(std::fs::read(t.ws.join("newdir/f")).unwrap(), b"n\n");
    assert!(!t.ws.join("remove-me").exists());
    assert_eq!(
        std::fs::read(t.ws.join("edit-both")).unwrap(),
        b"the host's edit\n"
    );
    // SAFETY: geteuid has no memory effects.
    let me = unsafe { libc::geteuid() };
    assert_eq!(std::fs::metadata(t.ws.join("added")).unwrap().uid(), me);
    // What was applied is no change any more; the refused one stays in the sandbox.
    assert_eq!(diff_lines(&s, "cw"), ["M  edit-both"]);
    let out = s.cli(&["apply", "cw", "edit-both"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read(t.ws.join("edit-both")).unwrap(),
        b"the host's edit\n"
    );

    // A reset drops the guest's changes: it sees the host's directory again.
    let host_now = tree_state(&t.host, Path::new("/nonexistent"));
    s.ok(&["reset", "cw"]);
    assert_eq!(
        guest_ok(&s, "cw", &t.ws, "cat edit-both"),
        "the host's edit\n"
    );
    assert!(diff_lines(&s, "cw").is_empty());
    guest_ok(&s, "cw", &t.ws, "echo still-cow > after-reset");
    assert!(!t.ws.join("after-reset").exists());
    assert_eq!(tree_state(&t.host, Path::new("/nonexistent")), host_now);
    // A live sandbox has nothing to review.
    s.ok(&["rm", "--force", "cw"]);
    s.ok(&["start", "--name", "lv", "--workspace", ws]);
    let out = s.cli(&["diff", "lv"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("live"), "{}", text(&out.stderr));
    s.ok(&["rm", "--force", "lv"]);
    s.assert_clean();
}

#[test]
fn forks_of_one_snapshot_each_keep_their_own_copy_on_write_changes() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let t = host_tree(&s);
    let snap = s.path("snap");
    s.ok(&["start", "--name", "base"]);
    s.ok(&["snapshot", "base", snap.to_str().unwrap(), "--stop"]);
    let (snap_arg, ws) = (snap.to_str().unwrap(), t.ws.to_str().unwrap());
    s.ok(&[
        "fork",
        snap_arg,
        "--count",
        "2",
        "--prefix",
        "f",
        "--workspace",
        ws,
        "--workspace-mode",
        "cow",
    ]);
    let names = ["f-0", "f-1"];
    for (i, name) in names.iter().enumerate() {
        guest_ok(
            &s,
            name,
            &t.ws,
            &format!("echo {i} > mine && echo {i} > from-host"),
        );
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            guest_ok(&s, name, &t.ws, "cat mine from-host"),
            format!("{i}\n{i}\n")
        );
        assert_eq!(diff_lines(&s, name), ["A  mine", "M  from-host"]);
    }
    assert!(!t.ws.join("mine").exists());
    assert_eq!(
        std::fs::read(t.ws.join("from-host")).unwrap(),
        b"written on the host\n"
    );
    // A restore of the same snapshot can share it live.
    s.ok(&["restore", snap_arg, "--name", "r", "--workspace", ws]);
    assert_eq!(
        guest_ok(&s, "r", &t.ws, "cat from-host"),
        "written on the host\n"
    );
    for name in ["f-0", "f-1", "r", "base"] {
        s.ok(&["rm", "--force", name]);
    }
    s.assert_clean();
}

/// What the guest process started by [`hold_open`] saw once let go: each held file's bytes
/// (or its error), its working directory, and its listing of it.
fn held_results(s: &Scratch, name: &str) -> String {
    guest_ok(
        s,
        name,
        Path::new("/"),
        "touch /tmp/go; for i in $(seq 300); do [ -e /tmp/done ] && break; sleep 0.1; done; \
         for f in 3 4 5; do echo \"fd $f: $(cat /tmp/r$f) $(cat /tmp/e$f)\"; done; \
         echo \"cwd: $(cat /tmp/pwd)\"; echo \"ls: $(cat /tmp/ls)\"",
    )
}

/// Starts a guest process that opens three files of the workspace and changes into one of its
/// directories, then waits for `/tmp/go` to read them and list it.
fn hold_open(s: &Scratch, name: &str, ws: &Path) {
    let ws = ws.to_str().unwrap();
    guest_ok(
        s,
        name,
        Path::new("/"),
        &format!(
            "( exec 3<{ws}/keep 4<{ws}/gone 5<{ws}/replaced; cd {ws}/d; echo held > /tmp/held; \
             while [ ! -e /tmp/go ]; do sleep 0.1; done; \
             for f in 3 4 5; do cat <&$f > /tmp/r$f 2> /tmp/e$f; done; \
             pwd > /tmp/pwd; ls > /tmp/ls 2>&1; touch /tmp/done ) </dev/null >/dev/null 2>&1 & \
             for i in $(seq 100); do [ -e /tmp/held ] && exit 0; sleep 0.1; done; exit 1"
        ),
    );
}

#[test]
fn a_mount_held_by_a_snapshot_carries_on_with_its_open_files() {
    if !e2e_available() {
        return;
    }
    let s = Scratch::new();
    let t = host_tree(&s);
    for (file, bytes) in [
        ("keep", "kept\n"),
        ("gone", "gone\n"),
        ("replaced", "old\n"),
    ] {
        std::fs::write(t.ws.join(file), bytes).unwrap();
    }
    std::fs::create_dir(t.ws.join("d")).unwrap();
    std::fs::write(t.ws.join("d/inside"), b"x").unwrap();
    let ws = t.ws.to_str().unwrap();
    s.ok(&["start", "--name", "m", "--workspace", ws]);
    hold_open(&s, "m", &t.ws);
    let snap = s.path("snap");
    let snap_arg = snap.to_str().unwrap();
    s.ok(&["snapshot", "m", snap_arg]);

    // Meanwhile on the host: one file edited in place, one deleted, one replaced by another
    // file at the same path.
    std::fs::write(t.ws.join("keep"), b"kept, then edited\n").unwrap();
    std::fs::remove_file(t.ws.join("gone")).unwrap();
    std::fs::write(t.ws.join("replacement"), b"new\n").unwrap();
    std::fs::rename(t.ws.join("replacement"), t.ws.join("replaced")).unwrap();

    // Each way back to the snapshot: the held files read as the host has them now, the gone
    // one and the replaced one fail (never the other file's bytes), the working directory
    // still works; the mount is the snapshot's (one mount there, not a new one).
    let check = |name: &str| {
        let seen = held_results(&s, name);
        assert!(seen.contains("fd 3: kept, then edited"), "{name}: {seen}");
        assert!(
            seen.contains("fd 4:  ") && seen.lines().any(|l| l.starts_with("fd 4:  cat")),
            "{name}: the deleted file read: {seen}"
        );
        assert!(
            !seen.contains("fd 5: new") && seen.lines().any(|l| l.starts_with("fd 5:  cat")),
            "{name}: the replaced file read: {seen}"
        );
        assert!(seen.contains(&format!("cwd: {ws}/d")), "{name}: {seen}");
        assert!(seen.contains("ls: inside"), "{name}: {seen}");
        let mounts = guest_ok(
            &s,
            name,
            Path::new("/"),
            &format!("grep -c ' {ws} ' /proc/self/mountinfo"),
        );
        assert_eq!(mounts.trim(), "1", "{name}: mounts at {ws}");
        assert_eq!(
            guest_ok(&s, name, &t.ws, "cat keep; echo more > made-after"),
            "kept, then edited\n"
        );
        assert_eq!(std::fs::read(t.ws.join("made-after")).unwrap(), b"more\n");
        std::fs::remove_file(t.ws.join("made-after")).unwrap();
    };
    // A restore (the directory the snapshot shared, by default).
    s.ok(&["restore", snap_arg, "--name", "r"]);
    check("r");
    // A reset in place to the snapshot.
    s.ok(&["reset", "m"]);
    check("m");
    // Forks.
    s.ok(&["fork", snap_arg, "--count", "2", "--prefix", "f"]);
    check("f-0");
    check("f-1");

    // A directory that is not one, or another mode, is refused; nothing is left behind.
    let out = s.cli(&[
        "restore",
        snap_arg,
        "--name",
        "bad",
        "--workspace",
        t.ws.join("keep").to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("Not a directory"),
        "{}",
        text(&out.stderr)
    );
    let out = s.cli(&[
        "restore",
        snap_arg,
        "--name",
        "bad",
        "--workspace",
        ws,
        "--workspace-mode",
        "cow",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("cannot change"),
        "{}",
        text(&out.stderr)
    );
    for name in ["r", "m", "f-0", "f-1"] {
        s.ok(&["rm", "--force", name]);
    }
    s.assert_clean();
}
