//! The `nib` command: parses the command line, hands it to [`nib::run`], and turns the
//! outcome into an exit code. Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match nib::Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nib: {e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match nib::run(args, std::env::vars().collect()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("nib: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
