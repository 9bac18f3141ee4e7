//! Did the config fragment survive? Compares each setting of a Kconfig fragment with the final
//! `.config` that `make olddefconfig` produced: kconfig silently drops a setting whose
//! `depends on` is unmet, so the build must check instead of trusting the merge.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::fmt;

/// One symbol's setting as written in a Kconfig file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `CONFIG_X=<value>`: `y`, `m`, a number, or a quoted string, kept verbatim.
    Value(String),
    /// `# CONFIG_X is not set`.
    NotSet,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Value(value) => f.write_str(value),
            Setting::NotSet => f.write_str("not set"),
        }
    }
}

/// Symbol name (with its `CONFIG_` prefix) to setting, as parsed from one file.
pub type Settings = BTreeMap<String, Setting>;

/// Parses a fragment or a `.config`: `CONFIG_X=v` and `# CONFIG_X is not set` lines are settings,
/// other `#` lines and blank lines are comments. Anything else, or a symbol set twice, is an error
/// (kconfig would let the last one win silently, which hides mistakes in a fragment).
pub fn parse(text: &str) -> Result<Settings> {
    let mut settings = Settings::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let parsed = if let Some(rest) = line.strip_prefix("# ") {
            rest.strip_suffix(" is not set")
                .filter(|name| is_symbol(name))
                .map(|name| (name, Setting::NotSet))
        } else if line.is_empty() || line.starts_with('#') {
            None
        } else {
            match line.split_once('=') {
                Some((name, value)) if is_symbol(name) && !value.is_empty() => {
                    Some((name, Setting::Value(value.to_string())))
                }
                _ => bail!("line {}: not a Kconfig setting: {raw:?}", index + 1),
            }
        };
        if let Some((name, setting)) = parsed {
            if settings.insert(name.to_string(), setting).is_some() {
                bail!("line {}: {name} is set twice", index + 1);
            }
        }
    }
    Ok(settings)
}

/// `CONFIG_` followed by at least one of `[A-Za-z0-9_]`.
fn is_symbol(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// A fragment setting the final configuration does not honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub name: String,
    pub wanted: Setting,
    /// What the final `.config` says; `NotSet` also covers a symbol absent from it (its
    /// dependencies are unmet, so kconfig does not even list it).
    pub got: Setting,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: wanted {}, got {}", self.name, self.wanted, self.got)
    }
}

/// Every setting of `fragment` that `final_config` does not carry, in symbol order.
pub fn mismatches(fragment: &Settings, final_config: &Settings) -> Vec<Mismatch> {
    fragment
        .iter()
        .filter_map(|(name, wanted)| {
            let got = effective(final_config.get(name));
            let honoured = match wanted {
                Setting::Value(value) if value == "n" => got == Setting::NotSet,
                Setting::Value(_) => &got == wanted,
                Setting::NotSet => got == Setting::NotSet,
            };
            (!honoured).then(|| Mismatch {
                name: name.clone(),
                wanted: wanted.clone(),
                got,
            })
        })
        .collect()
}

/// A symbol missing from the final `.config` or set to `n` is, to the kernel, not set.
fn effective(setting: Option<&Setting>) -> Setting {
    match setting {
        Some(Setting::Value(value)) if value != "n" => Setting::Value(value.clone()),
        _ => Setting::NotSet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> Setting {
        Setting::Value(v.to_string())
    }

    #[test]
    fn parses_values_unset_symbols_and_comments() {
        let settings = parse(
            "# a comment\n\nCONFIG_PVH=y\n# CONFIG_ACPI is not set\nCONFIG_NR_CPUS=32\n\
             CONFIG_INITRAMFS_SOURCE=\"\"\n  CONFIG_INDENTED=m  \n#CONFIG_NOT_A_SETTING=y\n",
        )
        .unwrap();
        let expected: Settings = [
            ("CONFIG_PVH", value("y")),
            ("CONFIG_ACPI", Setting::NotSet),
            ("CONFIG_NR_CPUS", value("32")),
            ("CONFIG_INITRAMFS_SOURCE", value("\"\"")),
            ("CONFIG_INDENTED", value("m")),
        ]
        .into_iter()
        .map(|(name, setting)| (name.to_string(), setting))
        .collect();
        assert_eq!(settings, expected);
    }

    #[test]
    fn rejects_garbage_and_duplicates() {
        let garbage = parse("CONFIG_PVH=y\nPVH=y\n").unwrap_err().to_string();
        assert!(garbage.contains("line 2"), "{garbage}");
        assert!(parse("CONFIG_=y\n").is_err());
        assert!(parse("CONFIG_PVH=\n").is_err());
        assert!(parse("CONFIG_P-VH=y\n").is_err());
        let twice = parse("CONFIG_PVH=y\n# CONFIG_PVH is not set\n")
            .unwrap_err()
            .to_string();
        assert!(twice.contains("CONFIG_PVH is set twice"), "{twice}");
    }

    #[test]
    fn reports_every_setting_the_final_config_lost() {
        let fragment = parse(
            "CONFIG_PVH=y\nCONFIG_VIRTIO_VSOCKETS=y\nCONFIG_NR_CPUS=32\n# CONFIG_ACPI is not set\n\
             # CONFIG_VT is not set\nCONFIG_SERIAL_8250=y\nCONFIG_MODULES=n\n",
        )
        .unwrap();
        let final_config = parse(
            "CONFIG_PVH=y\n# CONFIG_VIRTIO_VSOCKETS is not set\nCONFIG_NR_CPUS=8\nCONFIG_ACPI=y\n\
             CONFIG_SERIAL_8250=m\n",
        )
        .unwrap();
        let found = mismatches(&fragment, &final_config);
        let rendered: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                "CONFIG_ACPI: wanted not set, got y",
                "CONFIG_NR_CPUS: wanted 32, got 8",
                "CONFIG_SERIAL_8250: wanted y, got m",
                "CONFIG_VIRTIO_VSOCKETS: wanted y, got not set",
            ]
        );
    }

    #[test]
    fn absent_symbol_counts_as_not_set() {
        let fragment = parse("CONFIG_VSOCKETS=y\n# CONFIG_VT is not set\n").unwrap();
        let found = mismatches(&fragment, &Settings::new());
        assert_eq!(
            found,
            [Mismatch {
                name: "CONFIG_VSOCKETS".to_string(),
                wanted: value("y"),
                got: Setting::NotSet,
            }]
        );
    }

    #[test]
    fn honoured_fragment_has_no_mismatches() {
        let fragment = parse("CONFIG_PVH=y\n# CONFIG_ACPI is not set\n").unwrap();
        let final_config =
            parse("CONFIG_64BIT=y\nCONFIG_PVH=y\n# CONFIG_ACPI is not set\n").unwrap();
        assert!(mismatches(&fragment, &final_config).is_empty());
    }
}
