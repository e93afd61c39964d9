//! Identifier newtypes and parsed names.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::Error;

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            /// Parses the canonical hyphenated form.
            pub fn parse(s: &str) -> Result<Self, Error> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| Error::Invalid(format!("`{s}` is not a valid id")))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// Id of one run (UUIDv7).
    RunId
);
uuid_id!(
    /// Id of one user record.
    UserId
);
uuid_id!(
    /// Id of one stored event.
    EventId
);
uuid_id!(
    /// Id of one API key (the visible part of the key).
    KeyId
);

/// A flow's name: a slug `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FlowName(String);

impl FlowName {
    /// Parses a slug, refusing anything outside `[a-z0-9][a-z0-9-]{0,62}`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::Invalid(format!(
                "flow name `{s}` must match [a-z0-9][a-z0-9-]{{0,62}}"
            )))
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FlowName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<FlowName> for String {
    fn from(n: FlowName) -> String {
        n.0
    }
}

impl fmt::Display for FlowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FlowName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_names() {
        assert!(FlowName::parse("payment-webhook").is_ok());
        assert!(FlowName::parse("0abc").is_ok());
        assert!(FlowName::parse("-abc").is_err());
        assert!(FlowName::parse("Abc").is_err());
        assert!(FlowName::parse("").is_err());
        assert!(FlowName::parse(&"a".repeat(64)).is_err());
        assert!(FlowName::parse(&"a".repeat(63)).is_ok());
        assert!(FlowName::parse("a_b").is_err());
    }
}
