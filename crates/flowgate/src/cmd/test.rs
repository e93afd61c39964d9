//! `flowgate test scripts/[flow]`: runs fixtures offline.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowgate test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// A folder of flow packages, or one package folder.
    pub path: PathBuf,
}

/// Runs the fixtures.
pub fn run(_args: TestArgs) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate test: not yet available");
    Ok(ExitCode::FAILURE)
}
