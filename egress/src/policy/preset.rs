//! Presets: the base of a policy that explicit rules add to. `open` allows every name not
//! denied, `balanced` the hosts in [`BALANCED_GROUPS`], `locked` nothing. A preset only ever
//! allows HTTP and TLS traffic (any port); non-HTTP TCP always needs an explicit rule with a
//! port, and every address still passes the deny set.

use super::rule::HostPattern;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

#[cfg(test)]
mod tests;

/// The base of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Everything not denied.
    Open,
    /// Deny by default; the hosts an agent needs for its model and its tools are allowed.
    #[default]
    Balanced,
    /// Only explicit allow rules.
    Locked,
}

/// A preset name that is none of `open`, `balanced`, `locked`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset (expected open, balanced or locked)")]
pub struct UnknownPreset;

/// Hosts allowed by `balanced`, with what they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetGroup {
    pub purpose: &'static str,
    /// Host patterns (`name`, `*.name`, `**.name`), no ports: they apply to any port.
    pub hosts: &'static [&'static str],
}

/// Everything `balanced` allows: the single list, kept here and nowhere else.
pub const BALANCED_GROUPS: &[PresetGroup] = &[
    PresetGroup {
        purpose: "AI model APIs and their sign-in",
        hosts: &[
            "anthropic.com",
            "**.anthropic.com", // api., statsig., console.
            "claude.ai",
            "**.claude.ai",
            "openai.com",
            "**.openai.com", // api., auth.
            "chatgpt.com",
            "**.chatgpt.com",
            "generativelanguage.googleapis.com",
            "cloudcode-pa.googleapis.com",
            "aiplatform.googleapis.com",
            "oauth2.googleapis.com",
            "www.googleapis.com", // OAuth user info
            "accounts.google.com",
            "openrouter.ai",
            "api.mistral.ai",
            "api.deepseek.com",
            "api.x.ai",
            "api.groq.com",
        ],
    },
    PresetGroup {
        purpose: "package registries and toolchains",
        hosts: &[
            // JavaScript
            "registry.npmjs.org",
            "registry.yarnpkg.com",
            "repo.yarnpkg.com",
            "nodejs.org",
            // Python
            "pypi.org",
            "files.pythonhosted.org",
            // Rust
            "crates.io",
            "static.crates.io",
            "index.crates.io",
            "static.rust-lang.org",
            "sh.rustup.rs",
            // Go
            "proxy.golang.org",
            "sum.golang.org",
            // Ruby
            "rubygems.org",
            "index.rubygems.org",
            // JVM
            "repo.maven.apache.org",
            "repo1.maven.org",
            "plugins.gradle.org",
            "services.gradle.org",
            "downloads.gradle.org",
            // PHP, .NET
            "packagist.org",
            "repo.packagist.org",
            "api.nuget.org",
            // Linux distributions
            "deb.debian.org",
            "security.debian.org",
            "archive.ubuntu.com",
            "security.ubuntu.com",
            "dl-cdn.alpinelinux.org",
        ],
    },
    PresetGroup {
        purpose: "code hosts",
        hosts: &[
            "github.com",
            "**.github.com", // api., codeload.
            "**.githubusercontent.com",
            "gitlab.com",
            "bitbucket.org",
        ],
    },
    PresetGroup {
        purpose: "container registries",
        hosts: &[
            "registry-1.docker.io",
            "index.docker.io",
            "auth.docker.io",
            "production.cloudflare.docker.com",
            "ghcr.io",
            "quay.io",
            "**.quay.io", // blob CDN
            "gcr.io",
            "**.gcr.io", // regional mirrors
            "mcr.microsoft.com",
            "**.mcr.microsoft.com", // blob CDN
            "public.ecr.aws",
        ],
    },
];

/// [`BALANCED_GROUPS`] parsed once.
static BALANCED_PATTERNS: LazyLock<Vec<HostPattern>> = LazyLock::new(|| {
    BALANCED_GROUPS
        .iter()
        .flat_map(|group| group.hosts.iter())
        .filter_map(|text| match HostPattern::parse(text) {
            Ok(pattern) => Some(pattern),
            Err(error) => {
                // Unreachable: a unit test parses every entry.
                tracing::error!(pattern = text, %error, "bad pattern in the balanced preset");
                None
            }
        })
        .collect()
});

impl Preset {
    /// Every preset, in order from most to least permissive.
    pub const ALL: [Preset; 3] = [Preset::Open, Preset::Balanced, Preset::Locked];

    /// `open`, `balanced` or `locked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Open => "open",
            Preset::Balanced => "balanced",
            Preset::Locked => "locked",
        }
    }

    /// What a decision made by the preset names as its rule: `preset:balanced`.
    pub fn rule_text(self) -> &'static str {
        match self {
            Preset::Open => "preset:open",
            Preset::Balanced => "preset:balanced",
            Preset::Locked => "preset:locked",
        }
    }

    /// Whether the preset allows HTTP or TLS traffic to `name` (normalized) on any port.
    pub fn allows_name(self, name: &str) -> bool {
        match self {
            Preset::Open => true,
            Preset::Balanced => BALANCED_PATTERNS.iter().any(|p| p.matches(name)),
            Preset::Locked => false,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(text: &str) -> Result<Self, UnknownPreset> {
        Preset::ALL
            .into_iter()
            .find(|preset| preset.as_str() == text)
            .ok_or(UnknownPreset)
    }
}
