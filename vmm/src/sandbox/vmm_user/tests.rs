//! Tests of `vmm_user`: naming the user, the shared directories, and what a process that
//! became the user keeps (its own `/proc` files) and loses (root's files, every capability).

use super::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn users_are_named_by_name_id_or_both() {
    let nobody = VmmUser::parse("nobody").expect("every Debian host has nobody");
    assert_eq!(nobody.uid, 65534);
    assert_eq!(VmmUser::parse("65534").unwrap(), nobody);
    assert_eq!(
        VmmUser::parse("65534:4242").unwrap(),
        VmmUser {
            uid: 65534,
            gid: 4242
        }
    );
    // An id without a passwd entry needs its group spelled out.
    assert_eq!(
        VmmUser::parse("4000000:4000000").unwrap(),
        VmmUser {
            uid: 4_000_000,
            gid: 4_000_000
        }
    );
    assert!(matches!(
        VmmUser::parse("4000000"),
        Err(VmmUserError::UnknownUser(_))
    ));
    assert_eq!(
        VmmUser::parse("4000000:4000000").unwrap().to_arg(),
        "4000000:4000000"
    );
}

#[test]
fn root_and_unknown_names_are_refused() {
    assert!(matches!(VmmUser::parse("root"), Err(VmmUserError::Root)));
    assert!(matches!(VmmUser::parse("0:100"), Err(VmmUserError::Root)));
    assert!(matches!(VmmUser::parse("100:0"), Err(VmmUserError::Root)));
    assert!(matches!(
        VmmUser::parse("no-such-user-paddock"),
        Err(VmmUserError::UnknownUser(_))
    ));
    assert!(matches!(
        VmmUser::parse("nobody:no-such-group-paddock"),
        Err(VmmUserError::UnknownGroup(_))
    ));
    assert!(matches!(
        VmmUser::parse(""),
        Err(VmmUserError::UnknownUser(_))
    ));
}

#[test]
fn a_shared_directory_is_group_writable_and_passes_its_group_on() {
    if !is_root() {
        return; // chown to another group needs root
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o701)).unwrap();
    assert_eq!(shared_group(dir.path()), None);
    share_dir(dir.path(), 4242).unwrap();
    let meta = std::fs::metadata(dir.path()).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o2770,
        "g+rwx and setgid, closed to others"
    );
    assert!(dir_is_shared(dir.path()));
    assert_eq!(shared_group(dir.path()), Some(4242));
    let inside = dir.path().join("f");
    std::fs::write(&inside, b"x").unwrap();
    assert_eq!(std::fs::metadata(&inside).unwrap().gid(), 4242);
}

#[test]
fn a_process_that_became_the_vmm_user_keeps_its_own_proc_files_and_nothing_of_root() {
    if !is_root() {
        return;
    }
    let user = VmmUser {
        uid: 65534,
        gid: 65534,
    };
    // In a child: the test process keeps its ids.
    // SAFETY: the child makes syscalls and reads /proc files only, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let checks = [
            user.become_user().is_ok(),
            crate::sandbox::privileges::drop_capabilities().is_ok(),
            // SAFETY: id getters have no memory effects.
            unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) } == (65534, 65534, 65534),
            std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
                // Its own group alone: root's supplementary groups are gone.
                status
                    .lines()
                    .any(|l| l.split_whitespace().eq(["Groups:", "65534"]))
                    && status.lines().any(|l| l == "CapEff:\t0000000000000000")
            }),
            // Its own pagemap stays readable (the VMM reads it on every reset).
            std::fs::File::open("/proc/self/pagemap").is_ok(),
            // Root's files do not.
            std::fs::File::open("/proc/1/environ").is_err(),
        ];
        let failed = checks
            .iter()
            .position(|ok| !ok)
            .map_or(0, |i| i32::try_from(i + 1).unwrap_or(99));
        // SAFETY: ends the child.
        unsafe { libc::_exit(failed) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "the child ended by a signal");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the number of the check that failed"
    );
}
