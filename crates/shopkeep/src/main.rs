//! `shopkeep`: a thin entry point; everything lives in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    shopkeep::cli::run(shopkeep::cli::Cli::parse())
}
