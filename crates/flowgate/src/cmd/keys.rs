//! `flowgate keys create --name --scopes`.

use std::process::ExitCode;

use crate::config::Config;

/// `flowgate keys …`.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once on standard output.
    Create {
        /// Human name of the key.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
}

/// Runs the subcommand.
pub fn run(_config: Config, _cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    eprintln!("flowgate keys: not yet available");
    Ok(ExitCode::FAILURE)
}
