//! `flowgate migrate`.

use std::process::ExitCode;

use crate::config::Config;

/// Applies migrations.
pub fn run(_config: Config) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate migrate: not yet available");
    Ok(ExitCode::FAILURE)
}
