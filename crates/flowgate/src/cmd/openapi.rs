//! `flowgate openapi export --out openapi/`.

use std::path::PathBuf;
use std::process::ExitCode;

/// `flowgate openapi …`.
#[derive(clap::Subcommand)]
pub enum OpenapiCommand {
    /// Write `admin.json` into a folder.
    Export {
        /// Target folder.
        #[arg(long, default_value = "openapi")]
        out: PathBuf,
    },
}

/// Runs the subcommand.
pub fn run(_cmd: OpenapiCommand) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate openapi export: not yet available");
    Ok(ExitCode::FAILURE)
}
