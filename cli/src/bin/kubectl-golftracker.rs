fn main() -> std::process::ExitCode {
    golftracker_cli::main()
}
