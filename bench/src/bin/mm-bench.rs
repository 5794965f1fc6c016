fn main() -> std::process::ExitCode {
    mm_bench::cli::main()
}
