//! Does the fragment give Docker what it documents as needed? `kernel-config/docker-check-config.list`
//! encodes the options moby's `contrib/check-config.sh` checks for paddock's setup (overlay2, the
//! bridge network, cgroup v2); each must be `=y` in the fragment unless the list waives it with a
//! reason.

use super::config_check::{Setting, Settings};
use anyhow::{bail, Result};
use std::fmt;

/// One option of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The symbol with its `CONFIG_` prefix.
    pub name: String,
    /// Why paddock leaves it out, when it does.
    pub waived: Option<String>,
}

/// Parses the list: `SYMBOL` or `SYMBOL  waived: REASON` per line; `#` lines and blank lines are
/// comments. A symbol may repeat (the script checks some twice) but never both required and
/// waived; a waiver needs a reason.
pub fn parse(text: &str) -> Result<Vec<Requirement>> {
    let mut list: Vec<Requirement> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (symbol, waived) = match line.split_once(char::is_whitespace) {
            None => (line, None),
            Some((symbol, rest)) => match rest.trim().strip_prefix("waived:") {
                Some(reason) if !reason.trim().is_empty() => {
                    (symbol, Some(reason.trim().to_owned()))
                }
                _ => bail!(
                    "line {}: expected `SYMBOL` or `SYMBOL  waived: REASON`: {raw:?}",
                    index + 1
                ),
            },
        };
        if symbol.starts_with("CONFIG_")
            || symbol.is_empty()
            || !symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!(
                "line {}: {symbol:?} is not a Kconfig symbol without its CONFIG_ prefix",
                index + 1
            );
        }
        let requirement = Requirement {
            name: format!("CONFIG_{symbol}"),
            waived,
        };
        if let Some(seen) = list.iter().find(|r| r.name == requirement.name) {
            if seen.waived.is_some() != requirement.waived.is_some() {
                bail!("line {}: {symbol} is both required and waived", index + 1);
            }
            continue;
        }
        list.push(requirement);
    }
    Ok(list)
}

/// A required option the fragment does not build in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub name: String,
    /// What the fragment says instead (`None`: it does not mention the option).
    pub fragment: Option<Setting>,
}

impl fmt::Display for Uncovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fragment {
            None => write!(f, "{}: missing from the fragment", self.name),
            Some(setting) => write!(
                f,
                "{}: the fragment says {setting}, Docker needs y",
                self.name
            ),
        }
    }
}

/// Every required (not waived) option `fragment` does not set to `y`, in list order.
pub fn uncovered(requirements: &[Requirement], fragment: &Settings) -> Vec<Uncovered> {
    requirements
        .iter()
        .filter(|r| r.waived.is_none())
        .filter_map(|r| {
            let setting = fragment.get(&r.name);
            (setting != Some(&Setting::Value("y".to_owned()))).then(|| Uncovered {
                name: r.name.clone(),
                fragment: setting.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::config_check;
    use super::*;

    #[test]
    fn parses_required_and_waived_options() {
        let list = parse(
            "# comment\n\nVETH\nIP6_NF_NAT  waived: IPv6 is off\nVETH\n  BRIDGE_NETFILTER  \n",
        )
        .unwrap();
        assert_eq!(
            list,
            [
                Requirement {
                    name: "CONFIG_VETH".into(),
                    waived: None
                },
                Requirement {
                    name: "CONFIG_IP6_NF_NAT".into(),
                    waived: Some("IPv6 is off".into())
                },
                Requirement {
                    name: "CONFIG_BRIDGE_NETFILTER".into(),
                    waived: None
                },
            ]
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "CONFIG_VETH\n",
            "veth\n",
            "VETH waived:\n",
            "VETH because\n",
            "VETH\nVETH  waived: no\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn names_each_uncovered_option() {
        let list = parse("VETH\nBRIDGE\nOVERLAY_FS\nIP6_NF_NAT  waived: IPv6 is off\n").unwrap();
        let fragment =
            config_check::parse("CONFIG_VETH=y\nCONFIG_BRIDGE=m\n# CONFIG_IP6_NF_NAT is not set\n")
                .unwrap();
        let rendered: Vec<String> = uncovered(&list, &fragment)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rendered,
            [
                "CONFIG_BRIDGE: the fragment says m, Docker needs y",
                "CONFIG_OVERLAY_FS: missing from the fragment",
            ]
        );
    }
}
