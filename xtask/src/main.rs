//! `cargo xtask`: the project's build, lab, test and benchmark automation.

mod ci;
mod fuzz;
mod kernel;
mod lab;
mod rootfs;
mod tidy;
mod tools;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "paddock build, lab, test and benchmark automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the guest kernel (vmlinux) from Debian's linux-source or a given source; print its path.
    Kernel {
        /// A kernel source tarball (.tar.xz/.tar.gz/.tar.bz2) or an unpacked source directory.
        #[arg(long)]
        source: Option<PathBuf>,
    },
    /// Build the guest root filesystem image for a profile; print its path.
    Rootfs {
        /// The rootfs profile to build: `minimal` (newc initramfs) or `agent` (Debian, erofs image).
        #[arg(long, default_value = "minimal")]
        profile: String,
    },
    /// Rewrite rootfs-builder/agents/package-lock.json from the coding agents' pins
    /// (rootfs-builder/src/agent/coding.rs) with the host's npm; print its path.
    AgentsLock,
    /// Build every default artifact: guest kernel, rootfs and the paddock binary.
    Build,
    /// Boot the lab machine (qemu TCG with nested AMD-V) and run COMMAND inside it, paddock on PATH.
    Lab {
        /// Also put this file into the lab: `HOST_PATH:LAB_PATH` (LAB_PATH absolute). Repeatable.
        #[arg(long = "file", value_name = "HOST:LAB")]
        files: Vec<String>,
        /// The command to run inside the lab, e.g. `paddock run -- uname -a`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Build the artifacts and run a command in a sandbox: natively with hardware KVM, else in the lab.
    Run {
        /// The command to run in the sandbox.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Run all tests: unit tests, then the end-to-end tests (natively with hardware KVM, else in the lab).
    Ci {
        /// Only the end-to-end tests (skip the rules, unit tests and fuzzing).
        #[arg(long, conflicts_with = "no_e2e")]
        e2e_only: bool,
        /// Everything but the end-to-end tests.
        #[arg(long)]
        no_e2e: bool,
        /// Arguments for the end-to-end test binaries: a name filter (only tests whose name
        /// contains it) and libtest options (`--include-ignored`, `--nocapture`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<String>,
    },
    /// Run the criterion benchmarks (natively with hardware KVM, else in the lab).
    Bench {
        /// Benchmark filter passed to criterion.
        filter: Option<String>,
    },
    /// Fuzz the decoders of guest- and file-supplied data (libFuzzer through cargo-fuzz, which
    /// is installed from crates.io when missing): every target, or the one named.
    Fuzz {
        /// The target (a file of fuzz/fuzz_targets/, without `.rs`).
        target: Option<String>,
        /// How long to run each target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Print, on one line, the Debian packages of the host tools xtask runs that are missing
    /// here (a tool already present, from whatever source, is left alone).
    Deps {
        /// Print every package of the table, present or not.
        #[arg(long)]
        all: bool,
    },
}

/// Runs the command; an error is printed as one line, its causes joined by ": " (no backtrace).
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command and returns the exit status for xtask (a lab or sandbox command's own status).
fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Kernel { source } => {
            let path = kernel::build(source.as_deref())?;
            println!("{}", path.display());
        }
        Command::Rootfs { profile } => {
            let path = rootfs::build(&profile)?;
            println!("{}", path.display());
        }
        Command::AgentsLock => {
            let path = rootfs::coding_agents::write_lockfile()?;
            println!("{}", path.display());
        }
        Command::Build => {
            let artifacts = ci::build_artifacts()?;
            println!("{artifacts}");
        }
        Command::Lab { files, command } => return Ok(exit_status(lab::run(&files, &command)?)),
        Command::Run { command } => return Ok(exit_status(ci::run_in_sandbox(&command)?)),
        Command::Ci {
            e2e_only,
            no_e2e,
            test_args,
        } => ci::ci(e2e_only, no_e2e, &test_args)?,
        Command::Bench { filter } => ci::bench(filter.as_deref())?,
        Command::Fuzz { target, seconds } => fuzz::fuzz(target.as_deref(), seconds)?,
        Command::Deps { all } => {
            let packages = if all {
                tools::all_packages()
            } else {
                tools::missing_packages()
            };
            println!("{}", packages.join(" "));
        }
    }
    Ok(0)
}

/// A child's exit status as a process exit code (outside 0..=255, e.g. -1 for "killed": 1).
fn exit_status(status: i32) -> u8 {
    u8::try_from(status).unwrap_or(1)
}
