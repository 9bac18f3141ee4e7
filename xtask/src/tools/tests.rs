//! The tool table is complete (every program xtask names in a `Command::new` literal is in it)
//! and well formed.

use super::*;
use std::path::PathBuf;

/// A Debian package name: lower-case alphanumerics and `+-.`, at least two characters, starting
/// with an alphanumeric (Debian Policy 5.6.1).
fn is_debian_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

#[test]
fn every_tool_maps_to_a_debian_package() {
    for &tool in Tool::ALL {
        assert!(
            is_debian_package_name(tool.package()),
            "{tool:?} maps to {:?}, not a Debian package name",
            tool.package()
        );
        if let Presence::Program(program) = tool.presence() {
            assert!(!program.is_empty() && !program.contains(char::is_whitespace));
            assert_eq!(Tool::for_program(program), Some(tool), "{program} twice");
        }
    }
}

#[test]
fn the_table_lists_each_variant_once() {
    let source = std::fs::read_to_string(xtask_src().join("tools.rs")).unwrap();
    let body = &source[source.find("pub enum Tool {").unwrap()..];
    let body = &body[..body.find("\n}").unwrap()];
    let variants: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("//") && line.ends_with(','))
        .map(|line| line.trim_end_matches(','))
        .collect();
    let listed: Vec<String> = Tool::ALL.iter().map(|t| format!("{t:?}")).collect();
    assert_eq!(
        listed, variants,
        "Tool::ALL must list every variant, in order"
    );
}

#[test]
fn packages_the_other_tasks_need_are_listed() {
    let packages = all_packages();
    for package in [
        "kmod",
        "qemu-system-x86",
        "build-essential",
        "bc",
        "flex",
        "bison",
        "libelf-dev",
        "libssl-dev",
        "linux-source",
        "cpio",
        "xz-utils",
        "zstd",
        "busybox-static",
        "mmdebstrap",
        "erofs-utils",
        "npm",
        "nodejs",
    ] {
        assert!(packages.contains(&package), "{package} missing");
    }
    let mut sorted = packages.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(packages, sorted, "sorted, without repeats");
}

#[test]
fn a_missing_tool_is_named_with_its_package_on_one_line() {
    let message = missing_message(&[Tool::Modinfo], &["kmod"]);
    assert_eq!(
        message,
        "missing host tool modinfo (Debian package kmod): run `apt-get install kmod` as root"
    );
    let message = missing_message(
        &[Tool::MkfsErofs, Tool::LinuxSource],
        &["erofs-utils", "linux-source"],
    );
    assert_eq!(
        message,
        "missing host tools mkfs.erofs (Debian package erofs-utils), linux-source: \
         run `apt-get install erofs-utils linux-source` as root"
    );
}

#[test]
fn finds_programs_on_path() {
    assert!(program_on_path("sh"));
    assert!(program_on_path("/bin/sh"));
    assert!(!program_on_path("paddock-no-such-program"));
    assert!(!program_on_path("/nonexistent/sh"));
    assert!(ensure(&[Tool::Sh]).is_ok());
    let unknown = ensure_packages(&["no-such-package"])
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("no-such-package"), "{unknown}");
}

#[test]
fn program_paths_map_by_their_last_component() {
    assert_eq!(Tool::for_program("/bin/sh"), Some(Tool::Sh));
    assert_eq!(Tool::for_program("mkfs.erofs"), Some(Tool::MkfsErofs));
    assert_eq!(Tool::for_program("libelf-dev"), None, "not a program");
    assert_eq!(Tool::for_program("paddock"), None);
}

/// Every string literal passed to `Command::new(` in `text`, with its 1-based line.
fn command_literals(text: &str) -> Vec<(usize, String)> {
    const NEEDLE: &str = "Command::new(";
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(NEEDLE) {
            rest = rest[at + NEEDLE.len()..].trim_start();
            if let Some(literal) = rest.strip_prefix('"') {
                if let Some(end) = literal.find('"') {
                    found.push((index + 1, literal[..end].to_owned()));
                }
            }
        }
    }
    found
}

#[test]
fn scanner_finds_command_literals() {
    let text = "let a = Command::new(\"tar\");\n\
                let b = std::process::Command::new( \"/bin/sh\").arg(\"x\"); Command::new(\"xz\")\n\
                let c = Command::new(env!(\"CARGO\"));\nlet d = Command::new(tool);\n";
    assert_eq!(
        command_literals(text),
        [
            (1, "tar".to_owned()),
            (2, "/bin/sh".to_owned()),
            (2, "xz".to_owned())
        ]
    );
}

fn xtask_src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Tidy: a new program given to `Command::new` as a literal must come with a row in the table, so
/// `cargo xtask deps` (and a fresh CI machine) knows its package.
#[test]
fn every_command_xtask_runs_is_in_the_table() {
    let mut files = Vec::new();
    rust_files(&xtask_src(), &mut files);
    files.sort();
    let mut scanned = 0;
    let mut unknown = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, program) in command_literals(&text) {
            scanned += 1;
            if Tool::for_program(&program).is_none() {
                unknown.push(format!("{}:{line}: {program}", file.display()));
            }
        }
    }
    assert!(scanned > 5, "the scan found only {scanned} commands");
    assert!(
        unknown.is_empty(),
        "commands missing from xtask/src/tools.rs (add a Tool with its Debian package):\n{}",
        unknown.join("\n")
    );
}

/// Node.js and npm are installed by `.ci/run` only where absent (a NodeSource nodejs includes
/// npm and conflicts with Debian's): every other package of the table is named there.
#[test]
fn ci_run_installs_every_package_of_the_table() {
    let script = std::fs::read_to_string(xtask_src().join("../../.ci/run")).unwrap();
    let named: BTreeSet<&str> = script
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter(|word| is_debian_package_name(word))
        .collect();
    for package in all_packages() {
        if ["nodejs", "npm"].contains(&package) {
            continue;
        }
        assert!(
            named.contains(package),
            ".ci/run does not install {package}, which xtask's tool table lists"
        );
    }
}
