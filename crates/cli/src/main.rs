//! The `zkcoproc` binary: parses arguments and runs the chosen command.

fn main() -> std::process::ExitCode {
    fixed_mmap_threshold();
    zkcoproc_cli::main()
}

/// Every execution of a circuit (the preflight of each task, the dev prover, a worker) allocates
/// the RISC Zero executor's page table, 16 MiB zeroed with `vec![0; n]`, and again at each
/// segment. glibc raises its mmap threshold after the first such block is freed, so later ones
/// come from the heap and `calloc` must clear all 16 MiB with `memset` (a fifth of the service's
/// CPU in dev mode, `bench/RESULTS.md` P2). A fixed threshold keeps blocks of 1 MiB and more on
/// `mmap`, whose fresh pages the kernel hands out already zero, and only the pages touched.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    const THRESHOLD: libc::c_int = 1 << 20;
    // SAFETY: `mallopt` only sets a parameter of glibc's allocator; it is called before any
    // other thread exists, and a refusal (return 0) leaves the default in place.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    if set == 0 {
        eprintln!("zkcoproc: note: could not fix malloc's mmap threshold; executions will be slower");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
