fn main() -> std::process::ExitCode {
    mm_certs::cli::main()
}
