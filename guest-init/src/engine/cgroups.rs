//! cgroup v2 delegation for dockerd: enable every available controller for child groups.
//!
//! Writing `cgroup.subtree_control` fails with `EBUSY` while processes sit in the group itself
//! (the "no internal processes" rule, which spares only the true root and so still bites in a
//! cgroup namespace). As moby's dind script does, every process of the group is first moved
//! into a child group ([`INIT_GROUP`]), then the controllers listed in `cgroup.controllers` are
//! enabled.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where guest-init mounts the cgroup2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The child group the root's processes move into.
pub const INIT_GROUP: &str = "init";
/// Largest cgroup interface file read (`cgroup.procs` of a busy group stays far below).
const MAX_INTERFACE_FILE: u64 = 1 << 20;

/// Why cgroup delegation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create the cgroup {path}: {source}")]
    MakeGroup { path: PathBuf, source: io::Error },
    #[error("cannot write {line:?} to {path}: {source}")]
    EnableControllers {
        path: PathBuf,
        line: String,
        source: io::Error,
    },
}

/// What [`delegate_controllers`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Processes moved into the init group.
    pub moved: usize,
    /// The line written to `cgroup.subtree_control` (empty: nothing to enable).
    pub enabled: String,
}

/// The `cgroup.subtree_control` line enabling every controller of a `cgroup.controllers`
/// text: `"cpuset cpu io memory pids"` becomes `"+cpuset +cpu +io +memory +pids"`.
pub fn subtree_control_line(controllers: &str) -> String {
    controllers
        .split_whitespace()
        .map(|controller| format!("+{controller}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pids listed in a `cgroup.procs` text; lines that are not pids are skipped.
pub fn listed_pids(procs: &str) -> Vec<u32> {
    procs
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Moves the processes of the group at `root` into its [`INIT_GROUP`] child and enables every
/// available controller for its children.
pub fn delegate_controllers(root: &Path) -> Result<Delegation, CgroupSetupError> {
    let controllers = read_interface(&root.join("cgroup.controllers"))?;
    let line = subtree_control_line(&controllers);
    if line.is_empty() {
        return Ok(Delegation {
            moved: 0,
            enabled: line,
        });
    }
    let init = root.join(INIT_GROUP);
    match std::fs::create_dir(&init) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(CgroupSetupError::MakeGroup {
                path: init,
                source: e,
            });
        }
        _ => {}
    }
    let procs = read_interface(&root.join("cgroup.procs"))?;
    let target = init.join("cgroup.procs");
    // One pid per write, as the kernel wants. Kernel threads refuse to move (EINVAL) and
    // processes may exit meanwhile (ESRCH): neither blocks enabling controllers.
    let moved = listed_pids(&procs)
        .into_iter()
        .filter(|pid| std::fs::write(&target, pid.to_string()).is_ok())
        .count();
    let control = root.join("cgroup.subtree_control");
    std::fs::write(&control, &line).map_err(|source| CgroupSetupError::EnableControllers {
        path: control,
        line: line.clone(),
        source,
    })?;
    Ok(Delegation {
        moved,
        enabled: line,
    })
}

fn read_interface(path: &Path) -> Result<String, CgroupSetupError> {
    let read = || -> io::Result<String> {
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(MAX_INTERFACE_FILE)
            .read_to_string(&mut text)?;
        Ok(text)
    };
    read().map_err(|source| CgroupSetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_controller_is_enabled() {
        assert_eq!(
            subtree_control_line("cpuset cpu io memory hugetlb pids rdma misc\n"),
            "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc"
        );
        assert_eq!(subtree_control_line("memory"), "+memory");
        assert_eq!(subtree_control_line("\n"), "");
        assert_eq!(subtree_control_line(""), "");
    }

    #[test]
    fn pids_are_read_one_per_line() {
        assert_eq!(listed_pids("1\n23\n\n456\nx\n"), vec![1, 23, 456]);
        assert!(listed_pids("").is_empty());
    }

    /// Runs on a plain directory standing in for a cgroup: the files receive what the kernel
    /// would, in the order it needs.
    #[test]
    fn processes_move_before_controllers_are_enabled() {
        let root = std::env::temp_dir().join(format!("guest-init-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(root.join("cgroup.procs"), "1\n42\n").unwrap();
        let delegation = delegate_controllers(&root).unwrap();
        assert_eq!(delegation.enabled, "+cpu +memory +pids");
        assert_eq!(delegation.moved, 2);
        // A plain file keeps only the last pid written (a cgroup.procs file appends).
        let moved = std::fs::read_to_string(root.join("init/cgroup.procs")).unwrap();
        assert_eq!(moved, "42");
        let control = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap();
        assert_eq!(control, "+cpu +memory +pids");
        // Again: the init group exists already, which is fine.
        assert!(delegate_controllers(&root).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_hierarchy_is_reported() {
        let err = delegate_controllers(Path::new("/nonexistent/cgroup")).unwrap_err();
        assert!(matches!(err, CgroupSetupError::Read { .. }), "{err}");
    }
}
