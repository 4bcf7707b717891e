use std::process::ExitCode;

fn main() -> ExitCode {
    tritonctl::cli::main()
}
