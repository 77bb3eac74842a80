//! The `zkcoproc` binary: parses arguments and runs the chosen command.

fn main() -> std::process::ExitCode {
    fixed_mmap_threshold();
    zkcoproc_cli::main()
}

/// Every execution of a circuit (the preflight of each task, the dev prover, a worker) allocates
/// the RISC Zero executor's page table, 16 MiB zeroed with `vec![0; n]`, and again at each
/// segment. glibc raises its mmap threshold after the first such block is freed, so later ones
/// come from the heap and `calloc` must clear all 16 MiB with `memset` (a fifth of the service's
/// CPU in dev mode, `bench/RESULTS.md` P2). A fixed threshold keeps that block on `mmap`, whose
/// fresh pages the kernel hands out already zero, and only the pages touched.
///
/// The executor also clears a 1 MiB bitmap of page states with `memset` at every start: on a
/// fresh `mmap` each of its 256 pages is a page fault that the kernel zeroes first (and unmaps
/// after), an eighth of the service's CPU in dev mode. So the threshold is 4 MiB, above the
/// bitmap and below the page table, and the heap keeps up to 64 MiB of freed memory instead of
/// returning it, so the bitmap's next allocation finds its pages resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    const THRESHOLD: libc::c_int = 4 << 20;
    const TRIM: libc::c_int = 64 << 20;
    // SAFETY: `mallopt` only sets parameters of glibc's allocator; it is called before any
    // other thread exists, and a refusal (return 0) leaves the default in place.
    let set = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) != 0
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM) != 0
    };
    if !set {
        eprintln!(
            "zkcoproc: note: could not fix malloc's mmap and trim thresholds; executions will be slower"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
