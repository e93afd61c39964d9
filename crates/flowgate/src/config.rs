//! Layered configuration: defaults → `flowgate.toml` → `FLOWGATE_*` environment.

use std::path::Path;

/// The server configuration.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {}

/// Loads the configuration.
pub fn load(_path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config {})
}
