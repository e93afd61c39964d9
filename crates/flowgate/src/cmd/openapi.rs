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
pub fn run(cmd: OpenapiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OpenapiCommand::Export { out } => {
            std::fs::create_dir_all(&out)?;
            let file = out.join("admin.json");
            let mut text = flowgate_gateway::openapi::admin_openapi_json();
            text.push('\n');
            std::fs::write(&file, text)?;
            eprintln!("wrote {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
