//! The claim: atomic, skipping dead and foreign entries, handing over the sandbox's directory.
//! A listening thread plays each warm VMM (no KVM needed).

use super::entry::{EntryConfig, EntryRecord, PoolDirs, CLAIM_SOCKET, LOG_FILE, RECORD_FILE};
use super::{PoolClaim, PoolLaunch};
use crate::sandbox::daemon::{ConsoleLog, Launch, JAIL_ROOT};
use crate::sandbox::paths::SandboxPaths;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

struct Fixture {
    state: tempfile::TempDir,
    binary: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().unwrap(),
            binary: std::env::current_exe().unwrap(),
        }
    }

    fn pool(&self) -> PoolLaunch {
        PoolLaunch {
            state_dir: self.state.path().to_path_buf(),
            binary: self.binary.clone(),
            seccomp: true,
            vmm_user: None,
        }
    }

    /// An idle entry whose VMM is this process; the listener is its claim socket.
    fn entry(&self, id: &str, seccomp: bool) -> UnixListener {
        let dir = PoolDirs::new(self.state.path()).idle().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LOG_FILE), format!("log of {id}\n")).unwrap();
        let mut config = EntryConfig::current(&self.binary, true, None).unwrap();
        config.seccomp = seccomp;
        EntryRecord {
            config,
            pid: std::process::id(),
            created_unix_secs: 0,
        }
        .write(&dir)
        .unwrap();
        UnixListener::bind(dir.join(CLAIM_SOCKET)).unwrap()
    }

    /// A reserved sandbox directory holding what its caller prepared.
    fn sandbox(&self, name: &str) -> SandboxPaths {
        let paths = SandboxPaths::new(self.state.path(), name).unwrap();
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(paths.dir.join("prepared"), name).unwrap();
        paths
    }

    fn idle(&self) -> Vec<String> {
        super::list(&PoolDirs::new(self.state.path()).idle())
    }
}

fn launch() -> Launch {
    Launch::Restore {
        dir: PathBuf::from("/snapshots/a"),
        console: ConsoleLog::Off,
        image: None,
    }
}

/// What the warm VMM behind `listener` was sent.
fn received(listener: &UnixListener) -> PoolClaim {
    let (mut stream, _) = listener.accept().unwrap();
    paddock_protocol::read_frame(&mut stream).unwrap()
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOG_FILE)).unwrap()
}

#[test]
fn a_claim_takes_a_live_entry_and_makes_it_the_sandboxs_directory() {
    let fixture = Fixture::new();
    let listener = fixture.entry("w-1", true);
    let paths = fixture.sandbox("sb");
    let claimed = fixture
        .pool()
        .claim(&paths, "sb", &launch(), Some(0.5))
        .expect("a live entry is claimed");
    assert_eq!(claimed.pid, std::process::id());
    let claim = received(&listener);
    assert_eq!(claim.name, "sb");
    assert_eq!(claim.cpus, Some(0.5));
    assert!(
        matches!(claim.launch, Launch::Restore { dir, .. } if dir == Path::new("/snapshots/a"))
    );
    // The entry's files and what the caller prepared are in the sandbox's directory now.
    assert_eq!(log_of(&paths.dir), "log of w-1\n");
    assert_eq!(
        std::fs::read_to_string(paths.dir.join("prepared")).unwrap(),
        "sb"
    );
    assert!(fixture.idle().is_empty());
}

#[test]
fn a_vmm_killed_while_idle_is_skipped_and_its_entry_removed() {
    let fixture = Fixture::new();
    // Bound, then gone: connecting is refused, as for a killed VMM.
    drop(fixture.entry("w-1", true));
    let live = fixture.entry("w-2", true);
    let paths = fixture.sandbox("sb");
    fixture
        .pool()
        .claim(&paths, "sb", &launch(), None)
        .expect("the live entry is claimed");
    assert_eq!(received(&live).name, "sb");
    assert_eq!(log_of(&paths.dir), "log of w-2\n");
    assert!(fixture.idle().is_empty(), "the dead entry is removed");
    let taken = PoolDirs::new(fixture.state.path()).taken();
    assert!(super::list(&taken).is_empty());
}

#[test]
fn a_vmm_of_other_options_is_never_claimed_and_no_pool_is_no_claim() {
    let fixture = Fixture::new();
    let paths = fixture.sandbox("sb");
    assert!(fixture
        .pool()
        .claim(&paths, "sb", &launch(), None)
        .is_none());
    let _foreign = fixture.entry("w-1", false);
    assert!(fixture
        .pool()
        .claim(&paths, "sb", &launch(), None)
        .is_none());
    assert_eq!(fixture.idle(), ["w-1"]);
    // Nothing of the caller's was moved.
    assert_eq!(
        std::fs::read_to_string(paths.dir.join("prepared")).unwrap(),
        "sb"
    );
}

#[test]
fn callers_claiming_at_once_never_get_the_same_vmm() {
    for round in 0..20 {
        let fixture = Fixture::new();
        let listeners = [fixture.entry("w-1", true), fixture.entry("w-2", true)];
        let names: Vec<String> = (0..3).map(|i| format!("sb{i}")).collect();
        let paths: Vec<_> = names.iter().map(|n| fixture.sandbox(n)).collect();
        let claims: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .zip(&paths)
                .map(|(name, paths)| {
                    let pool = fixture.pool();
                    scope.spawn(move || pool.claim(paths, name, &launch(), None).is_some())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(claims.iter().filter(|c| **c).count(), 2, "round {round}");
        let mut got: Vec<String> = listeners.iter().map(|l| received(l).name).collect();
        got.sort();
        got.dedup();
        assert_eq!(
            got.len(),
            2,
            "round {round}: two different sandboxes, one VMM each"
        );
    }
}

#[test]
fn a_failed_handover_leaves_what_the_caller_prepared_in_place() {
    let fixture = Fixture::new();
    let _listener = fixture.entry("w-1", true);
    let paths = fixture.sandbox("sb");
    // Prepared files sorted before and after the colliding name: nothing may be lost.
    std::fs::write(paths.dir.join("a-policy.json"), "policy").unwrap();
    std::fs::write(paths.dir.join(RECORD_FILE), "the caller's own").unwrap();
    assert!(fixture
        .pool()
        .claim(&paths, "sb", &launch(), None)
        .is_none());
    let mut left = super::list(&paths.dir);
    left.sort();
    assert_eq!(left, ["a-policy.json", RECORD_FILE, "prepared"]);
    assert_eq!(
        std::fs::read_to_string(paths.dir.join(RECORD_FILE)).unwrap(),
        "the caller's own"
    );
    assert_eq!(
        std::fs::read_to_string(paths.dir.join("a-policy.json")).unwrap(),
        "policy"
    );
    let taken = PoolDirs::new(fixture.state.path()).taken();
    assert!(super::list(&taken).is_empty(), "the taken entry is removed");
}

#[test]
fn a_handover_to_a_vmm_gone_before_its_claim_is_undone_to_the_prepared_files() {
    let fixture = Fixture::new();
    let _listener = fixture.entry("w-1", true);
    let dirs = PoolDirs::new(fixture.state.path());
    std::fs::create_dir_all(dirs.taken()).unwrap();
    let taken = dirs.taken().join("w-1");
    std::fs::rename(dirs.idle().join("w-1"), &taken).unwrap();
    std::fs::create_dir(taken.join(JAIL_ROOT)).unwrap();
    let paths = fixture.sandbox("sb");
    let prepared = super::move_into_place(&taken, &paths.dir).unwrap();
    assert!(!taken.exists());
    assert!(paths.dir.join(CLAIM_SOCKET).exists() && paths.dir.join(JAIL_ROOT).is_dir());
    super::take_entry_back(&paths.dir, &taken, &prepared).unwrap();
    // Only the caller's files: a VMM it starts itself can make its jail's root again.
    assert_eq!(super::list(&paths.dir), ["prepared"]);
    assert!(!taken.exists());
}
