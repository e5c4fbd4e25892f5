//! The `eviction-router` binary: parse the command line and hand over to [`eviction_router::cli`].

use std::process::ExitCode;

use clap::Parser;
use eviction_router::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(run(cli))
}
