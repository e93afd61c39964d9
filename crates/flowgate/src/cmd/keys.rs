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
pub fn run(config: Config, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    crate::telemetry::init("warn");
    match cmd {
        KeysCommand::Create { name, scopes } => {
            let scopes: Vec<String> = scopes
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if name.trim().is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            if scopes.is_empty() {
                anyhow::bail!("--scopes must name at least one scope (e.g. --scopes admin)");
            }
            if let Some(bad) = scopes
                .iter()
                .find(|s| !flowgate_core::manifest::is_valid_scope(s))
            {
                anyhow::bail!("`{bad}` is not a valid scope");
            }
            let store = super::open_store(&config)?;
            store.migrate()?;
            let created =
                flowgate_engine::security::create_api_key_blocking(&store, &name, &scopes, None)?;
            println!("{}", created.key.expose());
            eprintln!(
                "created key {} ({}) with scopes {}",
                created.id,
                name,
                scopes.join(",")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
