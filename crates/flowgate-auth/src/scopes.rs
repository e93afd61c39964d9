//! Scope checks: every required scope must be granted; `admin` grants all.

/// The scope that implies every other scope.
pub const ADMIN_SCOPE: &str = "admin";

/// The first required scope that was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing scope `{0}`")]
pub struct MissingScope(pub String);

impl From<MissingScope> for crate::AuthError {
    fn from(m: MissingScope) -> Self {
        Self::MissingScope(m.0)
    }
}

/// Checks that `granted` covers all of `required` (exact, case-sensitive match).
pub fn has_scopes<G, R>(granted: &[G], required: &[R]) -> Result<(), MissingScope>
where
    G: AsRef<str>,
    R: AsRef<str>,
{
    if granted.iter().any(|g| g.as_ref() == ADMIN_SCOPE) {
        return Ok(());
    }
    match required
        .iter()
        .find(|r| !granted.iter().any(|g| g.as_ref() == r.as_ref()))
    {
        Some(missing) => Err(MissingScope(missing.as_ref().to_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn all_required() {
        let granted = ["billing:read", "billing:write"];
        assert!(has_scopes(&granted, &["billing:write"]).is_ok());
        assert!(has_scopes(&granted, &[] as &[&str]).is_ok());
        assert_eq!(
            has_scopes(&granted, &["billing:write", "users:read"]),
            Err(MissingScope("users:read".into()))
        );
        assert_eq!(
            has_scopes(&[] as &[&str], &["x"]),
            Err(MissingScope("x".into()))
        );
    }

    #[test]
    fn admin_grants_all_but_nothing_else_does() {
        assert!(has_scopes(&["admin"], &["flows:publish", "keys:manage"]).is_ok());
        assert!(has_scopes(&["Admin"], &["keys:manage"]).is_err());
        assert!(has_scopes(&["billing"], &["billing:write"]).is_err());
    }
}
