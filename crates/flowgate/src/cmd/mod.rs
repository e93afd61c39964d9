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
    let url = &config.database.url;
    let result = match config.database.pool_size {
        Some(n) => flowgate_store::Store::open_with(
            url,
            key,
            flowgate_store::StoreOptions { max_connections: n },
        ),
        None => flowgate_store::Store::open(url, key),
    };
    result.with_context(|| format!("opening database {}", redact_url(url)))
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
