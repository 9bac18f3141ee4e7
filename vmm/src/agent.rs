//! The coding agents `paddock run AGENT` starts: their commands, unattended flags and
//! environment, how a sandbox is named after the agent and the directory, and the guest command
//! line that runs an agent as the image's unprivileged user.

use std::path::Path;

/// The user an agent runs as (the agent image's `agent`, uid 1000, in group `docker`, with
/// passwordless sudo).
pub const AGENT_USER: &str = "agent";
/// Its home directory.
pub const AGENT_HOME: &str = "/home/agent";

/// A coding agent paddock knows how to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agent {
    /// Claude Code (`claude`).
    Claude,
    /// Gemini CLI (`gemini`).
    Gemini,
    /// Codex (`codex`).
    Codex,
    /// A plain bash, or the command given after `--`.
    Shell,
}

impl Agent {
    /// Every agent, in the order help lists them.
    pub const ALL: [Agent; 4] = [Agent::Claude, Agent::Gemini, Agent::Codex, Agent::Shell];

    /// The name `paddock run` takes (and the image's agent manifest uses).
    pub fn name(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Gemini => "gemini",
            Agent::Codex => "codex",
            Agent::Shell => "shell",
        }
    }

    /// The agent called `name`.
    pub fn from_name(name: &str) -> Option<Agent> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The program in the guest.
    pub fn command(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Gemini => "gemini",
            Agent::Codex => "codex",
            Agent::Shell => "bash",
        }
    }

    /// The flags that let the agent act without asking: the VM is the boundary.
    pub fn unattended_flags(self) -> &'static [&'static str] {
        match self {
            Agent::Claude => &["--dangerously-skip-permissions"],
            Agent::Gemini => &["--yolo"],
            Agent::Codex => &["--dangerously-bypass-approvals-and-sandbox"],
            Agent::Shell => &[],
        }
    }

    /// Environment the agent gets. The image pins each agent's version, so Claude Code may not
    /// update itself behind the pin; unattended (not `ask`), the agent trusts its directory, as it
    /// would after its own first-run question (Gemini CLI otherwise drops `--yolo` outside a
    /// trusted folder). Every agent's git accepts the shared workspace, whose files are owned by
    /// the host user (whose uid need not be the agent's): `safe.directory=*`, as command-line
    /// configuration, the only kind besides system and global files git honours for it.
    pub fn environment(self, ask: bool) -> Vec<(String, String)> {
        let workspace_git: &[(&str, &str)] = &[
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "safe.directory"),
            ("GIT_CONFIG_VALUE_0", "*"),
        ];
        let own: &[(&str, &str)] = match self {
            Agent::Claude => &[("DISABLE_AUTOUPDATER", "1")],
            Agent::Gemini | Agent::Codex | Agent::Shell => &[],
        };
        let always = workspace_git.iter().chain(own);
        let unattended: &[(&str, &str)] = match self {
            Agent::Gemini => &[("GEMINI_CLI_TRUST_WORKSPACE", "true")],
            Agent::Claude | Agent::Codex | Agent::Shell => &[],
        };
        let extra = if ask { &[][..] } else { unattended };
        always
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The agent's own command line: for `shell`, `args` is the command to run instead of an
    /// interactive login bash; for the others, `args` follow the agent's command (after the
    /// unattended flags unless `ask`).
    pub fn argv(self, ask: bool, args: &[String]) -> Vec<String> {
        if self == Agent::Shell {
            return if args.is_empty() {
                vec!["bash".into(), "-l".into()]
            } else {
                args.to_vec()
            };
        }
        let mut argv = vec![self.command().to_string()];
        if !ask {
            argv.extend(self.unattended_flags().iter().map(|f| f.to_string()));
        }
        argv.extend(args.iter().cloned());
        argv
    }
}

/// The guest command line that runs `agent_argv` as [`AGENT_USER`]: `setpriv` drops to its uid,
/// gid and groups and resets the environment (`HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`; `TERM`
/// kept), then `env` adds `env` on top. guest-init changes to the working directory before,
/// as root, so the agent starts there even where a parent directory is closed to it.
pub fn as_agent_user(agent_argv: Vec<String>, env: &[(String, String)]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "setpriv",
        "--reuid",
        AGENT_USER,
        "--regid",
        AGENT_USER,
        "--init-groups",
        "--reset-env",
        "--",
        "env",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(agent_argv);
    argv
}

/// The sandbox name `paddock run AGENT DIR` uses: the agent and the directory's last
/// component (`claude-myproject`), reduced to what sandbox names allow.
pub fn sandbox_name(agent: Agent, dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cleaned = String::with_capacity(base.len());
    for c in base.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        // No runs of '-' from replaced characters.
        if !(c == '-' && cleaned.ends_with('-')) {
            cleaned.push(c);
        }
    }
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.');
    let mut name = if cleaned.is_empty() {
        agent.name().to_string()
    } else {
        format!("{}-{cleaned}", agent.name())
    };
    name.truncate(crate::sandbox::paths::MAX_NAME_LEN);
    name
}

/// Where the guest keeps the sandbox's egress CA certificate (Node.js reads it from
/// `NODE_EXTRA_CA_CERTS`; [`PREPARE_SCRIPT`] also appends it to the system bundle).
pub const GUEST_CA_PATH: &str = "/etc/paddock/egress-ca.pem";
/// The guest's system CA bundle (OpenSSL, curl, git, Python).
pub const GUEST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What every agent session gets for the network: the guest's proxy forwarder (programs that
/// ignore it are captured anyway), the CA that signs the hosts the egress proxy adds
/// credentials for, and a placeholder in each credential variable (`placeholders`: variable and
/// placeholder; the real value is added on the host, on the service's hosts only).
pub fn egress_environment(placeholders: &[(String, String)]) -> Vec<(String, String)> {
    let proxy = format!(
        "http://127.0.0.1:{}",
        paddock_protocol::egress::GUEST_PROXY_PORT
    );
    let no_proxy = "localhost,127.0.0.1,::1";
    let mut env: Vec<(String, String)> = [
        ("HTTP_PROXY", proxy.as_str()),
        ("HTTPS_PROXY", &proxy),
        ("http_proxy", &proxy),
        ("https_proxy", &proxy),
        ("NO_PROXY", no_proxy),
        ("no_proxy", no_proxy),
        ("NODE_EXTRA_CA_CERTS", GUEST_CA_PATH),
        ("SSL_CERT_FILE", GUEST_CA_BUNDLE),
        ("REQUESTS_CA_BUNDLE", GUEST_CA_BUNDLE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(placeholders.iter().cloned());
    env
}

/// A shell script (for `sh -c SCRIPT sh DIR`, the CA certificate on stdin, possibly empty) that
/// prepares a session: makes DIR (its parents as root, DIR itself owned by [`AGENT_USER`] when
/// this creates it) and installs the sandbox's egress
/// CA as [`GUEST_CA_PATH`] and in the system bundle, once per CA.
pub const PREPARE_SCRIPT: &str = concat!(
    "[ -d \"$1\" ] || { mkdir -p -- \"$1\" && chown agent:agent -- \"$1\"; } || exit 1\n",
    "ca=$(cat) || exit 1\n",
    "[ -n \"$ca\" ] || exit 0\n",
    "[ \"$(cat /etc/paddock/egress-ca.pem 2>/dev/null)\" = \"$ca\" ] && exit 0\n",
    "mkdir -p /etc/paddock && printf '%s\\n' \"$ca\" > /etc/paddock/egress-ca.pem || exit 1\n",
    "if [ -f /etc/ssl/certs/ca-certificates.crt ]; then ",
    "printf '%s\\n' \"$ca\" >> /etc/ssl/certs/ca-certificates.crt || exit 1; fi\n",
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn names_come_from_the_agent_and_the_directory() {
        let name = |agent, dir: &str| sandbox_name(agent, &PathBuf::from(dir));
        assert_eq!(
            name(Agent::Claude, "/home/me/myproject"),
            "claude-myproject"
        );
        assert_eq!(name(Agent::Codex, "/work/My Project!"), "codex-my-project");
        assert_eq!(name(Agent::Gemini, "/"), "gemini");
        assert_eq!(name(Agent::Shell, "/srv/.hidden"), "shell-hidden");
        assert_eq!(name(Agent::Shell, "/srv/ünï"), "shell-n");
        assert_eq!(name(Agent::Shell, "/srv/ü"), "shell");
        let long = format!("/x/{}", "a".repeat(200));
        let n = name(Agent::Claude, &long);
        assert_eq!(n.len(), crate::sandbox::paths::MAX_NAME_LEN);
        for dir in [
            "/home/me/myproject",
            "/work/My Project!",
            "/",
            "/srv/.hidden",
            &long,
        ] {
            for agent in Agent::ALL {
                crate::sandbox::paths::validate_name(&name(agent, dir)).unwrap();
            }
        }
    }

    #[test]
    fn agents_run_unattended_unless_asked() {
        let args = vec!["-p".to_string(), "hello".to_string()];
        assert_eq!(
            Agent::Claude.argv(false, &args),
            ["claude", "--dangerously-skip-permissions", "-p", "hello"]
        );
        assert_eq!(Agent::Claude.argv(true, &args), ["claude", "-p", "hello"]);
        assert_eq!(Agent::Gemini.argv(false, &[]), ["gemini", "--yolo"]);
        assert_eq!(
            Agent::Codex.argv(false, &[]),
            ["codex", "--dangerously-bypass-approvals-and-sandbox"]
        );
    }

    #[test]
    fn gemini_trusts_its_directory_only_when_unattended() {
        let trusts = |ask| {
            Agent::Gemini
                .environment(ask)
                .contains(&("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into()))
        };
        assert!(trusts(false));
        assert!(!trusts(true));
        assert!(Agent::Claude
            .environment(true)
            .contains(&("DISABLE_AUTOUPDATER".into(), "1".into())));
    }

    #[test]
    fn every_agents_git_accepts_the_shared_workspace() {
        for agent in [Agent::Claude, Agent::Gemini, Agent::Codex, Agent::Shell] {
            for ask in [false, true] {
                let env = agent.environment(ask);
                for (key, value) in [
                    ("GIT_CONFIG_COUNT", "1"),
                    ("GIT_CONFIG_KEY_0", "safe.directory"),
                    ("GIT_CONFIG_VALUE_0", "*"),
                ] {
                    assert!(env.contains(&(key.into(), value.into())), "{agent:?}");
                }
            }
        }
    }

    #[test]
    fn the_shell_runs_the_command_after_the_double_dash_or_a_login_bash() {
        assert_eq!(Agent::Shell.argv(false, &[]), ["bash", "-l"]);
        let make = vec!["make".to_string(), "test".to_string()];
        assert_eq!(Agent::Shell.argv(false, &make), make);
    }

    #[test]
    fn agents_run_as_the_agent_user_with_their_environment() {
        let argv = as_agent_user(
            vec!["claude".into()],
            &[("DISABLE_AUTOUPDATER".into(), "1".into())],
        );
        assert_eq!(
            argv,
            [
                "setpriv",
                "--reuid",
                "agent",
                "--regid",
                "agent",
                "--init-groups",
                "--reset-env",
                "--",
                "env",
                "DISABLE_AUTOUPDATER=1",
                "claude"
            ]
        );
        for agent in Agent::ALL {
            assert_eq!(Agent::from_name(agent.name()), Some(agent));
        }
        assert_eq!(Agent::from_name("vim"), None);
    }
}
