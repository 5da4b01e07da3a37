//! The `durasim` command: see `durasim --help`.

// Runs allocate and free many small buffers (messages, events, disk
// images); mimalloc's thread-local heaps make that cheaper than the system
// allocator and keep sweep threads from contending on its arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    durasim::cli::main()
}
