//! [`InputReads`]: which of a run's input variables (`request`, `caller`,
//! `trigger`, `ctx`) a compiled script reads, and which keys of `request`.
//!
//! Found once per compile by walking the script's syntax tree, function and
//! closure bodies included. Scripts compile with strict variables and without
//! `eval`, so a variable the tree never names is never read: a run leaves it
//! `()` (still defined, so `is_def_var` answers as before), and the keys of
//! `request` a script only reads as `request.key` are the only ones built into
//! its value. Any other use of `request` (passed on, indexed, iterated, a
//! method called on it, captured by a closure) reads all of it. The run's
//! stored input is written whole either way.

use rhai::{Expr, Stmt, AST};

/// The keys of `request`, in the order of [`InputReads`]' bits.
pub const REQUEST_KEYS: [&str; 6] = ["method", "path", "params", "query", "headers", "body"];

const CALLER: u16 = 1 << 6;
const TRIGGER: u16 = 1 << 7;
const CTX: u16 = 1 << 8;
const ALL_REQUEST: u16 = (1 << 6) - 1;

/// The bits of the input variable `name` (all of `request`'s keys for
/// `request`); 0 for any other name.
fn variable_bits(name: &str) -> u16 {
    match name {
        "request" => ALL_REQUEST,
        "caller" => CALLER,
        "trigger" => TRIGGER,
        "ctx" => CTX,
        _ => 0,
    }
}

/// What a script reads of its input (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputReads(u16);

impl Default for InputReads {
    fn default() -> Self {
        Self::ALL
    }
}

impl InputReads {
    /// Everything: what a run assumes while its script's reads are not known.
    pub const ALL: Self = Self(ALL_REQUEST | CALLER | TRIGGER | CTX);
    /// Nothing.
    pub const NONE: Self = Self(0);

    /// Whether the script reads the variable `name` (true for names that are
    /// not input variables).
    pub fn variable(self, name: &str) -> bool {
        let bits = variable_bits(name);
        bits == 0 || self.0 & bits != 0
    }

    /// Whether the script reads `request.<key>` (true for keys it does not know).
    pub fn request_key(self, key: &str) -> bool {
        REQUEST_KEYS
            .iter()
            .position(|k| *k == key)
            .is_none_or(|i| self.0 & (1 << i) != 0)
    }

    /// What `ast` reads.
    pub fn of(ast: &AST) -> Self {
        let mut reads = Self::NONE;
        ast.walk(&mut |path| visit(path, &mut reads));
        reads
    }
}

/// Adds what the node at the end of `path` reads; `false` once everything is.
fn visit(path: &[rhai::ASTNode<'_>], reads: &mut InputReads) -> bool {
    let Some(node) = path.last() else {
        return true;
    };
    match node {
        rhai::ASTNode::Expr(Expr::Variable(v, ..)) if v.2.is_empty() => {
            reads.0 |= match v.1.as_str() {
                "request" => request_part(path),
                other => variable_bits(other),
            };
        }
        // Variables a closure captures are named here too.
        rhai::ASTNode::Stmt(Stmt::Share(vars)) => {
            for (ident, _) in vars.iter() {
                reads.0 |= variable_bits(&ident.name);
            }
        }
        // Rhai's walk does not enter the value of `break value`.
        rhai::ASTNode::Stmt(Stmt::BreakLoop(Some(value), ..)) => {
            let mut inner = path.to_vec();
            value.walk(&mut inner, &mut |p| visit(p, reads));
        }
        _ => {}
    }
    *reads != InputReads::ALL
}

/// The bits of `request` read where `path` (ending at a `request` variable)
/// uses it: one key for `request.key…`, all of it for anything else.
fn request_part(path: &[rhai::ASTNode<'_>]) -> u16 {
    let [.., parent, this] = path else {
        return ALL_REQUEST;
    };
    let (rhai::ASTNode::Expr(Expr::Dot(dot, ..)), rhai::ASTNode::Expr(var)) = (parent, this) else {
        return ALL_REQUEST;
    };
    if !std::ptr::eq(&dot.lhs, *var) {
        return ALL_REQUEST;
    }
    let prop = match &dot.rhs {
        Expr::Property(p, ..) => &p.2,
        Expr::Dot(x, ..) | Expr::Index(x, ..) => match &x.lhs {
            Expr::Property(p, ..) => &p.2,
            _ => return ALL_REQUEST,
        },
        _ => return ALL_REQUEST,
    };
    REQUEST_KEYS
        .iter()
        .position(|k| *k == prop.as_str())
        .map_or(0, |i| 1 << i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// What `script` reads, compiled as flows are (strict variables).
    pub(crate) fn reads(script: &str) -> InputReads {
        let mut engine = rhai::Engine::new();
        engine.set_strict_variables(true);
        let mut scope = rhai::Scope::new();
        for v in ["request", "caller", "trigger", "ctx"] {
            scope.push_dynamic(v, rhai::Dynamic::UNIT);
        }
        InputReads::of(&engine.compile_with_scope(&scope, script).unwrap())
    }

    fn keys(r: InputReads) -> Vec<&'static str> {
        REQUEST_KEYS
            .into_iter()
            .filter(|k| r.request_key(k))
            .collect()
    }

    fn vars(r: InputReads) -> Vec<&'static str> {
        ["request", "caller", "trigger", "ctx"]
            .into_iter()
            .filter(|v| r.variable(v))
            .collect()
    }

    #[test]
    fn property_reads_of_request_read_those_keys_only() {
        let r = reads(
            "let b = request.body; let n = request.body.items.len();\n\
             let h = request.headers[\"x-id\"]; `${request.method}` + b",
        );
        assert_eq!(keys(r), ["method", "headers", "body"]);
        assert_eq!(vars(r), ["request"]);
        assert_eq!(keys(reads("request.query?.page ?? 1")), ["query"]);
        assert_eq!(vars(reads("40 + 2")), Vec::<&str>::new());
    }

    #[test]
    fn any_other_use_of_request_reads_all_of_it() {
        for script in [
            "request",
            "let r = request; r.body",
            "request[\"body\"]",
            "request.keys()",
            "\"body\" in request",
            "for (k, v) in request { print(k) }",
            "to_json(request)",
            "fn f(r) { r.body } f(request)",
            "let g = || request.body; g.call()",
            "request.body; request.len()",
        ] {
            assert_eq!(keys(reads(script)), REQUEST_KEYS, "{script}");
        }
    }

    #[test]
    fn the_other_variables_are_read_wherever_they_are_named() {
        assert_eq!(vars(reads("ctx.run_id")), ["ctx"]);
        assert_eq!(
            vars(reads("fn who(c) { c.id } who(caller) + trigger.kind")),
            ["caller", "trigger"]
        );
        assert_eq!(vars(reads("let f = || ctx.attempt; f.call()")), ["ctx"]);
        assert_eq!(vars(reads("if true { #{ a: [caller] } }")), ["caller"]);
        assert_eq!(
            vars(reads("let c = loop { break ctx.attempt; }; c")),
            ["ctx"]
        );
        assert_eq!(
            keys(reads("while true { break request.query; }")),
            ["query"]
        );
        // A function's parameter of the same name counts too (a harmless overcount).
        assert_eq!(vars(reads("fn f(ctx) { ctx } f(1)")), ["ctx"]);
    }
}
