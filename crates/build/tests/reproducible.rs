//! The same sources build to the same image id wherever they are checked out and whatever the
//! target directory: build paths must not leak into the guest (panic locations embed them).

use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// Copies `from` to `to`, skipping build output.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[test]
fn image_id_does_not_depend_on_the_checkout_path_or_target_dir() {
    let repo = repo_root();
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("zkcoproc-repro");
    // A fixed place (so its dependencies stay cached between runs), distinct from the checkout.
    let copy = base.join("elsewhere");
    let _ = std::fs::remove_dir_all(&copy);
    for item in ["crates", "examples", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml", ".cargo"] {
        let (src, dst) = (repo.join(item), copy.join(item));
        if src.is_dir() {
            copy_tree(&src, &dst).expect("copy dir");
        } else {
            std::fs::create_dir_all(copy.as_path()).expect("mkdir");
            std::fs::copy(&src, &dst).expect("copy file");
        }
    }

    let here = zkcoproc_build::build_circuit(&repo.join("examples/hello/circuit"), &base.join("target-a"))
        .expect("build in the checkout");
    let there = zkcoproc_build::build_circuit(&copy.join("examples/hello/circuit"), &base.join("target-b"))
        .expect("build in the copy");
    let id = |b: &[u8]| risc0_binfmt::compute_image_id(b).expect("image id").to_string();
    // The image id covers all loaded memory. (The files may still differ in the symbol table:
    // cargo's metadata hashes of path packages include their location.)
    assert_eq!(id(&here), id(&there), "image id depends on where the sources are");
}
