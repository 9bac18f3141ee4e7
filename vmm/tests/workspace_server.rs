//! The workspace server as it runs beside a sandbox (the real `paddock __workspace` binary,
//! jailed and under its seccomp filter) serving a real kernel FUSE mount on this host, through
//! guest-init's own relay: every file operation a workload makes must work, and none may kill
//! the server. No KVM needed; where this host cannot mount FUSE (no `/dev/fuse`, no permission)
//! the test says so and does nothing. The same server serves a real guest in `e2e_workspace`.

use guest_init::workspace::{relay_replies, relay_requests, Notifier};
use paddock_protocol::workspace::HELLO;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::seccomp_modes;

/// The open-file soft limit the server starts with (a checkout has more files than this).
const SOFT_OPEN_FILES: libc::rlim_t = 256;
/// Files in the workload's checkout: more than the server's starting soft limit, and than the
/// usual 1024.
const CHECKOUT_FILES: usize = 1500;

/// A running server, the process it watches, and the FUSE mount it serves.
struct Served {
    server: Child,
    watched: Child,
    mount: PathBuf,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        unmount(&self.mount);
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = self.watched.kill();
        let _ = self.watched.wait();
    }
}

fn unmount(target: &Path) {
    let Ok(target) = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid C string; MNT_DETACH has no other arguments.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
}

/// Opens `/dev/fuse` and mounts it at `target`; `None` where this host does not allow it.
fn mount_fuse(target: &Path) -> Option<File> {
    let fuse = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/fuse")
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skipped: /dev/fuse cannot be opened here ({e})");
            return None;
        }
    };
    let options = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,allow_other,max_read={}",
        fuse.as_raw_fd(),
        1 << 20
    );
    let source = c"paddock-workspace";
    let fstype = c"fuse";
    let target_c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
    let options_c = std::ffi::CString::new(options).unwrap();
    // SAFETY: valid C strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options_c.as_ptr().cast(),
        )
    };
    if rc != 0 {
        eprintln!(
            "skipped: this host does not allow mounting FUSE ({})",
            std::io::Error::last_os_error()
        );
        return None;
    }
    Some(fuse)
}

fn wait_for(path: &Path, server: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("the workspace server ended at start: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the workspace server never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the server on a fresh directory and mounts what it serves; `None` where FUSE cannot
/// be mounted here.
fn serve(cow: bool) -> Option<Served> {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("project");
    let mount = scratch.path().join("mnt");
    let jail = scratch.path().join("jail");
    for d in [&dir, &mount, &jail] {
        std::fs::create_dir(d).unwrap();
    }
    let dir = dir.canonicalize().unwrap();
    let socket = scratch.path().join("workspace.sock");
    let fuse = mount_fuse(&mount)?;
    let watched = Command::new("sleep").arg("600").spawn().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_paddock"));
    server
        .arg("__workspace")
        .arg("--dir")
        .arg(&dir)
        .arg("--socket")
        .arg(&socket)
        .arg("--control-socket")
        .arg(scratch.path().join("control.sock"))
        .arg("--jail-root")
        .arg(&jail)
        .arg("--vmm-pid")
        .arg(watched.id().to_string())
        .args(cow.then_some("--cow"))
        .stdin(Stdio::null());
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        server.pre_exec(|| {
            // The usual soft limit, or lower: the server must raise it itself to hold a
            // descriptor for every file the kernel has cached.
            let low = libc::rlimit {
                rlim_cur: SOFT_OPEN_FILES,
                rlim_max: libc::RLIM_INFINITY,
            };
            let mut current = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut current);
            let low = libc::rlimit {
                rlim_max: current.rlim_max,
                ..low
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &low);
            Ok(())
        });
    }
    let mut server = server.spawn().unwrap();
    wait_for(&socket, &mut server);
    let mut host = UnixStream::connect(&socket).unwrap();
    host.write_all(HELLO).unwrap();
    let mut session = [0u8; paddock_protocol::workspace::SESSION_ID_LEN];
    host.read_exact(&mut session).unwrap();
    let (fuse_in, fuse_out) = (fuse.try_clone().unwrap(), fuse);
    let (host_in, host_out) = (host.try_clone().unwrap(), host);
    std::thread::spawn(move || relay_requests(fuse_in, host_out));
    let notifier = Notifier::start(fuse_out.try_clone().unwrap()).unwrap();
    std::thread::spawn(move || relay_replies(host_in, fuse_out, notifier));
    Some(Served {
        server,
        watched,
        mount,
        dir,
        _scratch: scratch,
    })
}

fn assert_alive(served: &mut Served) {
    if let Some(status) = served.server.try_wait().unwrap() {
        panic!("the workspace server died: {status} (a syscall its filter lacks?)");
    }
}

/// Everything a build, an editor or git does to files, through the mount.
fn workload(root: &Path, server: u32) {
    let src = root.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    let file = src.join("main.rs");
    std::fs::write(&file, b"fn main() {}\n").unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"fn main() {}\n");

    // Append, seek, positioned I/O, truncate, fsync, fallocate.
    let mut f = OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(b"// more\n").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    drop(f);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    f.seek(SeekFrom::Start(3)).unwrap();
    let mut four = [0u8; 4];
    f.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"main");
    f.set_len(2).unwrap();
    // SAFETY: fallocate on an open descriptor with a valid range.
    assert_eq!(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 8192) }, 0);
    assert_eq!(f.metadata().unwrap().len(), 8192);
    drop(f);

    // A large file, written and read back in large pieces.
    let big = root.join("big.bin");
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut f = File::create(&big).unwrap();
    for _ in 0..8 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let mut back = Vec::new();
    File::open(&big).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 8 << 20);
    assert!(back.chunks(1 << 20).all(|c| c == chunk.as_slice()));

    // Names: rename, exchange by rename over, links, symlinks, readdir, stat.
    std::fs::rename(&file, src.join("lib.rs")).unwrap();
    std::fs::write(src.join("old.rs"), b"old").unwrap();
    std::fs::rename(src.join("old.rs"), src.join("lib.rs")).unwrap();
    std::fs::hard_link(src.join("lib.rs"), src.join("lib2.rs")).unwrap();
    assert_eq!(std::fs::metadata(src.join("lib2.rs")).unwrap().nlink(), 2);
    // A multiply linked file is not written through (it could be a host link to outside).
    let refused = OpenOptions::new().write(true).open(src.join("lib.rs"));
    assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EPERM));
    std::fs::remove_file(src.join("lib2.rs")).unwrap();
    std::os::unix::fs::symlink("lib.rs", src.join("link")).unwrap();
    assert_eq!(
        std::fs::read_link(src.join("link")).unwrap(),
        Path::new("lib.rs")
    );
    assert_eq!(std::fs::read(src.join("link")).unwrap(), b"old");
    let mut names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["lib.rs", "link"]);

    // Modes and times.
    std::fs::set_permissions(src.join("lib.rs"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::metadata(src.join("lib.rs")).unwrap().mode() & 0o777,
        0o600
    );
    let f = File::options()
        .write(true)
        .open(src.join("lib.rs"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    assert_eq!(
        std::fs::metadata(src.join("lib.rs")).unwrap().mtime(),
        1_000_000
    );
    drop(f);

    // The rest of what tools call: a regular mknod, chown to oneself, access, xattrs (not
    // kept: refused, not fatal), SEEK_DATA, locks, an atomic exchange, a directory fsync,
    // copy_file_range.
    let made = std::ffi::CString::new(root.join("made").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C string; a regular file needs no device number.
    let made_rc = unsafe { libc::mknod(made.as_ptr(), libc::S_IFREG | 0o644, 0) };
    assert_eq!(made_rc, 0);
    // SAFETY: getuid and getgid have no memory effects.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    std::os::unix::fs::chown(root.join("made"), Some(uid), Some(gid)).unwrap();
    // SAFETY: valid C string.
    let access_rc = unsafe { libc::access(made.as_ptr(), libc::R_OK | libc::W_OK) };
    assert_eq!(access_rc, 0);
    let attr = c"user.test";
    // SAFETY: valid C strings and a buffer of the length given.
    let got = unsafe { libc::getxattr(made.as_ptr(), attr.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(got < 0);
    // SAFETY: as above.
    let set = unsafe { libc::setxattr(made.as_ptr(), attr.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert!(set < 0);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("made"))
        .unwrap();
    (&f).write_all(b"data").unwrap();
    // SAFETY: lseek on an open descriptor.
    assert_eq!(unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) }, 0);
    // SAFETY: flock on an open descriptor (FUSE may refuse it; it must not kill the server).
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    let copy = File::create(root.join("copy")).unwrap();
    // SAFETY: both descriptors open, null offsets use the files' own.
    let copied = unsafe {
        libc::copy_file_range(
            f.as_raw_fd(),
            std::ptr::null_mut(),
            copy.as_raw_fd(),
            std::ptr::null_mut(),
            4,
            0,
        )
    };
    assert!(copied == 4 || copied < 0);
    drop((f, copy));
    let a = std::ffi::CString::new(root.join("made").as_os_str().as_encoded_bytes()).unwrap();
    let b = std::ffi::CString::new(root.join("copy").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C strings; the exchange swaps two names in one directory.
    let exchanged = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert!(exchanged == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL));
    File::open(root).unwrap().sync_all().unwrap();
    std::fs::remove_file(root.join("made")).unwrap();
    std::fs::remove_file(root.join("copy")).unwrap();

    // Many small files (a checkout), all looked up at once, then gone again.
    for i in 0..CHECKOUT_FILES {
        std::fs::write(root.join(format!("a/b/c/f{i}")), i.to_string()).unwrap();
    }
    for entry in std::fs::read_dir(root.join("a/b/c")).unwrap() {
        let meta = std::fs::metadata(entry.unwrap().path()).unwrap();
        assert!(meta.len() > 0);
    }
    // The server holds a descriptor for every file the kernel has cached, past the soft limit
    // it started with.
    let held = std::fs::read_dir(format!("/proc/{server}/fd"))
        .unwrap()
        .count();
    assert!(held > CHECKOUT_FILES, "the server holds {held} descriptors");
    // SAFETY: statfs with a valid path and output buffer.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    let root_c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statfs(root_c.as_ptr(), &mut sfs) }, 0);
    std::fs::remove_dir_all(root.join("a")).unwrap();
    std::fs::remove_file(&big).unwrap();
}

#[test]
fn the_jailed_filtered_server_serves_every_file_operation_of_a_workload() {
    let Some(mut served) = serve(false) else {
        return;
    };
    let mount = served.mount.clone();
    workload(&mount, served.server.id());
    assert_alive(&mut served);
    // (Checked once the server has answered: it listens before its filter goes on, and
    // accepts only after.)
    let modes = seccomp_modes(served.server.id());
    assert!(
        modes.iter().all(|m| m == "2"),
        "every thread of the workspace server is filtered: {modes:?}"
    );
    // What the workload left is on the host, as the host user's.
    let lib = served.dir.join("src/lib.rs");
    assert_eq!(std::fs::read(&lib).unwrap(), b"old");
    // SAFETY: geteuid has no memory effects.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(std::fs::metadata(&lib).unwrap().uid(), uid);
    assert!(!served.dir.join("a").exists());
}

#[test]
fn the_read_only_server_reads_and_refuses_writes_without_dying() {
    let Some(mut served) = serve(true) else {
        return;
    };
    std::fs::write(served.dir.join("given.txt"), b"from the host").unwrap();
    let mount = served.mount.clone();
    assert_eq!(
        std::fs::read(mount.join("given.txt")).unwrap(),
        b"from the host"
    );
    let refused = std::fs::write(mount.join("new.txt"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
    assert_alive(&mut served);
}

/// Polls `check` every 10 ms for up to half a second (less than the one-second cache a mount
/// without the host watch has); whether it held.
fn soon(check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

#[test]
fn the_hosts_changes_reach_a_mount_that_caches_them_for_long() {
    let Some(mut served) = serve(false) else {
        return;
    };
    let (dir, mount) = (served.dir.clone(), served.mount.clone());
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/f"), b"one").unwrap();
    // The mount looks at all of it: names, sizes, an absent name (cached for 30 s beneath a
    // watched directory).
    assert_eq!(std::fs::read(mount.join("d/f")).unwrap(), b"one");
    assert!(!mount.join("d/g").exists());
    // The host changes all of it; the server's watch (under its filter) tells the kernel.
    std::fs::write(dir.join("d/f"), b"two, and longer").unwrap();
    std::fs::write(dir.join("d/g"), b"new").unwrap();
    assert!(
        soon(|| std::fs::read(mount.join("d/f")).ok().as_deref()
            == Some(b"two, and longer".as_slice())),
        "the host's write did not reach the mount"
    );
    assert!(
        soon(|| mount.join("d/g").exists()),
        "the host's new file did not reach the mount"
    );
    std::fs::remove_file(dir.join("d/f")).unwrap();
    assert!(
        soon(|| !mount.join("d/f").exists()),
        "the host's removal did not reach the mount"
    );
    assert_alive(&mut served);
}
