//! The `zkcoproc` binary: parses arguments and runs the chosen command.

fn main() -> std::process::ExitCode {
    zkcoproc_cli::main()
}
