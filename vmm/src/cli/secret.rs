//! `paddock secret set|ls|rm`: API keys and tokens kept on the host (a 0600 file in the
//! configuration directory). Sandboxes get placeholders; their egress proxies add the value.

use super::SecretCommand;
use anyhow::Context;
use paddock_egress::secrets::{SecretStore, Service};
use paddock_vmm::sandbox::egress::config_dir;
use std::io::{BufRead, IsTerminal};

pub fn dispatch(command: SecretCommand) -> anyhow::Result<i32> {
    let path = config_dir().join("secrets.json");
    match command {
        SecretCommand::Set {
            service,
            name,
            from_env,
            command,
            hosts,
            header,
        } => {
            let service = if service == "custom" {
                let name = name.context("`paddock secret set custom NAME --host H --header N`")?;
                let header = header.context("a custom secret needs --header NAME")?;
                Service::custom(&name, &hosts, &header)?
            } else {
                anyhow::ensure!(
                    name.is_none() && hosts.is_empty() && header.is_none(),
                    "NAME, --host and --header are for `custom` secrets only"
                );
                service.parse::<Service>()?
            };
            let value = read_value(from_env.as_deref(), command.as_deref())?;
            let mut store = SecretStore::open(&path)?;
            store.set(service.clone(), value)?;
            match service.env_var() {
                Some(var) => eprintln!(
                    "paddock: stored {} for {}; sandboxes see {var}={} and their proxy adds the \
                     key on the way out",
                    service.name(),
                    service.hosts().join(", "),
                    service.placeholder()
                ),
                None => eprintln!(
                    "paddock: stored {} for {}; use the placeholder {} in the {} header inside \
                     sandboxes",
                    service.name(),
                    service.hosts().join(", "),
                    service.placeholder(),
                    service.header()
                ),
            }
            Ok(0)
        }
        SecretCommand::Ls { json } => {
            let store = SecretStore::open(&path)?;
            let list = store.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            if list.is_empty() {
                eprintln!("paddock: no secrets (`paddock secret set anthropic` stores one)");
            }
            for s in list {
                println!(
                    "{:<12} {:<24} {}",
                    s.name,
                    s.env_var.unwrap_or("-"),
                    s.hosts.join(",")
                );
            }
            Ok(0)
        }
        SecretCommand::Rm { name } => {
            let mut store = SecretStore::open(&path)?;
            anyhow::ensure!(store.remove(&name)?, "no secret named {name:?}");
            Ok(0)
        }
    }
}

/// The secret's value: from an environment variable, a command's output, or stdin (its first
/// line; the terminal does not echo it).
fn read_value(from_env: Option<&str>, command: Option<&str>) -> anyhow::Result<String> {
    let value = if let Some(var) = from_env {
        std::env::var(var).with_context(|| format!("--from-env {var}: not set"))?
    } else if let Some(cmd) = command {
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("--command {cmd:?}"))?;
        anyhow::ensure!(
            out.status.success(),
            "--command {cmd:?} failed: {}",
            out.status
        );
        String::from_utf8(out.stdout).context("--command printed something that is not UTF-8")?
    } else {
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        if terminal {
            eprint!("secret (not echoed): ");
        }
        let line = read_line_quietly(&stdin, terminal)?;
        if terminal {
            eprintln!();
        }
        line
    };
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!value.is_empty(), "the secret is empty");
    Ok(value)
}

fn read_line_quietly(stdin: &std::io::Stdin, terminal: bool) -> anyhow::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let saved = if terminal {
        tcgetattr(stdin).ok()
    } else {
        None
    };
    if let Some(mut quiet) = saved.clone() {
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(stdin, OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(stdin, OptionalActions::Now, &saved);
    }
    read.context("reading the secret from stdin")?;
    Ok(line)
}
