//! Same entry point as the shipped binary; see tests/Cargo.toml.
fn main() -> std::process::ExitCode {
    mm_bench::cli::main()
}
