//! `fuzz-seeds DIR`: writes each fuzz target's seed corpus to `DIR/<target>/` (files named by
//! content hash, so rerunning adds nothing twice). Run by `cargo xtask fuzz` before fuzzing.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR");
        std::process::exit(2);
    };
    for (target, inputs) in paddock_fuzz::seeds::all() {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        for input in inputs {
            let name = format!("seed-{:08x}-{}", crc32fast::hash(&input), input.len());
            std::fs::write(target_dir.join(name), &input)?;
        }
    }
    Ok(())
}
