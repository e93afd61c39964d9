//! [`MemoryRepo`]: users, key-value state and secrets in memory, for offline
//! fixtures, `flowgate run` and tests.

use flowgate_core::event::{types, Event};
use flowgate_core::repo::{KvRepo, SecretRepo, UserRepo};
use flowgate_core::user::{NewUser, User, UserFilter, UserStatus};
use flowgate_core::{now_ms, Error, FlowName, Result, SecretString, UserId};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
struct State {
    users: Vec<User>,
    kv: BTreeMap<(String, String), (Value, Option<i64>)>,
    secrets: HashMap<String, String>,
    lifecycle: Vec<Event>,
}

/// An in-memory identity store, key-value store and secret store.
#[derive(Default)]
pub struct MemoryRepo {
    state: Mutex<State>,
}

impl MemoryRepo {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a user as is (fixtures may give ids); a duplicate email is a conflict.
    pub fn insert_user(&self, user: User) -> Result<()> {
        let mut st = self.state.lock();
        if st
            .users
            .iter()
            .any(|u| u.email.eq_ignore_ascii_case(&user.email) || u.id == user.id)
        {
            return Err(Error::Conflict(format!(
                "a user with email `{}` or id {} already exists",
                user.email, user.id
            )));
        }
        st.users.push(user);
        Ok(())
    }

    /// Seeds a user from a JSON object as fixtures write it (optional `id`).
    pub fn seed_user(&self, v: &Value) -> Result<User> {
        let mut fields = v
            .as_object()
            .cloned()
            .ok_or_else(|| Error::Invalid("a user must be an object".into()))?;
        let id = match fields.remove("id") {
            Some(Value::String(s)) => UserId::parse(&s)?,
            None | Some(Value::Null) => UserId::new(),
            Some(_) => return Err(Error::Invalid("`id` must be a string".into())),
        };
        let new = NewUser::from_json(&Value::Object(fields))?;
        let now = now_ms();
        let user = User {
            id,
            email: new.email,
            display_name: new.display_name,
            status: new.status.unwrap_or(UserStatus::Active),
            attributes: new.attributes,
            external_ids: new.external_ids,
            created_at: now,
            updated_at: now,
        };
        self.insert_user(user.clone())?;
        Ok(user)
    }

    /// Sets a secret.
    pub fn set_secret(&self, name: &str, value: &str) {
        self.state
            .lock()
            .secrets
            .insert(name.to_owned(), value.to_owned());
    }

    /// Every user, oldest first.
    pub fn users(&self) -> Vec<User> {
        self.state.lock().users.clone()
    }

    /// The live key-value pairs of one flow.
    pub fn kv_snapshot(&self, flow: &FlowName) -> Map<String, Value> {
        let now = now_ms();
        self.state
            .lock()
            .kv
            .iter()
            .filter(|((f, _), (_, exp))| f == flow.as_str() && exp.is_none_or(|e| e > now))
            .map(|((_, k), (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// User lifecycle events recorded by changes, in order.
    pub fn lifecycle_events(&self) -> Vec<Event> {
        self.state.lock().lifecycle.clone()
    }
}

fn record(st: &mut State, kind: &str, data: Value) {
    st.lifecycle.push(Event::new(kind, "flowgate", data));
}

impl UserRepo for MemoryRepo {
    fn get_user(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.state.lock().users.iter().find(|u| u.id == id).cloned())
    }

    fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        Ok(self
            .state
            .lock()
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned())
    }

    fn find_user_by_external_id(&self, system: &str, id: &str) -> Result<Option<User>> {
        Ok(self
            .state
            .lock()
            .users
            .iter()
            .find(|u| u.external_ids.get(system).and_then(Value::as_str) == Some(id))
            .cloned())
    }

    fn find_users(&self, filter: &UserFilter, limit: usize) -> Result<Vec<User>> {
        Ok(self
            .state
            .lock()
            .users
            .iter()
            .filter(|u| filter.matches(u))
            .take(limit)
            .cloned()
            .collect())
    }

    fn create_user(&self, new: NewUser) -> Result<User> {
        let mut st = self.state.lock();
        if st
            .users
            .iter()
            .any(|u| u.email.eq_ignore_ascii_case(&new.email))
        {
            return Err(Error::Conflict(format!(
                "a user with email `{}` already exists",
                new.email
            )));
        }
        let now = now_ms();
        let user = new.into_user(now);
        st.users.push(user.clone());
        record(&mut st, types::USER_CREATED, user.to_json());
        Ok(user)
    }

    fn update_user(&self, id: UserId, patch: &Value) -> Result<User> {
        let mut st = self.state.lock();
        let idx = st
            .users
            .iter()
            .position(|u| u.id == id)
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        let mut next = st.users[idx].clone();
        let changes = next.apply_patch(patch)?;
        if st
            .users
            .iter()
            .any(|u| u.id != id && u.email.eq_ignore_ascii_case(&next.email))
        {
            return Err(Error::Conflict(format!(
                "a user with email `{}` already exists",
                next.email
            )));
        }
        if !changes.is_empty() {
            next.updated_at = now_ms();
            let mut data = next.to_json();
            data["changes"] = json!(changes);
            record(&mut st, types::USER_UPDATED, data);
        }
        st.users[idx] = next.clone();
        Ok(next)
    }

    fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User> {
        let mut st = self.state.lock();
        let idx = st
            .users
            .iter()
            .position(|u| u.id == id)
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        if st.users[idx].status != status {
            st.users[idx].status = status;
            st.users[idx].updated_at = now_ms();
            let data = st.users[idx].to_json();
            record(&mut st, types::USER_STATUS_CHANGED, data);
        }
        Ok(st.users[idx].clone())
    }

    fn delete_user(&self, id: UserId) -> Result<bool> {
        let mut st = self.state.lock();
        match st.users.iter().position(|u| u.id == id) {
            Some(i) => {
                let u = st.users.remove(i);
                record(&mut st, types::USER_DELETED, u.to_json());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl KvRepo for MemoryRepo {
    fn kv_get(&self, flow: &FlowName, key: &str) -> Result<Option<Value>> {
        let now = now_ms();
        Ok(self
            .state
            .lock()
            .kv
            .get(&(flow.as_str().to_owned(), key.to_owned()))
            .filter(|(_, exp)| exp.is_none_or(|e| e > now))
            .map(|(v, _)| v.clone()))
    }

    fn kv_set(&self, flow: &FlowName, key: &str, value: &Value, ttl: Option<u64>) -> Result<()> {
        let exp = ttl
            .map(|t| now_ms().saturating_add(i64::try_from(t).unwrap_or(i64::MAX / 2000) * 1000));
        self.state.lock().kv.insert(
            (flow.as_str().to_owned(), key.to_owned()),
            (value.clone(), exp),
        );
        Ok(())
    }

    fn kv_delete(&self, flow: &FlowName, key: &str) -> Result<bool> {
        let now = now_ms();
        let removed = self
            .state
            .lock()
            .kv
            .remove(&(flow.as_str().to_owned(), key.to_owned()));
        Ok(removed.is_some_and(|(_, exp)| exp.is_none_or(|e| e > now)))
    }
}

impl SecretRepo for MemoryRepo {
    fn secret_get(&self, name: &str) -> Result<Option<SecretString>> {
        Ok(self
            .state
            .lock()
            .secrets
            .get(name)
            .map(|s| SecretString::new(s.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_kv() {
        let r = MemoryRepo::new();
        let a = r
            .create_user(NewUser::from_json(&json!({"email": "a@x.io"})).unwrap())
            .unwrap();
        assert!(matches!(
            r.create_user(NewUser::from_json(&json!({"email": "A@x.io"})).unwrap()),
            Err(Error::Conflict(_))
        ));
        let u = r
            .update_user(a.id, &json!({"attributes": {"plan": "pro"}}))
            .unwrap();
        assert_eq!(u.attributes["plan"], "pro");
        assert!(matches!(
            r.update_user(UserId::new(), &json!({})),
            Err(Error::NotFound(_))
        ));
        assert!(r.delete_user(a.id).unwrap());
        assert!(!r.delete_user(a.id).unwrap());
        let kinds: Vec<_> = r.lifecycle_events().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["user.created", "user.updated", "user.deleted"]);

        let f = FlowName::parse("f").unwrap();
        r.kv_set(&f, "k", &json!(1), None).unwrap();
        assert_eq!(r.kv_get(&f, "k").unwrap(), Some(json!(1)));
        assert_eq!(r.kv_get(&FlowName::parse("g").unwrap(), "k").unwrap(), None);
        assert!(r.kv_delete(&f, "k").unwrap());
        assert!(!r.kv_delete(&f, "k").unwrap());
    }
}
