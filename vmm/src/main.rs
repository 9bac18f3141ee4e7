//! The `paddock` command-line interface: a thin layer over the `paddock_vmm` library.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    let code = match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paddock: {e:#}");
            paddock_vmm::exit_codes::PADDOCK_ERROR
        }
    };
    // A warm VMM claimed is replaced before this process goes.
    paddock_vmm::sandbox::pool::await_refills();
    std::process::exit(code);
}
