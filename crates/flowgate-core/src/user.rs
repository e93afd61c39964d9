//! The identity record flows act on, and the JSON merge patch applied to it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{EpochMs, Error, Result, UserId};

/// Account status of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// May sign in.
    Active,
    /// Temporarily blocked.
    Suspended,
    /// Permanently blocked.
    Disabled,
}

impl UserStatus {
    /// Parses `active`, `suspended` or `disabled`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "disabled" => Ok(Self::Disabled),
            other => Err(Error::Invalid(format!(
                "status `{other}` must be one of active, suspended, disabled"
            ))),
        }
    }
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Disabled => "disabled",
        }
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Email, unique ignoring case; stored as given.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Status.
    pub status: UserStatus,
    /// Free-form JSON object.
    pub attributes: Map<String, Value>,
    /// System name → id in that system.
    pub external_ids: Map<String, Value>,
    /// Creation time (epoch ms).
    pub created_at: EpochMs,
    /// Last change (epoch ms).
    pub updated_at: EpochMs,
}

impl User {
    /// The user as the JSON map scripts and the API see (times as RFC 3339).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "email": self.email,
            "display_name": self.display_name,
            "status": self.status.as_str(),
            "attributes": self.attributes,
            "external_ids": self.external_ids,
            "created_at": crate::rfc3339(self.created_at),
            "updated_at": crate::rfc3339(self.updated_at),
        })
    }
}

/// Fields of a user to create.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewUser {
    /// Email (required, must contain `@`).
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Status; `active` when absent.
    pub status: Option<UserStatus>,
    /// Attributes object.
    pub attributes: Map<String, Value>,
    /// External ids object.
    pub external_ids: Map<String, Value>,
}

impl NewUser {
    /// The stored user this creates at `now`: a fresh id, status `active` unless given.
    pub fn into_user(self, now: EpochMs) -> User {
        User {
            id: UserId::new(),
            email: self.email,
            display_name: self.display_name,
            status: self.status.unwrap_or(UserStatus::Active),
            attributes: self.attributes,
            external_ids: self.external_ids,
            created_at: now,
            updated_at: now,
        }
    }

    /// Builds a new user from a JSON object as scripts and the admin API send it.
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::Invalid("a user must be an object".into()))?;
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "email" | "display_name" | "status" | "attributes" | "external_ids"
            ) {
                return Err(Error::Invalid(format!("unknown user field `{k}`")));
            }
        }
        let email = obj
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid("`email` is required and must be a string".into()))?;
        validate_email(email)?;
        let display_name = match obj.get("display_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::Invalid("`display_name` must be a string".into())),
        };
        let status = match obj.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(UserStatus::parse(s)?),
            Some(_) => return Err(Error::Invalid("`status` must be a string".into())),
        };
        Ok(Self {
            email: email.to_owned(),
            display_name,
            status,
            attributes: object_field(obj, "attributes")?,
            external_ids: object_field(obj, "external_ids")?,
        })
    }
}

fn object_field(obj: &Map<String, Value>, key: &str) -> Result<Map<String, Value>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(Error::Invalid(format!("`{key}` must be an object"))),
    }
}

/// Checks that an email is plausible: one `@`, something on both sides, no spaces.
pub fn validate_email(email: &str) -> Result<()> {
    let ok = email.len() <= 320
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("`{email}` is not a valid email")))
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes a key.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl User {
    /// Applies a merge patch to this user's editable fields and returns the
    /// top-level field names that changed. `id` and times cannot be patched.
    pub fn apply_patch(&mut self, patch: &Value) -> Result<Vec<String>> {
        let obj = patch
            .as_object()
            .ok_or_else(|| Error::Invalid("a user patch must be an object".into()))?;
        let mut doc = serde_json::json!({
            "email": self.email,
            "display_name": self.display_name,
            "status": self.status.as_str(),
            "attributes": self.attributes,
            "external_ids": self.external_ids,
        });
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "email" | "display_name" | "status" | "attributes" | "external_ids"
            ) {
                return Err(Error::Invalid(format!(
                    "user field `{k}` cannot be changed"
                )));
            }
        }
        let before = doc.clone();
        merge_patch(&mut doc, patch);
        if doc.get("email").is_none_or(Value::is_null) {
            return Err(Error::Invalid("`email` cannot be removed".into()));
        }
        if doc.get("status").is_none_or(Value::is_null) {
            doc["status"] = Value::String(self.status.as_str().into());
        }
        let next = NewUser::from_json(&doc)?;
        let changed = [
            "email",
            "display_name",
            "status",
            "attributes",
            "external_ids",
        ]
        .iter()
        .filter(|k| before.get(**k) != doc.get(**k))
        .map(|k| (*k).to_owned())
        .collect();
        self.email = next.email;
        self.display_name = next.display_name;
        self.status = next.status.unwrap_or(self.status);
        self.attributes = next.attributes;
        self.external_ids = next.external_ids;
        Ok(changed)
    }
}

/// Equality filter over users: `email`, `status` and dotted attribute keys
/// (`attributes.plan`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFilter {
    /// `(field path, expected value)` pairs, all of which must match.
    pub equals: Vec<(String, Value)>,
}

impl UserFilter {
    /// Builds a filter from a JSON object, refusing unsupported keys.
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(o) => o,
            _ => return Err(Error::Invalid("a user filter must be an object".into())),
        };
        let mut equals = Vec::new();
        for (k, v) in obj {
            let ok = k == "email"
                || k == "status"
                || k == "display_name"
                || k.strip_prefix("attributes.").is_some_and(|r| !r.is_empty())
                || k.strip_prefix("external_ids.")
                    .is_some_and(|r| !r.is_empty());
            if !ok {
                return Err(Error::Invalid(format!(
                    "cannot filter users by `{k}` (use email, status, display_name, attributes.<key> or external_ids.<system>)"
                )));
            }
            equals.push((k.clone(), v.clone()));
        }
        Ok(Self { equals })
    }

    /// Whether the user matches every pair (email compared ignoring case).
    pub fn matches(&self, user: &User) -> bool {
        let doc = user.to_json();
        self.equals.iter().all(|(path, want)| {
            if path == "email" {
                return want
                    .as_str()
                    .is_some_and(|w| w.eq_ignore_ascii_case(&user.email));
            }
            let mut cur = &doc;
            for part in path.split('.') {
                match cur.get(part) {
                    Some(v) => cur = v,
                    None => return want.is_null(),
                }
            }
            cur == want
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ann() -> User {
        User {
            id: UserId::new(),
            email: "ann@example.com".into(),
            display_name: Some("Ann".into()),
            status: UserStatus::Active,
            attributes: json!({"plan": "free", "prefs": {"lang": "nl", "tz": "CET"}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            external_ids: Map::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn merge_patch_rfc7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1]});
        merge_patch(&mut t, &json!({"a": [2, 3]}));
        assert_eq!(t, json!({"a": [2, 3]}));
    }

    #[test]
    fn patch_user_nested_attributes() {
        let mut u = ann();
        let changed = u
            .apply_patch(&json!({"attributes": {"plan": "pro", "prefs": {"tz": null}}}))
            .unwrap();
        assert_eq!(changed, vec!["attributes".to_string()]);
        assert_eq!(u.attributes["plan"], "pro");
        assert_eq!(u.attributes["prefs"], json!({"lang": "nl"}));
        assert!(u.apply_patch(&json!({"email": null})).is_err());
        assert!(u.apply_patch(&json!({"id": "x"})).is_err());
        assert!(u.apply_patch(&json!({"status": "gone"})).is_err());
    }

    #[test]
    fn filters() {
        let u = ann();
        let f =
            UserFilter::from_json(&json!({"attributes.plan": "free", "email": "ANN@example.com"}))
                .unwrap();
        assert!(f.matches(&u));
        let f = UserFilter::from_json(&json!({"attributes.prefs.lang": "en"})).unwrap();
        assert!(!f.matches(&u));
        assert!(UserFilter::from_json(&json!({"password": "x"})).is_err());
    }

    #[test]
    fn new_user_validation() {
        assert!(NewUser::from_json(&json!({"email": "a@b"})).is_ok());
        assert!(NewUser::from_json(&json!({"email": "nope"})).is_err());
        assert!(NewUser::from_json(&json!({"email": "a@b", "attributes": 3})).is_err());
        assert!(NewUser::from_json(&json!({"email": "a@b", "role": "x"})).is_err());
    }
}
