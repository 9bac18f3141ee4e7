//! End-to-end tests of the `agent` profile: a Debian guest with its own Docker engine, started
//! from a template snapshot with the engine already up. Through the `paddock` CLI with a real
//! VMM, kernel, root image, dockerd and containerd (natively with hardware KVM, or in the lab).
//! No registry is reachable, so every image is built inside the guest `FROM scratch`.

mod common;

use common::{agent_image_available, e2e_available, text, Scratch};

fn available() -> bool {
    e2e_available() && agent_image_available()
}

/// Runs a shell script in sandbox `name` and returns its stdout; fails the test otherwise.
fn sh(s: &Scratch, name: &str, script: &str) -> String {
    let out = s.cli(&["exec", name, "--", "bash", "-c", script]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "exec {script:?} in {name}: stdout {}\nstderr {}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        s.sandbox_logs(name)
    );
    text(&out.stdout)
}

/// The sandbox's record as `paddock ls --json` shows it.
fn record(s: &Scratch, name: &str) -> serde_json::Value {
    s.listed(name)
        .unwrap_or_else(|| panic!("no sandbox {name} in `ls --json`"))
}

/// Builds the `hello` image inside the guest: `FROM scratch` with a static busybox from the root
/// image, and tags it.
const BUILD_HELLO: &str = r#"set -e
d=$(mktemp -d)
cp /bin/busybox "$d/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\nCMD ["echo", "hello from a container"]\n' > "$d/Dockerfile"
docker build -q -t hello "$d" >/dev/null
rm -rf "$d"
docker run --rm hello
"#;

#[test]
fn the_engine_is_the_guests_own_and_builds_and_runs_images() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    s.ok(&["start", "--name", "e"]);
    let version = sh(&s, "e", "docker version --format '{{.Server.Version}}'");
    assert!(!version.trim().is_empty(), "no server version: {version:?}");
    let info = sh(
        &s,
        "e",
        "docker info --format '{{.CgroupVersion}} {{.Driver}} {{.Name}} {{.KernelVersion}}'",
    );
    let fields: Vec<&str> = info.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"2"), "cgroup v2: {info}");
    assert_eq!(fields.get(1), Some(&"overlay2"), "storage driver: {info}");
    let guest_host = sh(&s, "e", "hostname").trim().to_string();
    let guest_kernel = sh(&s, "e", "uname -r").trim().to_string();
    assert_eq!(
        fields.get(2),
        Some(&guest_host.as_str()),
        "engine is the guest's: {info}"
    );
    assert_eq!(
        fields.get(3),
        Some(&guest_kernel.as_str()),
        "engine runs on the guest kernel: {info}"
    );
    // The only engine the guest can reach is its own: its socket is served by a dockerd of this
    // guest, and nothing points the client elsewhere.
    sh(
        &s,
        "e",
        r#"set -e
test -z "${DOCKER_HOST:-}"
test -S /var/run/docker.sock
pid=$(pidof dockerd)
inode=$(stat -L -c %i /var/run/docker.sock)
grep -q "$inode" /proc/net/unix
ls -l /proc/$pid/fd | grep -q socket
! ls /var/run/docker.sock.host 2>/dev/null"#,
    );

    assert_eq!(sh(&s, "e", BUILD_HELLO), "hello from a container\n");
    let images = sh(&s, "e", "docker images --format '{{.Repository}}'");
    assert!(images.lines().any(|l| l == "hello"), "{images}");

    // Two containers on the default bridge reach each other.
    let reply = sh(
        &s,
        "e",
        r#"set -e
docker run -d --name server hello sh -c 'echo pong-from-server | nc -l -p 7000' >/dev/null
ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' server)
test -n "$ip"
for i in $(seq 1 50); do
  out=$(docker run --rm hello sh -c "nc $ip 7000 </dev/null" 2>/dev/null || true)
  [ -n "$out" ] && break
  sleep 0.5
done
docker ps --format '{{.Names}}' >&2
echo "$out"
docker rm -f server >/dev/null"#,
    );
    assert_eq!(reply.trim(), "pong-from-server");
    s.ok(&["rm", "--force", "e"]);
}

#[test]
fn the_second_start_restores_the_template_instead_of_booting() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    s.ok(&["start", "--name", "first"]);
    s.ok(&["start", "--name", "second"]);
    let second = record(&s, "second");
    assert_eq!(second["launched"], "restore", "{second}");
    let origin = second["origin_snapshot"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        origin.contains("templates"),
        "restored from a template: {second}"
    );
    assert!(
        second["guest"]["engine"]["Up"].is_object(),
        "the engine is up at once: {second}"
    );
    // The template is listed, and a cold boot is still possible on request.
    let listed = s.ok(&["template", "ls", "--json"]);
    assert!(listed.contains("\"agent\""), "{listed}");
    // Its memory file is sparse: what the booted guest touched, not the guest's memory size.
    let rows: serde_json::Value = serde_json::from_str(&listed).expect("template ls --json");
    let template = rows
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|t| origin.contains(t["key"].as_str().unwrap_or("-")))
        })
        .unwrap_or_else(|| panic!("the restored template is listed: {listed}"));
    let memory = template["manifest"]["spec"]["memory_mib"]
        .as_u64()
        .expect("memory_mib")
        << 20;
    let on_disk = template["disk_bytes"].as_u64().expect("disk_bytes");
    assert!(
        on_disk < memory / 2,
        "the template takes {on_disk} bytes on disk for a {memory}-byte guest: {template}"
    );
    s.ok(&["start", "--name", "cold", "--cold-boot"]);
    assert_eq!(record(&s, "cold")["launched"], "boot");
    sh(&s, "second", "docker version >/dev/null");
    for name in ["first", "second", "cold"] {
        s.ok(&["rm", "--force", name]);
    }
}

#[test]
fn containers_survive_restore_and_a_reset_forgets_what_came_after() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    s.ok(&["start", "--name", "base"]);
    sh(&s, "base", BUILD_HELLO);
    sh(
        &s,
        "base",
        "docker run -d --name keeper hello sh -c 'while :; do sleep 1; done' >/dev/null",
    );
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap()]);
    s.ok(&["rm", "--force", "base"]);

    s.ok(&["restore", snap.to_str().unwrap(), "--name", "r"]);
    assert_eq!(
        sh(&s, "r", "docker inspect -f '{{.State.Running}}' keeper").trim(),
        "true",
        "the container started before the snapshot runs after the restore"
    );
    assert_eq!(
        sh(&s, "r", "docker exec keeper /bin/busybox echo inside"),
        "inside\n"
    );

    // What is created after the snapshot is gone after a reset; the engine still answers.
    sh(
        &s,
        "r",
        "docker tag hello later && docker run -d --name newcomer hello sleep 1000 >/dev/null",
    );
    s.ok(&["reset", "r"]);
    let names = sh(&s, "r", "docker ps -a --format '{{.Names}}'");
    assert!(names.lines().any(|n| n == "keeper"), "{names}");
    assert!(!names.lines().any(|n| n == "newcomer"), "{names}");
    let images = sh(&s, "r", "docker images --format '{{.Repository}}'");
    assert!(!images.lines().any(|n| n == "later"), "{images}");

    // Twenty resets in a row, a container started each time, leave the engine healthy.
    for round in 0..20 {
        let out = sh(
            &s,
            "r",
            &format!("docker run --rm hello echo round-{round} && docker ps -q | wc -l"),
        );
        assert_eq!(out, format!("round-{round}\n1\n"), "round {round}");
        s.ok(&["reset", "r"]);
    }
    assert_eq!(
        sh(&s, "r", "docker inspect -f '{{.State.Running}}' keeper && docker info --format '{{.ContainersRunning}}'"),
        "true\n1\n"
    );
    s.ok(&["rm", "--force", "r"]);
}

#[test]
fn bad_images_and_sizes_are_clear_errors() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let image = paddock_vmm::artifacts::Profile::Agent
        .artifacts(None, None, None)
        .image
        .unwrap();

    // Too little memory for the agent profile: refused before anything starts.
    let out = s.cli(&["start", "--name", "tiny", "--memory", "128"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("too small"),
        "{}",
        text(&out.stderr)
    );

    // A missing image.
    let missing = s.path("missing.img");
    let out = s.cli(&["start", "--name", "m", "--image", missing.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("missing.img"),
        "{}",
        text(&out.stderr)
    );

    // A corrupt image (not a paddock image at all, and a damaged one).
    let junk = s.path("junk.img");
    std::fs::write(&junk, vec![0x5a; 1 << 20]).unwrap();
    let out = s.cli(&[
        "start",
        "--name",
        "j",
        "--cold-boot",
        "--image",
        junk.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("image"), "{}", text(&out.stderr));

    // A snapshot refuses a root image whose content changed, and finds a moved identical one.
    let copy = s.path("agent.img");
    std::fs::copy(&image, &copy).unwrap();
    s.ok(&["start", "--name", "base", "--image", copy.to_str().unwrap()]);
    let snap = s.path("snap");
    s.ok(&["snapshot", "base", snap.to_str().unwrap(), "--stop"]);
    s.ok(&["rm", "base"]);
    let moved = s.path("moved.img");
    std::fs::rename(&copy, &moved).unwrap();
    let out = s.cli(&["restore", snap.to_str().unwrap(), "--name", "lost"]);
    assert_ne!(out.status.code(), Some(0), "a missing image is refused");
    assert!(
        text(&out.stderr).contains("--image"),
        "{}",
        text(&out.stderr)
    );
    s.ok(&[
        "restore",
        snap.to_str().unwrap(),
        "--name",
        "found",
        "--image",
        moved.to_str().unwrap(),
    ]);
    sh(&s, "found", "docker version >/dev/null");
    s.ok(&["rm", "--force", "found"]);
    // A damaged image (one byte of its filesystem flipped) is refused as corrupt.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&moved)
            .unwrap();
        f.write_all_at(b"X", 1 << 20).unwrap();
    }
    let out = s.cli(&[
        "restore",
        snap.to_str().unwrap(),
        "--name",
        "corrupt",
        "--image",
        moved.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "a corrupt image is refused");
    assert!(
        text(&out.stderr).contains("not a usable paddock root image"),
        "{}",
        text(&out.stderr)
    );
    // A valid image with other content (the damaged one, sealed again) is refused as changed.
    {
        use rootfs_builder::disk_image;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&moved)
            .unwrap();
        let fs_len = std::fs::metadata(&moved).unwrap().len() - disk_image::BLOCK_SIZE;
        f.set_len(fs_len).unwrap();
        disk_image::write_trailer(&mut f, fs_len, "agent").unwrap();
    }
    let out = s.cli(&[
        "restore",
        snap.to_str().unwrap(),
        "--name",
        "changed",
        "--image",
        moved.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "a changed image is refused");
    assert!(
        text(&out.stderr).contains("changed since the snapshot"),
        "{}",
        text(&out.stderr)
    );
    s.assert_no_sandboxes_running();
}

#[test]
fn the_coding_agents_run_as_the_agent_user_at_the_versions_paddock_lists() {
    if !available() {
        return;
    }
    let s = Scratch::agent();
    let listed: serde_json::Value =
        serde_json::from_str(&s.ok(&["agents", "--json"])).expect("agents --json");
    let agents = listed["agents"].as_array().expect("an agent list").clone();
    for name in ["claude", "gemini", "codex"] {
        assert!(
            agents.iter().any(|a| a["name"] == name),
            "{name} is listed: {listed}"
        );
    }
    s.ok(&["start", "--name", "a"]);
    assert_eq!(sh(&s, "a", "sudo -u agent -H id -u"), "1000\n");
    sh(&s, "a", "sudo -u agent -n sudo -n true");
    for agent in &agents {
        let command = agent["command"].as_str().expect("command");
        let version = agent["version"].as_str().expect("version");
        let out = sh(
            &s,
            "a",
            &format!("cd /home/agent && sudo -u agent -H -- {command} --version"),
        );
        assert!(
            out.split_whitespace().any(|word| word == version),
            "{command} --version as agent printed {out:?}, paddock agents says {version}"
        );
    }
    s.ok(&["rm", "--force", "a"]);
}
