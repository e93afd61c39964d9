//! The secret store: values sealed with AES-256-GCM (random 96-bit nonce per
//! write, the name as associated data), so the table never holds plaintext and
//! a ciphertext moved to another name does not decrypt.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::Nonce;
use diesel::prelude::*;
use rand::RngCore;

use flowgate_core::repo::SecretRepo;
use flowgate_core::{now_ms, SecretString};

use crate::changes::{record_change, Change};
use crate::conn::write_tx;
use crate::error::{Result, StoreError};
use crate::models::secrets::SecretRow;
use crate::schema::secrets;
use crate::types::SecretMeta;
use crate::Store;

/// Secret names: 1–128 of `A-Z a-z 0-9 _ . : -`.
pub fn validate_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "secret name `{name}` must be 1-128 characters of A-Z a-z 0-9 _ . : -"
        )))
    }
}

impl Store {
    fn seal(&self, name: &str, value: &SecretString) -> Result<(String, String)> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .inner
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Database("secret encryption failed".into()))?;
        Ok((hex::encode(nonce), hex::encode(ct)))
    }

    fn open_sealed(&self, row: &SecretRow) -> Result<SecretString> {
        let bad = || {
            StoreError::Database(format!(
                "secret `{}` cannot be decrypted (wrong secrets key?)",
                row.name
            ))
        };
        let nonce = hex::decode(&row.nonce).map_err(|_| bad())?;
        let ct = hex::decode(&row.ciphertext).map_err(|_| bad())?;
        if nonce.len() != 12 {
            return Err(bad());
        }
        let pt = self
            .inner
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: row.name.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(pt)
            .map(SecretString::new)
            .map_err(|_| bad())
    }

    /// Creates or replaces a secret.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(secret.name = name))]
    pub fn put_secret(&self, name: &str, value: &SecretString) -> Result<()> {
        validate_secret_name(name)?;
        let (nonce, ciphertext) = self.seal(name, value)?;
        let row = SecretRow {
            name: name.to_owned(),
            nonce,
            ciphertext,
            updated_at: now_ms(),
        };
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let n = diesel::update(secrets::table.find(name))
                .set(&row)
                .execute(c)?;
            if n == 0 {
                diesel::insert_into(secrets::table)
                    .values(&row)
                    .execute(c)?;
            }
            record_change(c, &Change::Secret(name.to_owned()))
        })
    }

    /// A secret's value, `None` when absent.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(secret.name = name))]
    pub fn get_secret(&self, name: &str) -> Result<Option<SecretString>> {
        let mut c = self.conn()?;
        let row = secrets::table
            .find(name)
            .select(SecretRow::as_select())
            .first(&mut *c)
            .optional()?;
        row.map(|r| self.open_sealed(&r)).transpose()
    }

    /// Names and change times of all secrets (never values), by name.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn list_secrets(&self) -> Result<Vec<SecretMeta>> {
        let mut c = self.conn()?;
        let rows: Vec<(String, i64)> = secrets::table
            .order(secrets::name.asc())
            .select((secrets::name, secrets::updated_at))
            .load(&mut *c)?;
        Ok(rows
            .into_iter()
            .map(|(name, updated_at)| SecretMeta { name, updated_at })
            .collect())
    }

    /// Deletes a secret; `false` when it did not exist.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(secret.name = name))]
    pub fn delete_secret(&self, name: &str) -> Result<bool> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let gone = diesel::delete(secrets::table.find(name)).execute(c)? == 1;
            if gone {
                record_change(c, &Change::Secret(name.to_owned()))?;
            }
            Ok(gone)
        })
    }
}

impl SecretRepo for Store {
    fn secret_get(&self, name: &str) -> flowgate_core::Result<Option<SecretString>> {
        Ok(self.get_secret(name)?)
    }
}
