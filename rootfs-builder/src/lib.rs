//! Guest root filesystem images: a newc cpio writer, a declarative image spec, and build profiles.
//!
//! The flow: a [`Profile`] names its host [`Input`]s; the caller resolves them into [`Inputs`];
//! [`Profile::spec`] returns an [`ImageSpec`] whose [`ImageSpec::fingerprint`] is the cache key and
//! whose [`ImageSpec::write_newc`] renders the initramfs.
//!
//! Disk images: [`disk_image`] is the paddock image format (a filesystem + a trailer with magic,
//! version, length, SHA-256 and CRC) that the builder writes and the VMM reads; [`agent`] is the
//! recipe of the Debian-based `agent` image (packages, pinned Node.js/npm and coding agents, user,
//! cache keys), which `cargo xtask rootfs --profile agent` executes.

pub mod agent;
pub mod busybox;
pub mod disk_image;
pub mod newc;
pub mod profile;
pub mod spec;

pub use busybox::{base_layer, BusyboxError};
pub use newc::{NewcError, NewcWriter, NodeKind};
pub use profile::{Input, Inputs, Profile, ProfileError};
pub use spec::{Entry, EntryKind, FileSource, ImageSpec, SpecError, SPEC_FORMAT_VERSION};
