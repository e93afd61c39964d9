//! `flowgate deploy <dir> [--publish]`: uploads changed packages to a server.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowgate deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Folder of packages (`scripts/`) or one package folder.
    pub dir: PathBuf,
    /// Publish each created version.
    #[arg(long)]
    pub publish: bool,
    /// Server base URL.
    #[arg(long, env = "FLOWGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin API key.
    #[arg(long, env = "FLOWGATE_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// Deploys the folder.
pub fn run(_args: DeployArgs) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate deploy: not yet available");
    Ok(ExitCode::FAILURE)
}
