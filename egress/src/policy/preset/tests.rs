//! Tests of the `preset` module.

use super::*;

#[test]
fn every_balanced_entry_is_a_portless_host_pattern() {
    let entries: Vec<&str> = BALANCED_GROUPS
        .iter()
        .flat_map(|group| group.hosts.iter().copied())
        .collect();
    for entry in &entries {
        let pattern = HostPattern::parse(entry)
            .unwrap_or_else(|error| panic!("{entry:?} in the balanced preset: {error}"));
        assert_eq!(
            pattern.to_string(),
            *entry,
            "entries are written normalized"
        );
    }
    assert_eq!(BALANCED_PATTERNS.len(), entries.len());
}

#[test]
fn balanced_allows_the_documented_hosts() {
    for name in [
        "api.anthropic.com",
        "statsig.anthropic.com",
        "api.openai.com",
        "chatgpt.com",
        "generativelanguage.googleapis.com",
        "cloudcode-pa.googleapis.com",
        "oauth2.googleapis.com",
        "accounts.google.com",
        "registry.npmjs.org",
        "pypi.org",
        "files.pythonhosted.org",
        "crates.io",
        "static.crates.io",
        "index.crates.io",
        "deb.debian.org",
        "security.debian.org",
        "proxy.golang.org",
        "sum.golang.org",
        "rubygems.org",
        "repo.maven.apache.org",
        "github.com",
        "api.github.com",
        "codeload.github.com",
        "raw.githubusercontent.com",
        "objects.githubusercontent.com",
        "gitlab.com",
        "bitbucket.org",
        "registry-1.docker.io",
        "auth.docker.io",
        "production.cloudflare.docker.com",
        "ghcr.io",
        "quay.io",
        "gcr.io",
        "mcr.microsoft.com",
        "public.ecr.aws",
    ] {
        assert!(Preset::Balanced.allows_name(name), "{name}");
    }
}

#[test]
fn balanced_denies_everything_else() {
    for name in [
        "example.com",
        "evilgithub.com",
        "github.com.evil.org",
        "githubusercontent.com.evil.org",
        "storage.googleapis.com",
        "pastebin.com",
        "anthropic.com.evil.org",
    ] {
        assert!(!Preset::Balanced.allows_name(name), "{name}");
    }
}

#[test]
fn open_allows_and_locked_denies_every_name() {
    for name in ["example.com", "api.anthropic.com", "a.b.c"] {
        assert!(Preset::Open.allows_name(name));
        assert!(!Preset::Locked.allows_name(name));
    }
}

#[test]
fn presets_parse_print_and_serialize_in_lower_case() {
    for preset in Preset::ALL {
        assert_eq!(preset.as_str().parse::<Preset>(), Ok(preset));
        assert_eq!(
            serde_json::to_string(&preset).unwrap(),
            format!("\"{preset}\"")
        );
        assert_eq!(preset.rule_text(), format!("preset:{preset}"));
    }
    assert_eq!("Balanced".parse::<Preset>(), Err(UnknownPreset));
    assert_eq!("".parse::<Preset>(), Err(UnknownPreset));
    assert!(serde_json::from_str::<Preset>("\"wide-open\"").is_err());
    assert_eq!(Preset::default(), Preset::Balanced);
}
