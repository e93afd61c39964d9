//! [`OverlayRepo`]: reads through to real repositories but keeps every write in
//! memory and reports it, so a dry run commits nothing.

use flowgate_core::event::EmittedEvent;
use flowgate_core::repo::{KvRepo, UserRepo};
use flowgate_core::user::{NewUser, User, UserFilter, UserStatus};
use flowgate_core::{now_ms, Error, FlowName, Result, UserId};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The side effects a dry run intended (SPEC §5 dry-run `changes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Changes {
    /// `{op: create|update|set_status|delete, user, changes?}` in order.
    pub users: Vec<Value>,
    /// Key → new value (`null` when deleted).
    pub kv: Map<String, Value>,
    /// Events the run emitted.
    pub events: Vec<EmittedEvent>,
}

#[derive(Default)]
struct State {
    users: BTreeMap<UserId, Option<User>>,
    user_ops: Vec<Value>,
    kv: BTreeMap<(String, String), Option<Value>>,
    kv_order: Vec<(String, String)>,
}

/// A copy-on-write layer over a user and a key-value repository.
pub struct OverlayRepo {
    users: Arc<dyn UserRepo>,
    kv: Arc<dyn KvRepo>,
    state: Mutex<State>,
}

impl OverlayRepo {
    /// An overlay over `users` and `kv`; nothing is ever written to them.
    pub fn new(users: Arc<dyn UserRepo>, kv: Arc<dyn KvRepo>) -> Self {
        Self {
            users,
            kv,
            state: Mutex::new(State::default()),
        }
    }

    /// The writes so far, with `events` attached.
    pub fn changes(&self, events: Vec<EmittedEvent>) -> Changes {
        let st = self.state.lock();
        let mut kv = Map::new();
        for k in &st.kv_order {
            if let Some(v) = st.kv.get(k) {
                kv.insert(k.1.clone(), v.clone().unwrap_or(Value::Null));
            }
        }
        Changes {
            users: st.user_ops.clone(),
            kv,
            events,
        }
    }

    fn local(&self, id: UserId) -> Option<Option<User>> {
        self.state.lock().users.get(&id).cloned()
    }

    fn first_local(&self, pred: impl Fn(&User) -> bool) -> Option<User> {
        self.state
            .lock()
            .users
            .values()
            .flatten()
            .find(|u| pred(u))
            .cloned()
    }

    fn shadowed(&self, u: Option<User>) -> Option<User> {
        u.filter(|u| !self.state.lock().users.contains_key(&u.id))
    }

    fn put(&self, user: &User, op: &str, deleted: bool, extra: Option<Value>) {
        let mut st = self.state.lock();
        st.users
            .insert(user.id, if deleted { None } else { Some(user.clone()) });
        let mut entry = json!({"op": op, "user": user.to_json()});
        if let Some(x) = extra {
            entry["changes"] = x;
        }
        st.user_ops.push(entry);
    }
}

impl UserRepo for OverlayRepo {
    fn get_user(&self, id: UserId) -> Result<Option<User>> {
        match self.local(id) {
            Some(u) => Ok(u),
            None => self.users.get_user(id),
        }
    }

    fn find_user_by_email(&self, email: &str) -> Result<Option<User>> {
        if let Some(u) = self.first_local(|u| u.email.eq_ignore_ascii_case(email)) {
            return Ok(Some(u));
        }
        Ok(self.shadowed(self.users.find_user_by_email(email)?))
    }

    fn find_user_by_external_id(&self, system: &str, id: &str) -> Result<Option<User>> {
        if let Some(u) =
            self.first_local(|u| u.external_ids.get(system).and_then(Value::as_str) == Some(id))
        {
            return Ok(Some(u));
        }
        Ok(self.shadowed(self.users.find_user_by_external_id(system, id)?))
    }

    fn find_users(&self, filter: &UserFilter, limit: usize) -> Result<Vec<User>> {
        let extra = self.state.lock().users.len();
        let mut out: Vec<User> = self
            .users
            .find_users(filter, limit.saturating_add(extra))?
            .into_iter()
            .filter_map(|u| self.shadowed(Some(u)))
            .collect();
        out.extend(
            self.state
                .lock()
                .users
                .values()
                .flatten()
                .filter(|u| filter.matches(u))
                .cloned(),
        );
        out.sort_by_key(|u| (u.created_at, u.id));
        out.truncate(limit);
        Ok(out)
    }

    fn create_user(&self, new: NewUser) -> Result<User> {
        if self.find_user_by_email(&new.email)?.is_some() {
            return Err(Error::Conflict(format!(
                "a user with email `{}` already exists",
                new.email
            )));
        }
        let now = now_ms();
        let user = new.into_user(now);
        self.put(&user, "create", false, None);
        Ok(user)
    }

    fn update_user(&self, id: UserId, patch: &Value) -> Result<User> {
        let mut user = self
            .get_user(id)?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        let changed = user.apply_patch(patch)?;
        if let Some(other) = self.find_user_by_email(&user.email)? {
            if other.id != id {
                return Err(Error::Conflict(format!(
                    "a user with email `{}` already exists",
                    user.email
                )));
            }
        }
        user.updated_at = now_ms();
        self.put(&user, "update", false, Some(json!(changed)));
        Ok(user)
    }

    fn set_user_status(&self, id: UserId, status: UserStatus) -> Result<User> {
        let mut user = self
            .get_user(id)?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        user.status = status;
        user.updated_at = now_ms();
        self.put(&user, "set_status", false, None);
        Ok(user)
    }

    fn delete_user(&self, id: UserId) -> Result<bool> {
        match self.get_user(id)? {
            Some(u) => {
                self.put(&u, "delete", true, None);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl KvRepo for OverlayRepo {
    fn kv_get(&self, flow: &FlowName, key: &str) -> Result<Option<Value>> {
        let k = (flow.as_str().to_owned(), key.to_owned());
        if let Some(v) = self.state.lock().kv.get(&k) {
            return Ok(v.clone());
        }
        self.kv.kv_get(flow, key)
    }

    fn kv_set(&self, flow: &FlowName, key: &str, value: &Value, _ttl: Option<u64>) -> Result<()> {
        let k = (flow.as_str().to_owned(), key.to_owned());
        let mut st = self.state.lock();
        if !st.kv.contains_key(&k) {
            st.kv_order.push(k.clone());
        }
        st.kv.insert(k, Some(value.clone()));
        Ok(())
    }

    fn kv_delete(&self, flow: &FlowName, key: &str) -> Result<bool> {
        let existed = self.kv_get(flow, key)?.is_some();
        let k = (flow.as_str().to_owned(), key.to_owned());
        let mut st = self.state.lock();
        if !st.kv.contains_key(&k) {
            st.kv_order.push(k.clone());
        }
        st.kv.insert(k, None);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryRepo;

    #[test]
    fn writes_stay_in_the_overlay() {
        let base = Arc::new(MemoryRepo::new());
        let ann = base
            .seed_user(&json!({"email": "ann@example.com"}))
            .unwrap();
        let flow = FlowName::parse("f").unwrap();
        base.kv_set(&flow, "cursor", &json!(1), None).unwrap();
        let o = OverlayRepo::new(base.clone(), base.clone());

        let u = o
            .update_user(ann.id, &json!({"attributes": {"plan": "pro"}}))
            .unwrap();
        assert_eq!(u.attributes["plan"], "pro");
        assert_eq!(
            o.get_user(ann.id).unwrap().unwrap().attributes["plan"],
            "pro"
        );
        assert!(base
            .get_user(ann.id)
            .unwrap()
            .unwrap()
            .attributes
            .is_empty());
        assert!(matches!(
            o.create_user(NewUser::from_json(&json!({"email": "ANN@example.com"})).unwrap()),
            Err(Error::Conflict(_))
        ));
        o.create_user(NewUser::from_json(&json!({"email": "bob@example.com"})).unwrap())
            .unwrap();
        assert_eq!(o.find_users(&UserFilter::default(), 10).unwrap().len(), 2);
        assert_eq!(base.users().len(), 1);
        assert!(o.delete_user(ann.id).unwrap());
        assert!(o.get_user(ann.id).unwrap().is_none());
        assert!(o.find_user_by_email("ann@example.com").unwrap().is_none());

        o.kv_set(&flow, "cursor", &json!(2), None).unwrap();
        assert!(o.kv_delete(&flow, "cursor").unwrap());
        assert_eq!(o.kv_get(&flow, "cursor").unwrap(), None);
        assert_eq!(base.kv_get(&flow, "cursor").unwrap(), Some(json!(1)));

        let ch = o.changes(vec![]);
        let ops: Vec<_> = ch.users.iter().map(|u| u["op"].clone()).collect();
        assert_eq!(ops, [json!("update"), json!("create"), json!("delete")]);
        assert_eq!(ch.kv["cursor"], Value::Null);
    }
}
