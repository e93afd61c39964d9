//! One module per subcommand.

pub mod deploy;
pub mod keys;
pub mod migrate;
pub mod openapi;
pub mod run;
pub mod serve;
pub mod test;

use anyhow::Context;

use crate::config::Config;

/// Opens the configured database (without migrating).
pub fn open_store(config: &Config) -> anyhow::Result<flowgate_store::Store> {
    let key = config.secrets_key()?;
    flowgate_store::Store::open(&config.database.url, config.database.pool_size, key)
        .with_context(|| format!("opening database {}", redact_url(&config.database.url)))
}

/// A database URL with any password replaced, safe to print.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:[redacted]{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
