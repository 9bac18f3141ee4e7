//! `paddock policy ls|allow|deny|rm|preset|log`: the egress policy, global or per sandbox. The
//! files are reread by every sandbox's proxy at its next connection, so changes apply at once.

use super::{EgressArgs, PolicyArgs, PolicyCommand, PolicyScope};
use anyhow::Context;
use paddock_egress::policy::{Policy, PolicyFile, Preset, Rule};
use paddock_vmm::sandbox::egress::{self, EgressFiles};
use paddock_vmm::sandbox::{SandboxError, SandboxPaths, Sandboxes};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

pub fn dispatch(args: PolicyArgs) -> anyhow::Result<i32> {
    let sandboxes = Sandboxes::new(args.state.state_dir.as_deref());
    let s = &sandboxes;
    match args.command {
        PolicyCommand::Ls { scope, json } => ls(s, &scope, json),
        PolicyCommand::Allow { scope, rules } => edit(s, &scope, &rules, Edit::Allow),
        PolicyCommand::Deny { scope, rules } => edit(s, &scope, &rules, Edit::Deny),
        PolicyCommand::Rm { scope, rules } => edit(s, &scope, &rules, Edit::Remove),
        PolicyCommand::Preset { scope, preset } => set_preset(s, &scope, &preset),
        PolicyCommand::Log { scope, tail, json } => log(s, &scope, tail, json),
    }
}

/// The policy file a scope names: the global one, or a sandbox's (which must exist).
fn policy_path(sandboxes: &Sandboxes, scope: &PolicyScope) -> anyhow::Result<PathBuf> {
    match &scope.sandbox {
        None => Ok(EgressFiles::new(sandboxes.state_dir()).global_policy()),
        Some(name) => {
            let paths = sandboxes.paths(name)?;
            anyhow::ensure!(paths.dir.is_dir(), "no sandbox named {name:?}");
            Ok(egress::sandbox_policy(&paths))
        }
    }
}

#[derive(Clone, Copy)]
enum Edit {
    Allow,
    Deny,
    Remove,
}

fn parse_rules(rules: &[String]) -> anyhow::Result<Vec<Rule>> {
    rules
        .iter()
        .map(|r| {
            r.parse::<Rule>()
                .with_context(|| format!("rule {r:?} (see `paddock policy --help`)"))
        })
        .collect()
}

fn edit(
    sandboxes: &Sandboxes,
    scope: &PolicyScope,
    rules: &[String],
    edit: Edit,
) -> anyhow::Result<i32> {
    let rules = parse_rules(rules)?;
    let path = policy_path(sandboxes, scope)?;
    let mut file = PolicyFile::load_or_default(&path)?;
    let mut missing = Vec::new();
    for rule in &rules {
        let changed = match edit {
            Edit::Allow => file.add_allow(rule.clone()),
            Edit::Deny => file.add_deny(rule.clone()),
            Edit::Remove => file.remove(rule),
        };
        if !changed && matches!(edit, Edit::Remove) {
            missing.push(rule.to_string());
        }
    }
    file.save()?;
    if !missing.is_empty() {
        eprintln!("paddock: not in the policy: {}", missing.join(", "));
    }
    Ok(0)
}

fn set_preset(sandboxes: &Sandboxes, scope: &PolicyScope, preset: &str) -> anyhow::Result<i32> {
    let preset: Preset = preset
        .parse()
        .with_context(|| format!("preset {preset:?}: use open, balanced or locked"))?;
    let path = policy_path(sandboxes, scope)?;
    let mut file = PolicyFile::load_or_default(&path)?;
    file.set_preset(Some(preset));
    file.save()?;
    Ok(0)
}

fn ls(sandboxes: &Sandboxes, scope: &PolicyScope, json: bool) -> anyhow::Result<i32> {
    let global =
        PolicyFile::load_or_default(EgressFiles::new(sandboxes.state_dir()).global_policy())?
            .into_policy();
    let own = match &scope.sandbox {
        Some(_) => Some(PolicyFile::load_or_default(policy_path(sandboxes, scope)?)?.into_policy()),
        None => None,
    };
    let effective = Policy::layered(&global, own.as_ref());
    if json {
        let value = serde_json::json!({
            "global": global,
            "sandbox": own,
            "effective": {
                "preset": effective.preset(),
                "allow": effective.allow_rules(),
                "deny": effective.deny_rules(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    println!("preset: {}", effective.preset());
    let show = |label: &str, rules: &[Rule]| {
        if rules.is_empty() {
            println!("{label}: (none)");
        } else {
            println!("{label}:");
            for rule in rules {
                println!("  {rule}");
            }
        }
    };
    show("allow", effective.allow_rules());
    show("deny", effective.deny_rules());
    if effective.preset() == Preset::Balanced {
        println!("(balanced also allows AI APIs, package and container registries, code hosts)");
    }
    Ok(0)
}

fn log(
    sandboxes: &Sandboxes,
    scope: &PolicyScope,
    tail: Option<usize>,
    json: bool,
) -> anyhow::Result<i32> {
    let current = EgressFiles::new(sandboxes.state_dir()).log();
    let mut lines: Vec<String> = Vec::new();
    // The rotated log first (older), then the current one.
    for path in [paddock_egress::proxy::rotated_log(&current), current] {
        read_log(&path, scope, json, &mut lines)?;
    }
    let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[skip..] {
        println!("{line}");
    }
    Ok(0)
}

/// Appends the lines of the log file at `path` (none if it does not exist) that `scope` selects.
fn read_log(
    path: &std::path::Path,
    scope: &PolicyScope,
    json: bool,
    lines: &mut Vec<String>,
) -> anyhow::Result<()> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let value: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        if let Some(name) = &scope.sandbox {
            if value.as_ref().and_then(|v| v["sandbox"].as_str()) != Some(name.as_str()) {
                continue;
            }
        }
        lines.push(if json {
            line
        } else {
            value.map(|v| describe(&v)).unwrap_or(line)
        });
    }
    Ok(())
}

/// One decision as a line: time, sandbox, verdict, host:port, path, rule, reason, bytes.
fn describe(v: &serde_json::Value) -> String {
    let field = |k: &str| match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    format!(
        "{} {} {:5} {}:{} {} {} ({}) up {} down {}",
        field("time"),
        field("sandbox"),
        field("verdict"),
        field("host"),
        field("port"),
        field("path"),
        field("rule"),
        field("reason"),
        field("bytes_up"),
        field("bytes_down"),
    )
}

/// A new sandbox's own policy from `--policy`, `--allow`, `--deny` (`None` when none is given).
pub fn sandbox_policy(args: &EgressArgs) -> anyhow::Result<Option<Policy>> {
    if args.policy.is_none() && args.allow.is_empty() && args.deny.is_empty() {
        return Ok(None);
    }
    let mut policy = Policy::default();
    if let Some(preset) = &args.policy {
        let preset: Preset = preset
            .parse()
            .with_context(|| format!("--policy {preset:?}: use open, balanced or locked"))?;
        policy.preset = Some(preset);
    }
    for rule in parse_rules(&args.allow)? {
        policy.add_allow(rule);
    }
    for rule in parse_rules(&args.deny)? {
        policy.add_deny(rule);
    }
    Ok(Some(policy))
}

/// Writes a sandbox's own policy into its directory before it starts (for
/// [`Sandboxes::start_prepared`]).
pub fn write_sandbox_policy(
    policy: &Option<Policy>,
    paths: &SandboxPaths,
) -> Result<(), SandboxError> {
    match policy {
        None => Ok(()),
        Some(policy) => PolicyFile::new(egress::sandbox_policy(paths), policy.clone())
            .save()
            .map_err(|e| SandboxError::Prepare(Box::new(e))),
    }
}
