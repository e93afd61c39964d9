//! Secrets as a service: write, list (names only) and delete. No method
//! returns a secret's value.

use flowgate_core::SecretString;

use crate::error::{EngineError, Result};
use crate::Engine;

pub use flowgate_store::SecretMeta;

/// Longest secret name, in characters.
pub const MAX_SECRET_NAME_CHARS: usize = 128;
/// Largest secret value, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024;

/// Checks a secret name the admin API accepts: 1–128 characters of
/// `A–Z a–z 0–9 _ - .`.
pub fn check_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::invalid(
            "a secret name is 1–128 characters of A–Z, a–z, 0–9, `_`, `-`, `.`",
        ))
    }
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("secret `{name}` does not exist"))
}

impl Engine {
    /// Every secret's name and last write, by name.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn list_secrets(&self) -> Result<Vec<SecretMeta>> {
        Ok(self.store().call(|s| s.list_secrets()).await?)
    }

    /// One secret's metadata (404 when unknown).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(secret.name = %name))]
    pub async fn secret_info(&self, name: &str) -> Result<SecretMeta> {
        self.list_secrets()
            .await?
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| not_found(name))
    }

    /// Creates or replaces a secret (stored encrypted).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(secret.name = %name))]
    pub async fn put_secret(&self, name: &str, value: SecretString) -> Result<()> {
        check_secret_name(name)?;
        if value.expose().len() > MAX_SECRET_VALUE_BYTES {
            return Err(EngineError::invalid("a secret value may be at most 64 KiB"));
        }
        let n2 = name.to_owned();
        self.store()
            .call(move |s| s.put_secret(&n2, &value))
            .await?;
        self.apply_change(&flowgate_store::Change::Secret(name.to_owned()));
        Ok(())
    }

    /// Deletes a secret (404 when unknown).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(secret.name = %name))]
    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        let n2 = name.to_owned();
        if !self.store().call(move |s| s.delete_secret(&n2)).await? {
            return Err(not_found(name));
        }
        self.apply_change(&flowgate_store::Change::Secret(name.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_checked() {
        assert!(check_secret_name("stripe.key_1-a").is_ok());
        assert!(check_secret_name("").is_err());
        assert!(check_secret_name("a:b").is_err());
        assert!(check_secret_name(&"a".repeat(129)).is_err());
    }

    #[tokio::test]
    async fn secrets_are_written_listed_and_deleted_without_values() {
        let engine = crate::queries::memory_engine();
        let put = engine
            .put_secret("api.key", SecretString::new("v".to_owned()))
            .await;
        assert!(put.is_ok(), "{put:?}");
        let big = "x".repeat(MAX_SECRET_VALUE_BYTES + 1);
        assert!(matches!(
            engine.put_secret("big", SecretString::new(big)).await,
            Err(EngineError::Invalid { .. })
        ));
        assert!(engine.secret_info("api.key").await.is_ok());
        assert_eq!(engine.list_secrets().await.map(|l| l.len()).ok(), Some(1));
        assert!(engine.delete_secret("api.key").await.is_ok());
        assert!(matches!(
            engine.delete_secret("api.key").await,
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            engine.secret_info("api.key").await,
            Err(EngineError::NotFound(_))
        ));
    }
}
