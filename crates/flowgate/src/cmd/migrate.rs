//! `flowgate migrate`: applies the embedded migrations to the configured database.

use std::process::ExitCode;

use crate::config::Config;

/// Applies migrations.
pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(&config.log.filter);
    let store = super::open_store(&config)?;
    store.migrate()?;
    eprintln!(
        "migrations applied to {}",
        super::redact_url(&config.database.url)
    );
    Ok(ExitCode::SUCCESS)
}
