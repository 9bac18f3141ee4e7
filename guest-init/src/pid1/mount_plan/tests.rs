//! The mount plans of both profiles, as data.

use super::*;

fn targets(specs: &[MountSpec]) -> Vec<&str> {
    specs.iter().map(|spec| spec.target.as_ref()).collect()
}

#[test]
fn the_minimal_profile_mounts_the_system_table_in_place() {
    let plan = boot_plan(&Profile::Minimal);
    assert_eq!(plan.switch, None);
    let all: Vec<MountSpec> = SYSTEM_EARLY.iter().chain(&plan.late).cloned().collect();
    assert_eq!(
        targets(&all),
        [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/tmp",
            "/run",
            "/sys/fs/cgroup"
        ]
    );
    let devpts = &all[3];
    assert_eq!(devpts.fstype, "devpts");
    assert!(devpts.data.contains("ptmxmode=0666"));
    assert_eq!(all[7].fstype, "cgroup2");
}

#[test]
fn the_agent_profile_switches_to_an_overlay_of_the_image() {
    let plan = boot_plan(&Profile::agent("/dev/vda"));
    assert_eq!(targets(&SYSTEM_EARLY), ["/proc", "/sys", "/dev"]);
    let steps = plan.switch.expect("agent switches root");
    let image = root_image("/dev/vda");
    assert_eq!(image.fstype, "erofs");
    assert_eq!(image.flags & libc::MS_RDONLY, libc::MS_RDONLY);
    let expected = vec![
        SwitchStep::Mount(image),
        SwitchStep::Mount(MountSpec::fixed("tmpfs", RW_DIR, "tmpfs", 0, "mode=0755")),
        SwitchStep::MakeDir(UPPER_DIR),
        SwitchStep::MakeDir(WORK_DIR),
        SwitchStep::Mount(MountSpec::fixed(
            "overlay",
            NEW_ROOT,
            "overlay",
            0,
            "lowerdir=/run/paddock/lower,upperdir=/run/paddock/rw/upper,workdir=/run/paddock/rw/work",
        )),
        SwitchStep::MakeDir("/run/paddock/root/proc"),
        SwitchStep::Move {
            from: "/proc",
            to: "/run/paddock/root/proc",
        },
        SwitchStep::MakeDir("/run/paddock/root/sys"),
        SwitchStep::Move {
            from: "/sys",
            to: "/run/paddock/root/sys",
        },
        SwitchStep::MakeDir("/run/paddock/root/dev"),
        SwitchStep::Move {
            from: "/dev",
            to: "/run/paddock/root/dev",
        },
        SwitchStep::EnterRoot { new_root: NEW_ROOT },
    ];
    assert_eq!(steps, expected);
    assert_eq!(
        targets(&plan.late),
        [
            "/dev/pts",
            "/dev/shm",
            "/tmp",
            "/run",
            "/sys/fs/cgroup",
            "/var/lib/docker",
            "/var/lib/containerd"
        ]
    );
    assert!(plan.late[5..].iter().all(|spec| spec.fstype == "tmpfs"));
}

#[test]
fn staging_paths_agree_with_each_other() {
    for dir in [LOWER_DIR, RW_DIR, NEW_ROOT] {
        assert!(dir.starts_with(&format!("{STAGING_DIR}/")), "{dir}");
    }
    for dir in [UPPER_DIR, WORK_DIR] {
        assert!(dir.starts_with(&format!("{RW_DIR}/")), "{dir}");
    }
    for (from, to) in CARRIED {
        assert_eq!(to, format!("{NEW_ROOT}{from}"));
        assert!(SYSTEM_EARLY.iter().any(|spec| spec.target == from));
    }
}

#[test]
fn parents_are_mounted_before_children() {
    for profile in [Profile::Minimal, Profile::agent("/dev/vda")] {
        let plan = boot_plan(&profile);
        let order: Vec<MountSpec> = SYSTEM_EARLY.iter().chain(&plan.late).cloned().collect();
        for (i, spec) in order.iter().enumerate() {
            for later in &order[i + 1..] {
                let child_first = spec.target.starts_with(&format!("{}/", later.target));
                assert!(
                    !child_first,
                    "{} is mounted before its parent {}",
                    spec.target, later.target
                );
            }
        }
    }
}
