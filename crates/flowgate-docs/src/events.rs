//! The event catalogue: which flows subscribe to which event types, and which
//! types flows emit (found by scanning scripts for `events::emit("type", …)`).

use serde::Serialize;
use std::collections::BTreeMap;

use crate::FlowDoc;

/// Who subscribes to and who emits one event type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventEntry {
    /// Flows with an `event` trigger on this type, by name.
    pub subscribers: Vec<String>,
    /// Flows whose script emits this type (string literal in `events::emit`).
    pub emitters: Vec<String>,
}

/// Event types by name, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventCatalogue {
    /// Type → subscribers and emitters.
    pub types: BTreeMap<String, EventEntry>,
}

/// Builds the catalogue from the given versions (normally the live ones).
pub fn event_catalogue(docs: &[FlowDoc<'_>]) -> EventCatalogue {
    let mut cat = EventCatalogue::default();
    for d in docs {
        for t in d.manifest.subscribed_events() {
            push_unique(
                &mut cat.types.entry(t.to_owned()).or_default().subscribers,
                d.flow,
            );
        }
        if let Some(src) = d.script() {
            for t in emitted_events(src) {
                push_unique(&mut cat.types.entry(t).or_default().emitters, d.flow);
            }
        }
    }
    cat
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

/// Event types emitted by a script: the first argument of every
/// `events::emit(…)` call that is a string literal (`"…"` or `` `…` ``).
///
/// A simple scan, not a parse: a type computed at run time is not found, and
/// calls inside `//` line comments and `/* */` block comments are skipped.
/// Result is sorted and without duplicates.
pub fn emitted_events(script: &str) -> Vec<String> {
    let src = strip_comments(script);
    let mut out: Vec<String> = Vec::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find("events::emit") {
        let before = &rest[..i];
        rest = &rest[i + "events::emit".len()..];
        // `myevents::emit` is another module.
        if before
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix('(') else {
            continue;
        };
        let after = after.trim_start();
        let mut chars = after.chars();
        let quote = match chars.next() {
            Some(q @ ('"' | '`')) => q,
            _ => continue,
        };
        let body = chars.as_str();
        if let Some(end) = body.find(quote) {
            let t = &body[..end];
            if !t.contains('\\') && !t.is_empty() && !out.iter().any(|x| x == t) {
                out.push(t.to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Replaces comments with spaces, leaving string literals alone.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    let mut in_str: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = in_str {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == q {
                in_str = None;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"' | '`', _) => {
                in_str = Some(c);
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testutil::package;

    #[test]
    fn finds_literal_emits_only() {
        let src = r#"
            events::emit("billing.paid", #{ id: 1 });
            events::emit( `billing.refunded` , #{});
            // events::emit("commented.out", #{});
            /* events::emit("block.comment", #{}); */
            let t = "dyn.type"; events::emit(t, #{});
            myevents::emit("other.module", #{});
            let s = "// not a comment"; events::emit("billing.paid", #{});
        "#;
        assert_eq!(
            emitted_events(src),
            vec!["billing.paid".to_owned(), "billing.refunded".to_owned()]
        );
    }

    #[test]
    fn catalogue_lists_subscribers_and_emitters() {
        let (m1, p1) = package(&[
            (
                "flow.toml",
                "name = \"a\"\n[[trigger]]\nkind = \"event\"\nevents = [\"user.created\"]\n",
            ),
            ("main.rhai", "events::emit(\"a.done\", #{});"),
        ]);
        let (m2, p2) = package(&[
            (
                "flow.toml",
                "name = \"b\"\n[[trigger]]\nkind = \"event\"\nevents = [\"a.done\", \"user.created\"]\n",
            ),
            ("main.rhai", "1"),
        ]);
        let cat = event_catalogue(&[
            FlowDoc::new("a", 1, &m1, &p1, true),
            FlowDoc::new("b", 3, &m2, &p2, true),
        ]);
        assert_eq!(cat.types["user.created"].subscribers, vec!["a", "b"]);
        assert_eq!(cat.types["a.done"].emitters, vec!["a"]);
        assert_eq!(cat.types["a.done"].subscribers, vec!["b"]);
    }
}
