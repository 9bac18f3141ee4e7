//! Companions: processes beside the VMM whose state belongs with the guest's, so a snapshot
//! keeps it and a reset returns it (the workspace server: which node id and file handle of the
//! guest's FUSE mount mean which file). The VMM asks each for its state while the vCPUs are
//! paused for a snapshot, keeps the bytes in the snapshot's state file, and gives them back on
//! a reset before the vCPUs run again. A companion that cannot answer costs only what it
//! carries (the guest's mount is then made anew): it never fails a snapshot or a reset.

use crate::snapshot::state::CompanionState;

/// A process beside the VMM with state to keep in snapshots.
pub trait Companion: Send + Sync {
    /// Its name in the snapshot's list (stable across versions).
    fn name(&self) -> &'static str;
    /// Its state now, or `None` when it has nothing to keep (or cannot be reached). Called
    /// with the vCPUs paused.
    fn save(&self) -> Option<Vec<u8>>;
    /// The state a snapshot kept of it (`None`: it kept none), to carry on from. Called with
    /// the vCPUs paused, before they run again. Returns whether it had anything to do (a
    /// companion that is not running has not).
    fn restore(&self, saved: Option<&[u8]>) -> bool;
}

/// The states of `companions` now, for a snapshot.
pub fn save_all(companions: &[Box<dyn Companion>]) -> Vec<CompanionState> {
    companions
        .iter()
        .filter_map(|c| {
            c.save().map(|state| CompanionState {
                name: c.name().to_string(),
                state,
            })
        })
        .collect()
}

/// Gives each of `companions` what `saved` (a snapshot's list) kept of it; whether any had
/// anything to do.
pub fn restore_all(companions: &[Box<dyn Companion>], saved: &[CompanionState]) -> bool {
    let mut acted = false;
    for companion in companions {
        let kept = saved
            .iter()
            .find(|s| s.name == companion.name())
            .map(|s| s.state.as_slice());
        acted |= companion.restore(kept);
    }
    acted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Recorder {
        name: &'static str,
        state: Option<Vec<u8>>,
        given: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
    }

    impl Companion for Recorder {
        fn name(&self) -> &'static str {
            self.name
        }
        fn save(&self) -> Option<Vec<u8>> {
            self.state.clone()
        }
        fn restore(&self, saved: Option<&[u8]>) -> bool {
            self.given.lock().unwrap().push(saved.map(<[u8]>::to_vec));
            self.state.is_some()
        }
    }

    #[test]
    fn each_companion_gets_back_what_it_kept_and_nothing_else() {
        let given = Arc::new(Mutex::new(Vec::new()));
        let companions: Vec<Box<dyn Companion>> = vec![
            Box::new(Recorder {
                name: "a",
                state: Some(b"alpha".to_vec()),
                given: given.clone(),
            }),
            Box::new(Recorder {
                name: "b",
                state: None,
                given: given.clone(),
            }),
        ];
        let saved = save_all(&companions);
        assert_eq!(
            saved.len(),
            1,
            "a companion with nothing to keep is left out"
        );
        assert_eq!(saved[0].name, "a");
        assert!(restore_all(&companions, &saved));
        assert_eq!(*given.lock().unwrap(), vec![Some(b"alpha".to_vec()), None]);
        assert!(
            !restore_all(&companions[1..], &saved),
            "none of these had anything to do"
        );
    }
}
