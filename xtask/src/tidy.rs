//! The written rules, enforced: every Rust file opens with its `//!` line, every `unsafe` block
//! or impl has its `SAFETY:` comment, and every end-to-end test file is one CI runs (CI finds
//! them by name, so there is no list to forget). Run with the unit tests.

use std::path::Path;

/// The end-to-end test files: `vmm/tests/e2e*.rs`, by name (what `cargo xtask ci` runs).
pub fn end_to_end_tests(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("vmm/tests"))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".rs")?;
            (stem == "e2e" || stem.starts_with("e2e_")).then(|| stem.to_string())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Every Rust source file of the workspace's crates (no build output, nothing hidden).
#[cfg(test)]
fn rust_files(root: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    // The workspace's members (from its manifest: a new crate cannot be forgotten) and `fuzz`.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("members = ["))
        .and_then(|rest| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("a one-line `members = [...]` in Cargo.toml");
    let crates: Vec<&str> = members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .chain(["fuzz"])
        .collect();
    assert!(crates.contains(&"vmm") && crates.len() > 8, "{crates:?}");
    for krate in crates {
        walk(&root.join(krate), &mut out);
    }
    assert!(out.len() > 100, "found only {} Rust files", out.len());
    out
}

/// `line` with the contents of its string literals dropped (a plain scan: escapes honoured,
/// raw strings and multi-line strings not).
#[cfg(test)]
fn without_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => {
                in_string = true;
                out.push('"');
            }
            (false, _, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::project_root;

    #[test]
    fn every_rust_file_opens_with_its_module_doc() {
        let missing: Vec<String> = rust_files(&project_root())
            .into_iter()
            .filter(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                !text.trim_start().starts_with("//!")
            })
            .map(|path| path.display().to_string())
            .collect();
        assert!(missing.is_empty(), "no `//!` line atop: {missing:#?}");
    }

    #[test]
    fn every_unsafe_block_says_why_it_is_sound() {
        let mut missing = Vec::new();
        for path in rust_files(&project_root()) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let code = without_strings(line.split("//").next().unwrap_or_default());
                let opens_unsafe = code
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "unsafe" && (w[1].starts_with('{') || w[1] == "impl"))
                    || code.split_whitespace().any(|t| t.starts_with("unsafe{"));
                if !opens_unsafe {
                    continue;
                }
                let context = &lines[i.saturating_sub(6)..=i];
                if !context.iter().any(|l| l.contains("SAFETY:")) {
                    missing.push(format!("{}:{}", path.display(), i + 1));
                }
            }
        }
        assert!(missing.is_empty(), "unsafe without `SAFETY:`: {missing:#?}");
    }

    #[test]
    fn ci_runs_every_end_to_end_test_file() {
        let tests = end_to_end_tests(&project_root()).unwrap();
        for expected in [
            "e2e",
            "e2e_egress",
            "e2e_engine",
            "e2e_run",
            "e2e_snapshots",
        ] {
            assert!(
                tests.iter().any(|t| t == expected),
                "{expected} not found: {tests:?}"
            );
        }
        // Each is a [[test]] target cargo knows (auto-discovered from vmm/tests).
        let manifest = std::fs::read_to_string(project_root().join("vmm/Cargo.toml")).unwrap();
        assert!(
            !manifest.contains("autotests = false"),
            "vmm's tests must be discovered by cargo"
        );
    }
}
