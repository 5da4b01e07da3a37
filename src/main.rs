//! The `durasim` command: see `durasim --help`.

fn main() -> std::process::ExitCode {
    durasim::cli::main()
}
