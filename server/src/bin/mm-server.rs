fn main() -> std::process::ExitCode {
    mm_server::cli::main()
}
