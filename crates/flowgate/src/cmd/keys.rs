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
            let request = flowgate_engine::keys::KeyRequest {
                name,
                scopes,
                expires_at: None,
            };
            // The admin API's own check, before the database is opened.
            if let Err(e) =
                flowgate_engine::keys::validate_key_request(&request, flowgate_core::now_ms())
            {
                anyhow::bail!("{e}");
            }
            let store = super::open_store(&config)?;
            store.migrate()?;
            let created = flowgate_engine::keys::create_key_blocking(&store, &request)?;
            println!("{}", created.key.expose());
            eprintln!(
                "created key {} ({}) with scopes {}",
                created.id,
                created.name,
                created.scopes.join(",")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
