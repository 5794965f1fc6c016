fn main() -> std::process::ExitCode {
    mm_client::cli::main()
}
