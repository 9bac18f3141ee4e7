//! The user a VMM started by root runs as (`--vmm-user`, `$PADDOCK_VMM_USER`): root's VMM
//! gives up its user id too, not only its capabilities, so a guest that takes the VMM over owns
//! no root file and can signal no root process. The user's group is what the VMM and root share:
//! the sandbox's directory and the snapshot directories the VMM writes become root's and that
//! group's alone (`rwxrws---`: what is created inside keeps the group), and the helpers' sockets
//! in the sandbox's directory are open to all, the directory keeping others out. `/dev/kvm`,
//! often root's alone, is opened before the ids change.

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A user and group id pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmmUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id: the group the VMM shares its files with root through.
    pub gid: u32,
}

/// Why `--vmm-user` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VmmUserError {
    /// The name is no user on this host.
    #[error("--vmm-user: no user {0:?} on this host (give a name, UID or UID:GID)")]
    UnknownUser(String),
    /// The group is no group on this host.
    #[error("--vmm-user: no group {0:?} on this host")]
    UnknownGroup(String),
    /// Root itself: that is no drop.
    #[error("--vmm-user must name an unprivileged user, not root (uid 0 or gid 0)")]
    Root,
    /// Only root can run a VMM as another user.
    #[error("--vmm-user needs paddock to run as root (an ordinary user's VMM runs as that user)")]
    NotRoot,
    /// Changing ids failed.
    #[error("becoming uid {uid} gid {gid} failed: {step}")]
    Become {
        /// The uid.
        uid: u32,
        /// The gid.
        gid: u32,
        /// The call that failed.
        step: &'static str,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// A directory or socket could not be opened to the group.
    #[error("opening {path} to the VMM's group failed")]
    Share {
        /// The path.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

impl VmmUser {
    /// Parses `NAME`, `UID`, `NAME:GROUP` or `UID:GID` (a name's group defaults to its own).
    pub fn parse(text: &str) -> Result<Self, VmmUserError> {
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        let (uid, own_gid) = match user.parse::<u32>() {
            Ok(uid) => (uid, lookup_user_by_id(uid)),
            Err(_) => lookup_user(user)
                .map(|(uid, gid)| (uid, Some(gid)))
                .ok_or_else(|| VmmUserError::UnknownUser(user.into()))?,
        };
        let gid = match group {
            Some(group) => match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    lookup_group(group).ok_or_else(|| VmmUserError::UnknownGroup(group.into()))?
                }
            },
            None => own_gid.ok_or_else(|| VmmUserError::UnknownUser(user.into()))?,
        };
        if uid == 0 || gid == 0 {
            return Err(VmmUserError::Root);
        }
        Ok(Self { uid, gid })
    }

    /// The form `paddock __vmm --vmm-user` takes (ids, nothing to look up).
    pub fn to_arg(self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }

    /// Checks that this process may start VMMs as another user.
    pub fn check_caller() -> Result<(), VmmUserError> {
        // SAFETY: geteuid has no memory effects.
        if unsafe { libc::geteuid() } != 0 {
            return Err(VmmUserError::NotRoot);
        }
        Ok(())
    }

    /// Becomes this user: its group as the only one, then its uid; the process stays dumpable
    /// so that it may still open its own `/proc` files (pagemap, statm). Capabilities go with
    /// the uid. What the VMM needs of root's it opens before (`/dev/kvm`: see
    /// `kvm::open_early`). Single-threaded callers only (ids are per thread to the kernel).
    pub fn become_user(self) -> Result<(), VmmUserError> {
        let fail = |step| {
            let source = std::io::Error::last_os_error();
            move || VmmUserError::Become {
                uid: self.uid,
                gid: self.gid,
                step,
                source,
            }
        };
        let groups = [self.gid];
        // SAFETY: `groups` is a valid array of `groups.len()` gids for the call's duration.
        if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
            return Err(fail("setgroups")());
        }
        // SAFETY: setresgid/setresuid take ids only.
        if unsafe { libc::setresgid(self.gid, self.gid, self.gid) } != 0 {
            return Err(fail("setresgid")());
        }
        // SAFETY: as above.
        if unsafe { libc::setresuid(self.uid, self.uid, self.uid) } != 0 {
            return Err(fail("setresuid")());
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
            return Err(fail("prctl(PR_SET_DUMPABLE)")());
        }
        Ok(())
    }
}

/// Opens directory `dir` to group `gid` and closes it to everyone else: owned by root and
/// `gid`, mode `rwxrws---` (set-group-ID: what is created inside keeps the group). Sockets in
/// such a directory may be open to all (see [`dir_is_shared`]): the directory keeps others out.
pub fn share_dir(dir: &Path, gid: u32) -> Result<(), VmmUserError> {
    let share_err = |source| VmmUserError::Share {
        path: dir.to_path_buf(),
        source,
    };
    std::os::unix::fs::chown(dir, None, Some(gid)).map_err(share_err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770)).map_err(share_err)
}

/// Whether `dir` is a directory [`share_dir`] made: set-group-ID, `rwxrwx---`.
pub fn dir_is_shared(dir: &Path) -> bool {
    shared_group(dir).is_some()
}

/// Opens file `path` (created by root for the VMM to write, e.g. a console log) to group `gid`:
/// group-owned and `g+rw`; its owner and other bits stay.
pub fn share_file(path: &Path, gid: u32) -> Result<(), VmmUserError> {
    let share_err = |source| VmmUserError::Share {
        path: path.to_path_buf(),
        source,
    };
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(share_err)?;
    let mode = std::fs::metadata(path).map_err(share_err)?.mode() & 0o7777;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o060)).map_err(share_err)
}

/// The group `dir` was opened to by [`share_dir`], if it was.
pub fn shared_group(dir: &Path) -> Option<u32> {
    let meta = std::fs::metadata(dir).ok()?;
    (meta.mode() & 0o2077 == 0o2070).then(|| meta.gid())
}

/// A `passwd` entry by name: (uid, gid).
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    with_passwd(|pwd, buf, result| {
        // SAFETY: every pointer is valid for the call; getpwnam_r writes only into them.
        unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
}

/// The primary gid of uid `uid`, when it has a `passwd` entry.
fn lookup_user_by_id(uid: u32) -> Option<u32> {
    with_passwd(|pwd, buf, result| {
        // SAFETY: every pointer is valid for the call; getpwuid_r writes only into them.
        unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result) }
    })
    .map(|(_, gid)| gid)
}

fn with_passwd(
    call: impl Fn(&mut libc::passwd, &mut [libc::c_char], &mut *mut libc::passwd) -> libc::c_int,
) -> Option<(u32, u32)> {
    // SAFETY: passwd is plain data; all-zero is a valid (empty) value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    if call(&mut pwd, &mut buf, &mut result) != 0 || result.is_null() {
        return None;
    }
    Some((pwd.pw_uid, pwd.pw_gid))
}

/// A group's gid by name.
fn lookup_group(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: group is plain data; all-zero is a valid (empty) value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getgrnam_r writes only into them.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests;
