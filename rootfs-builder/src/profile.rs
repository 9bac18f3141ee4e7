//! Profiles: named images built from host inputs. Each profile declares which inputs it needs
//! ([`Profile::inputs`]); the caller resolves them (builds binaries, installs packages) and passes
//! the paths back. A new profile is a new variant, its input list and its `spec` arm, usually
//! layered on [`crate::busybox::base_layer`].

use crate::busybox::{self, BusyboxError};
use crate::spec::{ImageSpec, SpecError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A named image recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// The minimal guest root: `/init` = guest-init, busybox with its applets, standard directories.
    Minimal,
}

/// A host input a profile needs, resolved by the caller to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// The static `guest-init` binary (becomes `/init`).
    GuestInit,
    /// A static busybox binary (Debian's `busybox-static`).
    Busybox,
}

/// Errors building a profile's spec.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown rootfs profile {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("profile {profile} needs the {input:?} input, which was not provided")]
    MissingInput { profile: &'static str, input: Input },
    #[error(transparent)]
    Busybox(#[from] BusyboxError),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Host paths for a profile's inputs.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    paths: BTreeMap<Input, PathBuf>,
}

impl Inputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the host path of `input`.
    pub fn set(&mut self, input: Input, path: impl Into<PathBuf>) -> &mut Self {
        self.paths.insert(input, path.into());
        self
    }

    pub fn get(&self, input: Input) -> Option<&Path> {
        self.paths.get(&input).map(PathBuf::as_path)
    }
}

impl Profile {
    /// Every profile, for listings and error messages.
    pub const ALL: &'static [Profile] = &[Profile::Minimal];
    /// The profile whose image becomes the default guest rootfs.
    pub const DEFAULT: Profile = Profile::Minimal;

    pub fn name(self) -> &'static str {
        match self {
            Profile::Minimal => "minimal",
        }
    }

    /// The host inputs `spec` needs.
    pub fn inputs(self) -> &'static [Input] {
        match self {
            Profile::Minimal => &[Input::GuestInit, Input::Busybox],
        }
    }

    /// The image content of this profile, given its resolved inputs.
    pub fn spec(self, inputs: &Inputs) -> Result<ImageSpec, ProfileError> {
        let need = |input| {
            inputs.get(input).ok_or(ProfileError::MissingInput {
                profile: self.name(),
                input,
            })
        };
        match self {
            Profile::Minimal => {
                let busybox = need(Input::Busybox)?;
                let mut spec = busybox::base_layer(busybox, &busybox::applets(busybox)?)?;
                spec.host_file("/init", 0o755, need(Input::GuestInit)?)?;
                Ok(spec)
            }
        }
    }
}

impl FromStr for Profile {
    type Err = ProfileError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .iter()
            .copied()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProfileError::Unknown {
                name: name.to_owned(),
                known: Profile::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{EntryKind, FileSource};

    #[test]
    fn names_round_trip() {
        for profile in Profile::ALL {
            assert_eq!(profile.name().parse::<Profile>().unwrap(), *profile);
        }
        let err = "full-docker".parse::<Profile>().unwrap_err();
        assert!(err.to_string().contains("minimal"), "{err}");
    }

    #[test]
    fn missing_input_is_reported() {
        let err = Profile::Minimal.spec(&Inputs::new()).unwrap_err();
        assert!(
            matches!(
                err,
                ProfileError::MissingInput {
                    input: Input::Busybox,
                    ..
                }
            ),
            "{err}"
        );
        let mut only_busybox = Inputs::new();
        only_busybox.set(Input::Busybox, busybox::DEBIAN_BUSYBOX_STATIC);
        if Path::new(busybox::DEBIAN_BUSYBOX_STATIC).exists() {
            let err = Profile::Minimal.spec(&only_busybox).unwrap_err();
            assert!(
                matches!(
                    err,
                    ProfileError::MissingInput {
                        input: Input::GuestInit,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn minimal_profile_uses_guest_init_as_init() {
        let busybox = Path::new(busybox::DEBIAN_BUSYBOX_STATIC);
        if !busybox.exists() {
            eprintln!("busybox-static not installed; skipping");
            return;
        }
        let mut inputs = Inputs::new();
        inputs
            .set(Input::Busybox, busybox)
            .set(Input::GuestInit, "/host/guest-init");
        let spec = Profile::Minimal.spec(&inputs).unwrap();
        let init = spec.get("/init").unwrap();
        assert_eq!(
            init.kind,
            EntryKind::File(FileSource::Host("/host/guest-init".into()))
        );
        assert_eq!(init.perm, 0o755);
        assert_eq!(
            spec.get("/bin/sh").unwrap().kind,
            EntryKind::Symlink("busybox".into())
        );
    }
}
