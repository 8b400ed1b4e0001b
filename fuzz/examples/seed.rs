//! Writes the seed corpus: `cargo run --release --example seed` in fuzz/.
//! With `--check`, writes nothing and fails if the committed seeds are not
//! what the world makes now (the crates changed how the world is built).
//!
//! Each seed is a real message of the fuzz targets' world, named `seed-*` so
//! that .gitignore keeps the seeds and ignores what libFuzzer adds beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The seed files under `root`, with their bytes.
fn committed(root: &Path) -> std::io::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for dir in std::fs::read_dir(root)? {
        for file in std::fs::read_dir(dir?.path())? {
            let path = file?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                files.insert(path.clone(), std::fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

fn main() -> std::io::Result<ExitCode> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds: BTreeMap<PathBuf, Vec<u8>> = scrip_fuzz::seeds()
        .0
        .into_iter()
        .map(|(target, name, bytes)| (root.join(target).join(name), bytes))
        .collect();
    let old = if root.exists() {
        committed(&root)?
    } else {
        BTreeMap::new()
    };
    if std::env::args().any(|a| a == "--check") {
        if old == seeds {
            println!(
                "the {} seeds under {} are current",
                seeds.len(),
                root.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("the seed corpus is stale: run `cargo run --release --example seed` in fuzz/");
        return Ok(ExitCode::FAILURE);
    }
    // Replace the seeds only; inputs libFuzzer found stay.
    for path in old.keys() {
        std::fs::remove_file(path)?;
    }
    for (path, bytes) in &seeds {
        std::fs::create_dir_all(path.parent().expect("a target directory"))?;
        std::fs::write(path, bytes)?;
    }
    println!("{} seeds written under {}", seeds.len(), root.display());
    Ok(ExitCode::SUCCESS)
}
