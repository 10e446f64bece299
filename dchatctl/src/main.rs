//! dchatctl: parse, run, print one clear error line, exit with CLI.md's codes.

use std::process::ExitCode;

use clap::Parser;
use dchatctl::cli::Cli;
use dchatctl::error::{CtlError, EX_FAILED};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dchatctl: cannot start the async runtime: {e}");
            return ExitCode::from(EX_FAILED);
        }
    };
    match runtime.block_on(dchatctl::run(cli)) {
        Ok(code) => ExitCode::from(code),
        // `dchatctl … | head`: the reader has what it wanted.
        Err(CtlError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dchatctl: {}", e.message());
            ExitCode::from(e.exit_code())
        }
    }
}
