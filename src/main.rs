//! The `durasim` command: see `durasim --help`.

/// A seed's run allocates and frees many small, short-lived buffers (trace
/// events, messages, disk writes, history records) and a few per run that
/// grow past glibc's mmap threshold, so every seed paid page faults for
/// fresh pages. mimalloc reuses freed memory from per-thread pages, which
/// also keeps the sweep's worker threads off a shared heap lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    durasim::cli::main()
}
