//! The agent profile's root switch, for real: an erofs image built with `mkfs.erofs` on a loop
//! device becomes the read-only lower layer of PID 1's new root, in new mount and PID
//! namespaces (`unshare`, needs root, `mkfs.erofs` and `losetup`; skipped otherwise).
//!
//! The inner run first checks that failed switches (no such device, not an erofs image) are
//! undone, then switches for real and checks the new root: an overlay whose writes land in
//! memory, the image's contents, the carried and late mounts, and commands running inside it.
//! The cgroup delegation is not run here: without a cgroup namespace it would move the build
//! machine's processes.

use guest_init::pid1::mount_plan::{boot_plan, Profile, SwitchStep, SYSTEM_EARLY};
use guest_init::pid1::mounts::{self, MountSpec};
use guest_init::pid1::root_switch::{switch_root, RootSwitchError};
use guest_init::pid1::setup_root::{self, RootOutcome};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INNER: &str = "PADDOCK_AGENT_ROOT_INNER";
const DEVICE: &str = "PADDOCK_AGENT_ROOT_DEVICE";
/// `OVERLAYFS_SUPER_MAGIC` from `<linux/magic.h>`.
const OVERLAYFS_MAGIC: libc::c_long = 0x794c_7630;
const BUSYBOX: &str = "/usr/bin/busybox";

fn main() {
    if std::env::var_os(INNER).is_some() {
        inner();
    } else {
        outer();
    }
}

fn skip(why: &str) {
    println!("agent_root_namespace: skipped ({why})");
}

fn outer() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("needs root for unshare and losetup");
    }
    if !Path::new(BUSYBOX).exists() {
        return skip("no static busybox for the image");
    }
    let work = std::env::temp_dir().join(format!("agent-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let image = match build_image(&work) {
        Ok(image) => image,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return skip(&format!("cannot build an erofs image: {e}"));
        }
    };
    let device = match run("losetup", &["--find", "--show", "--read-only"], &image) {
        Ok(device) => device.trim().to_string(),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return skip(&format!("no loop device: {e}"));
        }
    };
    let result = run_inner(&device);
    detach(&device);
    let _ = std::fs::remove_dir_all(&work);
    match result {
        Ok(output) => check(&output),
        Err(why) => skip(&why),
    }
}

/// Detaches the loop device; the namespace's mounts may take a moment to be released.
fn detach(device: &str) {
    let start = Instant::now();
    let backing = format!(
        "/sys/block/{}/loop/backing_file",
        device.trim_start_matches("/dev/")
    );
    while Path::new(&backing).exists() {
        let _ = Command::new("losetup")
            .args(["--detach", device])
            .stderr(Stdio::null())
            .status();
        if start.elapsed() > Duration::from_secs(10) {
            println!("warning: could not detach {device}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An image with busybox, the directories a root needs and a marker file.
fn build_image(work: &Path) -> io::Result<PathBuf> {
    let tree = work.join("tree");
    for dir in ["bin", "etc", "proc", "sys", "dev", "run", "tmp", "var/lib"] {
        std::fs::create_dir_all(tree.join(dir))?;
    }
    std::fs::copy(BUSYBOX, tree.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh"))?;
    std::fs::write(tree.join("etc/image-marker"), "from the erofs image\n")?;
    let image = work.join("root.erofs");
    let image_arg = image.to_string_lossy().into_owned();
    let tree_arg = tree.to_string_lossy().into_owned();
    run("mkfs.erofs", &[&image_arg, &tree_arg], Path::new(""))?;
    Ok(image)
}

/// Runs `program args [last]`, returning its stdout.
fn run(program: &str, args: &[&str], last: &Path) -> io::Result<String> {
    let mut command = Command::new(program);
    command.args(args);
    if !last.as_os_str().is_empty() {
        command.arg(last);
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run_inner(device: &str) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--propagation", "private"])
        .arg(exe)
        .env(INNER, "1")
        .env(DEVICE, device)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the inner run timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut output);
    }
    print!("{output}");
    if output.is_empty() && status.code() == Some(1) {
        return Err("namespaces unavailable".into());
    }
    assert!(status.success(), "inner run failed: {status:?}");
    Ok(output)
}

fn check(output: &str) {
    for step in [
        "failed switches undone",
        "switched",
        "new root checked",
        "commands run in the new root",
    ] {
        assert!(output.contains(step), "inner run did not report {step:?}");
    }
    println!("agent_root_namespace: ok");
}

fn say(step: &str) {
    println!("{step}");
    let _ = io::stdout().flush();
}

fn inner() {
    // SAFETY: getpid has no preconditions.
    assert_eq!(unsafe { libc::getpid() }, 1, "not PID 1 of a new namespace");
    let device = std::env::var(DEVICE).unwrap();
    let failures = mounts::mount_all(&SYSTEM_EARLY);
    assert!(failures.is_empty(), "{failures:?}");
    // The guest's initramfs root is writable; here the staging area needs its own tmpfs so
    // nothing lands on the build machine's disk.
    mounts::mount(&MountSpec::fixed("tmpfs", "/run", "tmpfs", 0, "mode=0755")).unwrap();

    let root_before = fs_type("/");
    for (bad_device, expected) in [
        ("/dev/no-such-disk", libc::ENOENT),
        ("/dev/null", libc::ENOTBLK),
    ] {
        let steps = boot_plan(&Profile::agent(bad_device)).switch.unwrap();
        let err = switch_root(&steps).unwrap_err();
        println!("refused as expected: {err}");
        match &err {
            RootSwitchError::Mount { device, source, .. } => {
                assert_eq!(device, bad_device);
                assert_eq!(source.raw_os_error(), Some(expected), "{err}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(fs_type("/"), root_before);
        assert_eq!(fs_type("/proc"), libc::PROC_SUPER_MAGIC);
        assert_eq!(fs_type("/dev"), libc::TMPFS_MAGIC);
    }
    // A failure after the overlay is mounted and /proc moved into it is undone too.
    let mut steps = boot_plan(&Profile::agent(&device)).switch.unwrap();
    let proc_moved = steps
        .iter()
        .position(|step| matches!(step, SwitchStep::Move { from: "/proc", .. }))
        .unwrap();
    steps.truncate(proc_moved + 1);
    steps.push(SwitchStep::Mount(MountSpec::fixed(
        "none",
        "/run/paddock/root/broken",
        "no-such-fs",
        0,
        "",
    )));
    let err = switch_root(&steps).unwrap_err();
    println!("refused as expected: {err}");
    assert!(matches!(err, RootSwitchError::Mount { .. }), "{err}");
    assert_eq!(fs_type("/proc"), libc::PROC_SUPER_MAGIC);
    assert_eq!(
        std::fs::read_link("/proc/self").unwrap().to_str(),
        Some("1")
    );
    for staged in ["/run/paddock/root", "/run/paddock/lower", "/run/paddock/rw"] {
        assert_eq!(fs_type(staged), libc::TMPFS_MAGIC, "{staged} still mounted");
    }
    // The directory was made in the overlay, which is gone.
    assert!(!Path::new("/run/paddock/root/proc").exists());
    say("failed switches undone");

    let outcome = setup_root::mount_profile(&Profile::agent(&device));
    assert!(matches!(outcome, RootOutcome::Switched), "{outcome:?}");
    say("switched");

    assert_eq!(fs_type("/"), OVERLAYFS_MAGIC);
    assert_eq!(
        std::fs::read_to_string("/etc/image-marker").unwrap(),
        "from the erofs image\n"
    );
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR")).exists(),
        "the old root is still visible"
    );
    std::fs::write("/etc/written", "in memory").unwrap();
    assert_eq!(
        std::fs::read_to_string("/etc/written").unwrap(),
        "in memory"
    );
    assert_eq!(
        std::fs::read_link("/proc/self").unwrap().to_str(),
        Some("1")
    );
    for (path, magic) in [
        ("/proc", libc::PROC_SUPER_MAGIC),
        ("/sys", libc::SYSFS_MAGIC),
        ("/dev", libc::TMPFS_MAGIC),
        ("/dev/pts", libc::DEVPTS_SUPER_MAGIC),
        ("/dev/shm", libc::TMPFS_MAGIC),
        ("/tmp", libc::TMPFS_MAGIC),
        ("/run", libc::TMPFS_MAGIC),
        ("/sys/fs/cgroup", libc::CGROUP2_SUPER_MAGIC),
        ("/var/lib/docker", libc::TMPFS_MAGIC),
        ("/var/lib/containerd", libc::TMPFS_MAGIC),
    ] {
        assert_eq!(fs_type(path), magic, "filesystem type of {path}");
    }
    assert!(Path::new(&device).exists(), "/dev was not carried over");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(cwd, Path::new("/"));
    say("new root checked");

    // Children see the new root: busybox from the image, the file written above.
    let output = Command::new("/bin/sh")
        .args(["-c", "cat /etc/written; echo; busybox ls /bin"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("in memory\n"), "{text}");
    assert!(text.contains("busybox"), "{text}");
    say("commands run in the new root");
    std::process::exit(0);
}

fn fs_type(path: &str) -> libc::c_long {
    let c_path = std::ffi::CString::new(path).unwrap();
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer for the duration of the call.
    let ret = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    assert_eq!(ret, 0, "statfs {path}");
    st.f_type
}
