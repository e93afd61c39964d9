//! The script API catalogue: every host function the engine registers, with its
//! parameters, return type and documentation, plus the variables every script sees.
//!
//! Host modules register their functions through [`ApiBuilder`], which takes the
//! documentation together with the function, so the catalogue is generated from what
//! the engine really registers (a unit test compares the two).

use rhai::{Engine, FuncRegistration, Module, RhaiNativeFunc, Variant};
use serde::Serialize;
use std::sync::OnceLock;

/// What a catalogue entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// A function scripts call.
    Function,
    /// A variable every script sees.
    Variable,
}

/// One parameter of a host function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiParam {
    /// Parameter name.
    pub name: String,
    /// Script type: `string`, `int`, `float`, `bool`, `map`, `array`, `any`.
    #[serde(rename = "type")]
    pub ty: String,
}

/// One entry of the script API catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiEntry {
    /// Name as scripts write it: `users::find_by_email`, `respond`, `request`.
    pub name: String,
    /// Namespace (`users`, `http`, …); empty for global functions and variables.
    pub namespace: String,
    /// Function or variable.
    pub kind: ApiKind,
    /// `users::find_by_email(email: string) -> map | ()`; the type for variables.
    pub signature: String,
    /// Parameters, in order (empty for variables).
    pub params: Vec<ApiParam>,
    /// Return type (the value's type for variables).
    pub returns: String,
    /// One line of documentation.
    pub doc: String,
}

impl ApiEntry {
    fn function(ns: &str, name: &str, params: &[(&str, &str)], returns: &str, doc: &str) -> Self {
        let full = if ns.is_empty() {
            name.to_owned()
        } else {
            format!("{ns}::{name}")
        };
        let params: Vec<ApiParam> = params
            .iter()
            .map(|(n, t)| ApiParam {
                name: (*n).to_owned(),
                ty: (*t).to_owned(),
            })
            .collect();
        let list = params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.ty))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            signature: format!("{full}({list}) -> {returns}"),
            name: full,
            namespace: ns.to_owned(),
            kind: ApiKind::Function,
            params,
            returns: returns.to_owned(),
            doc: doc.to_owned(),
        }
    }

    fn variable(name: &str, ty: &str, doc: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: String::new(),
            kind: ApiKind::Variable,
            signature: format!("{name}: {ty}"),
            params: Vec::new(),
            returns: ty.to_owned(),
            doc: doc.to_owned(),
        }
    }
}

/// Registers host functions on an engine together with their documentation.
pub struct ApiBuilder<'e> {
    engine: &'e mut Engine,
    entries: Vec<ApiEntry>,
}

impl<'e> ApiBuilder<'e> {
    /// A builder registering into `engine`.
    pub fn new(engine: &'e mut Engine) -> Self {
        Self {
            engine,
            entries: Vec::new(),
        }
    }

    /// Starts a namespace (`""` for global functions); it is installed when dropped.
    pub fn namespace(&mut self, ns: &'static str) -> NamespaceBuilder<'_, 'e> {
        NamespaceBuilder {
            builder: self,
            ns,
            module: Module::new(),
        }
    }

    /// The documented entries registered so far.
    pub fn into_entries(self) -> Vec<ApiEntry> {
        self.entries
    }
}

/// Functions of one namespace; installed on the engine when dropped.
pub struct NamespaceBuilder<'b, 'e> {
    builder: &'b mut ApiBuilder<'e>,
    ns: &'static str,
    module: Module,
}

impl NamespaceBuilder<'_, '_> {
    /// Registers `f` as `ns::name` with its parameters (`(name, type)`), return
    /// type and one line of documentation. Host functions are volatile: the
    /// optimizer never evaluates them at compile time.
    pub fn function<A, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        name: &str,
        params: &[(&str, &str)],
        returns: &str,
        doc: &str,
        f: FUNC,
    ) -> &mut Self
    where
        A: 'static,
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    {
        debug_assert_eq!(params.len(), N, "{}::{name}: parameter docs", self.ns);
        let reg = FuncRegistration::new(name).with_volatility(true);
        if self.ns.is_empty() {
            reg.register_into_engine(self.builder.engine, f);
        } else {
            reg.in_internal_namespace()
                .set_into_module(&mut self.module, f);
        }
        self.builder
            .entries
            .push(ApiEntry::function(self.ns, name, params, returns, doc));
        self
    }
}

impl Drop for NamespaceBuilder<'_, '_> {
    fn drop(&mut self) {
        if !self.ns.is_empty() {
            let module = std::mem::take(&mut self.module);
            self.builder
                .engine
                .register_static_module(self.ns, module.into());
        }
    }
}

/// The variables every script sees (SPEC §4).
pub fn script_variables() -> Vec<ApiEntry> {
    vec![
        ApiEntry::variable(
            "request",
            "map",
            "The HTTP request: method, path, params, query, headers, body (() for event and schedule runs).",
        ),
        ApiEntry::variable(
            "caller",
            "map",
            "Who called: kind (api_key, jwt, signature, anonymous, event, schedule), id, scopes.",
        ),
        ApiEntry::variable(
            "trigger",
            "map",
            "What started the run: kind (http, webhook, event, schedule), plus event or scheduled_at.",
        ),
        ApiEntry::variable(
            "ctx",
            "map",
            "The run: flow, version, run_id, request_id, attempt.",
        ),
    ]
}

/// The whole script API: variables first, then every registered host function in
/// registration order.
pub fn script_api_catalogue() -> Vec<ApiEntry> {
    static CATALOGUE: OnceLock<Vec<ApiEntry>> = OnceLock::new();
    CATALOGUE
        .get_or_init(|| {
            let engine = crate::engine::RhaiEngine::new(
                &crate::config::SandboxLimits::default(),
                &crate::host::standard_modules(),
            );
            let mut all = script_variables();
            all.extend(engine.api().iter().cloned());
            all
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxLimits;
    use crate::engine::RhaiEngine;
    use rhai::{Array, Dynamic, ImmutableString, Map, FLOAT, INT};
    use std::any::TypeId;

    fn script_type(t: TypeId) -> &'static str {
        if t == TypeId::of::<ImmutableString>() || t == TypeId::of::<String>() {
            "string"
        } else if t == TypeId::of::<INT>() {
            "int"
        } else if t == TypeId::of::<FLOAT>() {
            "float"
        } else if t == TypeId::of::<bool>() {
            "bool"
        } else if t == TypeId::of::<Map>() {
            "map"
        } else if t == TypeId::of::<Array>() {
            "array"
        } else if t == TypeId::of::<Dynamic>() {
            "any"
        } else {
            "unknown"
        }
    }

    /// Every function the engine really registers (outside Rhai's standard
    /// library) has a catalogue entry with the same namespace, name and parameter
    /// types, and a line of documentation; and every entry is registered.
    #[test]
    fn every_registered_host_function_is_documented() {
        let engine = RhaiEngine::new(&SandboxLimits::default(), &crate::host::standard_modules());
        let registered: Vec<(String, String, Vec<&'static str>)> =
            engine.rhai().collect_fn_metadata(
                None,
                |info| {
                    Some((
                        info.namespace.to_string(),
                        info.metadata.name.to_string(),
                        info.metadata
                            .param_types
                            .iter()
                            .map(|t| script_type(*t))
                            .collect(),
                    ))
                },
                false,
            );
        assert!(registered.len() > 30, "{registered:?}");
        let catalogue = script_api_catalogue();
        let key = |e: &ApiEntry| {
            let short = e.name.rsplit("::").next().unwrap_or_default().to_owned();
            let types: Vec<&str> = e.params.iter().map(|p| p.ty.as_str()).collect();
            (e.namespace.clone(), short, types.join(","))
        };
        let documented: Vec<_> = catalogue
            .iter()
            .filter(|e| e.kind == ApiKind::Function)
            .map(key)
            .collect();
        for (ns, name, types) in &registered {
            let k = (ns.clone(), name.clone(), types.join(","));
            assert!(
                documented.contains(&k),
                "host function {ns}::{name}({}) is registered without documentation",
                types.join(", ")
            );
        }
        for e in catalogue.iter().filter(|e| e.kind == ApiKind::Function) {
            let (ns, name, types) = key(e);
            assert!(
                registered
                    .iter()
                    .any(|(n, f, t)| *n == ns && *f == name && t.join(",") == types),
                "{} is documented but not registered",
                e.signature
            );
        }
        for e in &catalogue {
            assert!(
                !e.doc.trim().is_empty() && !e.doc.contains('\n'),
                "{}: needs one line of documentation",
                e.name
            );
            assert!(e.params.iter().all(|p| !p.name.is_empty()), "{}", e.name);
        }
    }

    #[test]
    fn catalogue_shape() {
        let all = script_api_catalogue();
        let find = |n: &str| all.iter().find(|e| e.name == n).cloned();
        let f = find("users::find_by_email").unwrap();
        assert_eq!(
            f.signature,
            "users::find_by_email(email: string) -> map | ()"
        );
        assert_eq!(f.namespace, "users");
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["kind"], "function");
        assert_eq!(v["params"][0]["type"], "string");
        for name in ["request", "caller", "trigger", "ctx"] {
            assert_eq!(find(name).unwrap().kind, ApiKind::Variable, "{name}");
        }
        for name in ["respond", "fail", "log::info", "http::get", "events::emit"] {
            assert!(find(name).is_some(), "{name}");
        }
    }
}
