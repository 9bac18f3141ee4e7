//! The coding agents of the `agent` image: the npm packages pinned here — the one place their
//! versions are recorded — and the committed npm lockfile (`rootfs-builder/agents/
//! package-lock.json`) that pins every package they pull in, with its registry integrity.
//!
//! To bump an agent: change its version below, run `cargo xtask agents-lock` (rewrites the
//! lockfile from the registry), rebuild with `cargo xtask rootfs --profile agent`. The image key
//! follows both the pins and the lockfile.

/// One coding agent installed from the npm registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodingAgent {
    /// The name users pick it by (`paddock run claude`), recorded in the image's agent manifest.
    pub name: &'static str,
    /// The command on PATH in the guest (`/usr/local/bin/<command>`): the package's bin.
    pub command: &'static str,
    /// The npm package.
    pub package: &'static str,
    /// Its exact version; `<command> --version` must report it.
    pub version: &'static str,
    /// A script of the package (path inside it) to run with the image's Node after the install:
    /// packages are installed with `--ignore-scripts`, and this is the one install step a
    /// package needs (Claude Code's puts its native binary in place).
    pub postinstall: Option<&'static str>,
}

impl CodingAgent {
    /// `package@version`, the spec npm takes.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }
}

/// The coding agents, in the order `paddock agents` lists them.
pub const CODING_AGENTS: &[CodingAgent] = &[
    // A wrapper whose platform packages (`-linux-x64`, glibc) hold the native binary; its
    // postinstall hard-links that binary over the `bin/claude.exe` placeholder.
    CodingAgent {
        name: "claude",
        command: "claude",
        package: "@anthropic-ai/claude-code",
        version: "2.1.332",
        postinstall: Some("install.cjs"),
    },
    // A Node bundle (Node >= 20); its optional node-pty comes prebuilt (`@lydell/node-pty-*`).
    CodingAgent {
        name: "gemini",
        command: "gemini",
        package: "@google/gemini-cli",
        version: "0.61.0",
        postinstall: None,
    },
    // A Node launcher for the native binary of `@openai/codex-linux-x64` (an alias of
    // `@openai/codex@<version>-linux-x64`), found at run time.
    CodingAgent {
        name: "codex",
        command: "codex",
        package: "@openai/codex",
        version: "0.171.0",
        postinstall: None,
    },
];

/// The plain shell, the fourth agent: Debian's bash (its version is whatever the base has, read
/// from `bash --version` when the image is built).
pub const SHELL_AGENT: (&str, &str) = ("shell", "bash");

/// Where the agents' npm project lives in the image (`package.json`, the lockfile,
/// `node_modules`); `/usr/local/bin/<command>` links into its `node_modules/.bin`.
pub const AGENTS_DIR: &str = "/usr/local/lib/paddock-agents";

/// The npm project name of [`AGENTS_DIR`] (its `package.json` and lockfile).
pub const AGENTS_PROJECT: &str = "paddock-agents";

/// The committed npm lockfile of [`CODING_AGENTS`] (lockfile version 3): every package and its
/// registry integrity. `npm ci` installs exactly this, or fails when it does not match the pins.
pub const AGENTS_LOCKFILE: &str = include_str!("../../agents/package-lock.json");

/// The `package.json` of the agents' npm project: the pins as exact dependencies, in a stable
/// form (the same pins give the same bytes).
pub fn package_json(agents: &[CodingAgent]) -> String {
    let deps: Vec<String> = agents
        .iter()
        .map(|a| format!("    \"{}\": \"{}\"", a.package, a.version))
        .collect();
    format!(
        "{{\n  \"name\": \"{AGENTS_PROJECT}\",\n  \"private\": true,\n  \"dependencies\": {{\n{}\n  }}\n}}\n",
        deps.join(",\n")
    )
}
