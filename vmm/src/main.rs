//! The `paddock` command-line interface: a thin layer over the `paddock_vmm` library.

mod cli;

use clap::Parser;

fn main() {
    // The processes paddock starts for itself (`__vmm`, `__egress`, `__workspace`, always the
    // first argument) parse only their own arguments: see `cli::internal`.
    let internal = std::env::args_os()
        .nth(1)
        .is_some_and(|first| cli::InternalCommand::is_named(&first));
    let ran = if internal {
        let args = cli::InternalCli::parse();
        cli::dispatch_internal(args)
    } else {
        let args = cli::Cli::parse();
        cli::init_tracing(args.verbose);
        cli::dispatch(args)
    };
    let code = match ran {
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
