//! `flowgate run <flow-dir> --input body.json`: one local run of a package.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowgate run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The package folder.
    pub dir: PathBuf,
    /// JSON file used as the request body.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

/// Runs the package once.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate run: not yet available");
    Ok(ExitCode::FAILURE)
}
