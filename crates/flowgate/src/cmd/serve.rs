//! `flowgate serve`.

use std::process::ExitCode;

use crate::config::Config;

/// Starts the server.
pub fn run(_config: Config) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate serve: not yet available");
    Ok(ExitCode::FAILURE)
}
