//! The partner documentation site, rendered server-side as self-contained HTML:
//! inline CSS, no scripts, fonts or other external assets, so it works offline.
//! Every text that comes from a flow package is escaped.
//!
//! Pages and where the gateway serves them:
//! - [`docs_index_html`] at `GET /docs`: every live flow and the event catalogue;
//! - [`docs_version_html`] at `GET /docs/flows/{flow}/v{n}`: one version, rendered
//!   from its OpenAPI document (as returned by [`crate::flow_version_openapi`]).
//!
//! Links point at `/docs/flows/{flow}/v{n}`, `/openapi/flows/{flow}/v{n}.json`
//! and `/openapi.json` on the same server.

use flowgate_core::manifest::{AuthMode, EndpointTrigger};
use serde_json::Value;
use std::fmt::Write as _;

use crate::compat::{Change, CompatReport};
use crate::events::EventCatalogue;
use crate::openapi::{authn, Authn};
use crate::FlowDoc;

/// One row of the index: a flow's live version and its published versions.
#[derive(Debug, Clone)]
pub struct FlowSummary<'a> {
    /// The live version.
    pub live: FlowDoc<'a>,
    /// Published version numbers that are callable at their pinned URL
    /// (including the live one), in any order.
    pub versions: Vec<i64>,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn e(s: &str) -> String {
    escape_html(s)
}

const CSS: &str = "
:root{--fg:#1d2330;--muted:#5b6474;--line:#dde1e8;--bg:#f7f8fa;--accent:#2f5bd3}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:#fff}
header{background:var(--fg);color:#fff;padding:12px 24px}
header a{color:#fff;margin-right:16px}
main{max-width:1040px;margin:0 auto;padding:16px 24px 48px}
a{color:var(--accent)}
h1{font-size:26px;margin:16px 0 4px}
h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}
.muted{color:var(--muted)}
.desc{white-space:pre-wrap}
.card{border:1px solid var(--line);border-radius:6px;padding:12px 16px;margin:12px 0;background:#fff}
.op{border:1px solid var(--line);border-radius:6px;padding:4px 16px 12px;margin:20px 0}
.method{display:inline-block;min-width:64px;text-align:center;border-radius:4px;padding:1px 8px;
  font:600 13px/1.6 ui-monospace,Menlo,Consolas,monospace;color:#fff;background:#555}
.m-get{background:#2e7d32}.m-post{background:#1565c0}.m-put{background:#8d5a00}
.m-patch{background:#6a3fb5}.m-delete{background:#b71c1c}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:var(--bg);
  border:1px solid var(--line);margin-left:6px;vertical-align:middle}
.live{background:#e6f4ea;border-color:#a5d6a7}
.breaking{background:#fdecea;border-color:#f5b7b1}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:8px 12px;overflow:auto;max-height:480px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border-bottom:1px solid var(--line);text-align:left;padding:4px 8px;vertical-align:top}
th{background:var(--bg);font-weight:600}
ul.plain{list-style:none;padding:0;margin:4px 0}
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <header><a href=\"/docs\">API flows</a><a href=\"/openapi.json\">openapi.json</a></header>\n\
         <main>\n{body}</main>\n</body>\n</html>\n",
        e(title)
    )
}

fn method_badge(m: &str) -> String {
    format!(
        "<span class=\"method m-{}\">{}</span>",
        e(&m.to_ascii_lowercase()),
        e(&m.to_ascii_uppercase())
    )
}

fn auth_text(doc: &FlowDoc<'_>, ep: &EndpointTrigger) -> String {
    match authn(doc, ep) {
        Authn::Signature(s) => format!("webhook signature ({})", s.scheme.as_str()),
        Authn::Mode(AuthMode::None) => "none (anonymous callers allowed)".into(),
        Authn::Mode(m) => {
            let mut t = match m {
                AuthMode::ApiKey => "API key (X-API-Key or Authorization: Bearer)".to_owned(),
                AuthMode::OAuth2 => "OAuth2 bearer JWT".to_owned(),
                _ => "API key or OAuth2 bearer JWT".to_owned(),
            };
            if !doc.manifest.auth.scopes.is_empty() {
                t.push_str("; scopes: ");
                t.push_str(&doc.manifest.auth.scopes.join(", "));
            }
            t
        }
    }
}

fn rate_text(doc: &FlowDoc<'_>) -> String {
    let l = &doc.manifest.limits;
    match &l.rate {
        Some(r) => format!("{} per caller, burst {}", r.raw, l.burst.unwrap_or(r.count)),
        None => "no rate limit".into(),
    }
}

fn version_href(flow: &str, v: i64) -> String {
    format!("/docs/flows/{}/v{v}", e(flow))
}

/// The index page (`GET /docs`): every live flow with its operations, auth,
/// limits and version links, then the event catalogue.
pub fn docs_index_html(flows: &[FlowSummary<'_>], events: &EventCatalogue) -> String {
    let mut b = String::new();
    b.push_str("<h1>API flows</h1>\n<p class=\"muted\">Every live flow. Each published version stays callable at <code>/flows/{flow}/v{n}{path}</code>. The whole API as one document: <a href=\"/openapi.json\">openapi.json</a>.</p>\n");
    if flows.is_empty() {
        b.push_str("<p>No flows are live.</p>\n");
    }
    for f in flows {
        let d = &f.live;
        let _ = write!(
            b,
            "<div class=\"card\" id=\"flow-{}\">\n<h2><a href=\"{}\">{}</a> <span class=\"badge\">{}</span><span class=\"badge live\">live v{}</span></h2>\n",
            e(d.flow),
            version_href(d.flow, d.version),
            e(d.title()),
            e(d.flow),
            d.version
        );
        if let Some(desc) = &d.manifest.description {
            let _ = writeln!(b, "<p class=\"desc\">{}</p>", e(desc));
        }
        let eps: Vec<_> = d.manifest.endpoints().collect();
        if !eps.is_empty() {
            b.push_str("<table><tr><th>Operation</th><th>Auth</th><th>Mode</th></tr>\n");
            for (_, ep) in &eps {
                let _ = writeln!(
                    b,
                    "<tr><td>{} <code>/flows/{}{}</code></td><td>{}</td><td>{}</td></tr>",
                    method_badge(&ep.method),
                    e(d.flow),
                    e(ep.path.as_str()),
                    e(&auth_text(d, ep)),
                    if ep.mode == flowgate_core::manifest::RunMode::Sync {
                        "sync"
                    } else {
                        "async (202)"
                    }
                );
            }
            b.push_str("</table>\n");
            let _ = writeln!(
                b,
                "<p>Limits: {}; timeout {} ms; body up to {} bytes.</p>",
                e(&rate_text(d)),
                d.manifest.limits.timeout_ms,
                d.manifest.limits.max_body_bytes
            );
        }
        let subs = d.manifest.subscribed_events();
        if !subs.is_empty() {
            let _ = writeln!(
                b,
                "<p>Runs on events: {}</p>",
                subs.iter()
                    .map(|s| format!("<code>{}</code>", e(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(s) = d.manifest.schedule() {
            let _ = writeln!(
                b,
                "<p>Runs on schedule <code>{}</code> ({})</p>",
                e(&s.cron),
                e(&s.timezone)
            );
        }
        let mut versions = f.versions.clone();
        if !versions.contains(&d.version) {
            versions.push(d.version);
        }
        versions.sort_unstable();
        versions.dedup();
        b.push_str("<p>Versions: ");
        let links: Vec<String> = versions
            .iter()
            .map(|v| {
                format!(
                    "<a href=\"{}\">v{v}</a> (<a href=\"/openapi/flows/{}/v{v}.json\">OpenAPI</a>)",
                    version_href(d.flow, *v),
                    e(d.flow)
                )
            })
            .collect();
        b.push_str(&links.join(", "));
        b.push_str("</p>\n</div>\n");
    }

    b.push_str("<h2 id=\"events\">Event types</h2>\n");
    if events.types.is_empty() {
        b.push_str("<p>No live flow subscribes to or emits events.</p>\n");
    } else {
        b.push_str("<p class=\"muted\">Emitters are found in the scripts' <code>events::emit(\"type\", …)</code> calls with a literal type.</p>\n");
        b.push_str("<table><tr><th>Type</th><th>Subscribed by</th><th>Emitted by</th></tr>\n");
        let link = |flow: &str| -> String {
            match flows.iter().find(|f| f.live.flow == flow) {
                Some(f) => format!(
                    "<a href=\"{}\">{}</a>",
                    version_href(flow, f.live.version),
                    e(flow)
                ),
                None => e(flow),
            }
        };
        for (t, entry) in &events.types {
            let subs: Vec<String> = entry.subscribers.iter().map(|f| link(f)).collect();
            let ems: Vec<String> = entry.emitters.iter().map(|f| link(f)).collect();
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                e(t),
                if subs.is_empty() {
                    "—".into()
                } else {
                    subs.join(", ")
                },
                if ems.is_empty() {
                    "—".into()
                } else {
                    ems.join(", ")
                }
            );
        }
        b.push_str("</table>\n");
    }
    page("API flows", &b)
}

/// Follows a local `$ref` (`#/…`) within `root`, keeping a sibling
/// `description` of the reference (OpenAPI 3.1 override).
fn resolve<'v>(root: &'v Value, v: &'v Value) -> (&'v Value, Option<&'v str>) {
    let override_desc = v.get("description").and_then(Value::as_str);
    let mut cur = v;
    for _ in 0..8 {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => match root.pointer(&r[1..]) {
                Some(t) => cur = t,
                None => break,
            },
            _ => break,
        }
    }
    (cur, override_desc)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn pre_json(v: &Value) -> String {
    format!("<pre>{}</pre>\n", e(&pretty(v)))
}

/// Schema display: a `$ref` to a component is shown resolved, with its name.
fn schema_block(root: &Value, schema: &Value) -> String {
    let mut out = String::new();
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let _ = writeln!(
            out,
            "<p class=\"muted\">Schema <code>{}</code></p>",
            e(name)
        );
    }
    let (s, _) = resolve(root, schema);
    if s.as_object().is_some_and(|o| o.is_empty()) {
        out.push_str("<p class=\"muted\">Any JSON value (no schema).</p>\n");
    } else {
        out.push_str(&pre_json(s));
    }
    out
}

fn examples_block(media: &Value) -> String {
    let mut out = String::new();
    if let Some(ex) = media.get("examples").and_then(Value::as_object) {
        for (name, x) in ex {
            let summary = x.get("summary").and_then(Value::as_str).unwrap_or("");
            let _ = writeln!(
                out,
                "<h4>Example <code>{}</code> <span class=\"muted\">{}</span></h4>",
                e(name),
                e(summary)
            );
            if let Some(d) = x.get("description").and_then(Value::as_str) {
                let _ = writeln!(out, "<p class=\"muted\">{}</p>", e(d));
            }
            if let Some(v) = x.get("value") {
                out.push_str(&pre_json(v));
            }
        }
    }
    out
}

fn changes_table(title: &str, class: &str, changes: &[Change]) -> String {
    let mut out = format!("<h3>{}</h3>\n", e(title));
    if changes.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n");
        return out;
    }
    let _ = writeln!(
        out,
        "<table class=\"{class}\"><tr><th>Change</th><th>Where</th><th>Detail</th></tr>"
    );
    for c in changes {
        let kind = serde_json::to_value(c.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            e(&kind),
            e(&c.location),
            e(&c.detail)
        );
    }
    out.push_str("</table>\n");
    out
}

/// The page of one version (`GET /docs/flows/{flow}/v{n}`): operations,
/// parameters, request and response schemas, examples, problem responses,
/// security, limits, triggers, and the compatibility report when given
/// (normally against the live version).
pub fn docs_version_html(
    doc: &FlowDoc<'_>,
    openapi: &Value,
    compat: Option<&CompatReport>,
) -> String {
    let m = doc.manifest;
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<h1>{} <span class=\"badge\">{}</span><span class=\"badge{}\">v{}{}</span></h1>",
        e(doc.title()),
        e(doc.flow),
        if doc.live { " live" } else { "" },
        doc.version,
        if doc.live { " · live" } else { "" }
    );
    if let Some(d) = &m.description {
        let _ = writeln!(b, "<p class=\"desc\">{}</p>", e(d));
    }
    let _ = writeln!(
        b,
        "<p><a href=\"/openapi/flows/{}/v{}.json\">OpenAPI 3.1 document of this version</a></p>",
        e(doc.flow),
        doc.version
    );

    // Overview: limits, auth, non-HTTP triggers.
    b.push_str("<h2>Overview</h2>\n<table>\n");
    let _ = writeln!(
        b,
        "<tr><th>Rate limit</th><td>{}</td></tr>",
        e(&rate_text(doc))
    );
    let _ = writeln!(
        b,
        "<tr><th>Timeout</th><td>{} ms per run</td></tr>",
        m.limits.timeout_ms
    );
    let _ = writeln!(
        b,
        "<tr><th>Maximum body</th><td>{} bytes</td></tr>",
        m.limits.max_body_bytes
    );
    let _ = writeln!(
        b,
        "<tr><th>Auth</th><td>{}{}</td></tr>",
        e(m.auth.mode.as_str()),
        if m.auth.scopes.is_empty() {
            String::new()
        } else {
            format!("; scopes required: {}", e(&m.auth.scopes.join(", ")))
        }
    );
    let subs = m.subscribed_events();
    if !subs.is_empty() {
        let _ = writeln!(
            b,
            "<tr><th>Events</th><td>{}</td></tr>",
            subs.iter()
                .map(|s| format!("<code>{}</code>", e(s)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(s) = m.schedule() {
        let _ = writeln!(
            b,
            "<tr><th>Schedule</th><td><code>{}</code> ({})</td></tr>",
            e(&s.cron),
            e(&s.timezone)
        );
    }
    if let Some(src) = doc.script() {
        let emits = crate::events::emitted_events(src);
        if !emits.is_empty() {
            let _ = writeln!(
                b,
                "<tr><th>Emits</th><td>{}</td></tr>",
                emits
                    .iter()
                    .map(|s| format!("<code>{}</code>", e(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    b.push_str("</table>\n");

    // Operations, from the OpenAPI document.
    let paths = openapi.get("paths").and_then(Value::as_object);
    let no_ops = paths.is_none_or(|p| p.is_empty());
    b.push_str("<h2>Operations</h2>\n");
    if no_ops {
        b.push_str(
            "<p>This flow has no HTTP endpoint; it runs on events or on its schedule.</p>\n",
        );
    }
    for (path, item) in paths.into_iter().flatten() {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            render_operation(&mut b, openapi, path, method, op);
        }
    }

    if let Some(p) = openapi.pointer("/components/schemas/Problem") {
        b.push_str("<h2>Problem responses</h2>\n<p>Every error is <code>application/problem+json</code>:</p>\n");
        b.push_str(&pre_json(p));
    }

    if let Some(c) = compat {
        b.push_str("<h2>Compatibility report</h2>\n");
        b.push_str(&changes_table("Breaking changes", "breaking", &c.breaking));
        b.push_str(&changes_table("Other changes", "", &c.non_breaking));
    }

    page(&format!("{} v{}", doc.title(), doc.version), &b)
}

fn render_operation(b: &mut String, root: &Value, path: &str, method: &str, op: &Value) {
    let id = op.get("operationId").and_then(Value::as_str).unwrap_or("");
    let _ = writeln!(
        b,
        "<section class=\"op\" id=\"{}\">\n<h3>{} <code>{}</code></h3>",
        e(id),
        method_badge(method),
        e(path)
    );
    if let Some(d) = op.get("description").and_then(Value::as_str) {
        let _ = writeln!(b, "<p class=\"desc\">{}</p>", e(d));
    }
    let _ = writeln!(
        b,
        "<p class=\"muted\">operationId <code>{}</code></p>",
        e(id)
    );

    // Security.
    match op.get("security").and_then(Value::as_array) {
        Some(reqs) if reqs.is_empty() => b.push_str("<p>Security: none.</p>\n"),
        Some(reqs) => {
            let alts: Vec<String> = reqs
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|o| o.keys())
                .map(|name| {
                    let def = root.pointer(&format!("/components/securitySchemes/{name}"));
                    let how = def.map_or_else(String::new, |d| {
                        match (
                            d.get("in").and_then(Value::as_str),
                            d.get("name").and_then(Value::as_str),
                        ) {
                            (Some("header"), Some(h)) => format!(" (header <code>{}</code>)", e(h)),
                            _ => match d.get("bearerFormat").and_then(Value::as_str) {
                                Some(f) => {
                                    format!(" (<code>Authorization: Bearer</code> {})", e(f))
                                }
                                None => " (<code>Authorization: Bearer</code>)".into(),
                            },
                        }
                    });
                    format!("<code>{}</code>{how}", e(name))
                })
                .collect();
            let _ = writeln!(b, "<p>Security (any one of): {}</p>", alts.join(" or "));
            if let Some(sc) = op.get("x-required-scopes").and_then(Value::as_array) {
                let s: Vec<String> = sc
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| format!("<code>{}</code>", e(s)))
                    .collect();
                let _ = writeln!(b, "<p>Required scopes (all): {}</p>", s.join(", "));
            }
        }
        None => {}
    }

    // Parameters.
    if let Some(params) = op.get("parameters").and_then(Value::as_array) {
        b.push_str("<h4>Parameters</h4>\n<table><tr><th>Name</th><th>In</th><th>Required</th><th>Schema</th><th>Description</th></tr>\n");
        for p in params {
            let (p, _) = resolve(root, p);
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
            let schema = p.get("schema").map(|s| s.to_string()).unwrap_or_default();
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                e(s("name")),
                e(s("in")),
                if p.get("required").and_then(Value::as_bool) == Some(true) { "yes" } else { "no" },
                e(&schema),
                e(s("description"))
            );
        }
        b.push_str("</table>\n");
    }

    // Request body.
    if let Some(rb) = op.get("requestBody") {
        let (rb, _) = resolve(root, rb);
        let required = rb.get("required").and_then(Value::as_bool) == Some(true);
        let _ = writeln!(
            b,
            "<h4>Request body{}</h4>",
            if required {
                " (required)"
            } else {
                " (optional)"
            }
        );
        if let Some(d) = rb.get("description").and_then(Value::as_str) {
            let _ = writeln!(b, "<p>{}</p>", e(d));
        }
        for (ct, media) in rb
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let _ = writeln!(b, "<p><code>{}</code></p>", e(ct));
            if let Some(s) = media.get("schema") {
                b.push_str(&schema_block(root, s));
            }
            b.push_str(&examples_block(media));
        }
    }

    // Responses.
    if let Some(rs) = op.get("responses").and_then(Value::as_object) {
        b.push_str("<h4>Responses</h4>\n<table><tr><th>Status</th><th>Description</th><th>Content</th><th>Headers</th></tr>\n");
        for (status, r) in rs {
            let (res, over) = resolve(root, r);
            let desc = over
                .or_else(|| res.get("description").and_then(Value::as_str))
                .unwrap_or("");
            let cts: Vec<String> = res
                .get("content")
                .and_then(Value::as_object)
                .map(|c| c.keys().map(|k| format!("<code>{}</code>", e(k))).collect())
                .unwrap_or_default();
            let hs: Vec<String> = res
                .get("headers")
                .and_then(Value::as_object)
                .map(|h| h.keys().map(|k| format!("<code>{}</code>", e(k))).collect())
                .unwrap_or_default();
            let _ = writeln!(
                b,
                "<tr><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(status),
                e(desc),
                cts.join(" "),
                hs.join(" ")
            );
        }
        b.push_str("</table>\n");
        // Success schemas and every example.
        for (status, r) in rs {
            let (res, _) = resolve(root, r);
            let is_success = status.starts_with('2');
            for (ct, media) in res
                .get("content")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let ex = examples_block(media);
                if !is_success && ex.is_empty() {
                    continue;
                }
                let _ = writeln!(b, "<h4>{} <code>{}</code></h4>", e(status), e(ct));
                if is_success {
                    if let Some(s) = media.get("schema") {
                        b.push_str(&schema_block(root, s));
                    }
                }
                b.push_str(&ex);
            }
        }
    }
    b.push_str("</section>\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testutil::package;
    use crate::{event_catalogue, flow_version_openapi};

    #[test]
    fn escapes_everything() {
        assert_eq!(
            escape_html("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn manifest_text_cannot_inject_html() {
        let evil = "<script>alert(1)</script>";
        let toml = format!(
            "name = \"x\"\ntitle = \"{evil}\"\ndescription = \"<img src=x onerror=alert(2)>\"\n\
             [[trigger]]\nkind = \"http\"\n[auth]\nscopes = [\"a\"]\n"
        );
        let (m, p) = package(&[
            ("flow.toml", &toml),
            ("main.rhai", "events::emit(\"a.<b>\", #{}); 1"),
            (
                "tests/x.json",
                r#"{"name": "<i>n</i>", "request": {"query": {"<q>": "1"}, "body": {"k": "</pre><script>"}}}"#,
            ),
        ]);
        let d = FlowDoc::new("x", 1, &m, &p, true);
        let api = flow_version_openapi(&d, "http://h");
        let page = docs_version_html(&d, &api, None);
        let index = docs_index_html(
            &[FlowSummary {
                live: d,
                versions: vec![1],
            }],
            &event_catalogue(&[d]),
        );
        for html in [&page, &index] {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<i>"), "{html}");
            assert!(!html.contains("<q>"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;/pre&gt;&lt;script&gt;"));
        assert!(index.contains("a.&lt;b&gt;"));
    }

    #[test]
    fn pages_are_self_contained() {
        let (m, p) = package(&[
            ("flow.toml", "name = \"x\"\n[[trigger]]\nkind = \"http\"\n"),
            ("main.rhai", "1"),
        ]);
        let d = FlowDoc::new("x", 3, &m, &p, false);
        let api = flow_version_openapi(&d, "http://h");
        let page = docs_version_html(&d, &api, Some(&CompatReport::default()));
        for html in [&page, &docs_index_html(&[], &EventCatalogue::default())] {
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{html}"
            );
            assert!(
                !html.contains("<script")
                    && !html
                        .replace("<link rel=\"icon\" href=\"data:,\">", "")
                        .contains("<link"),
                "{html}"
            );
        }
        assert!(page.contains("Compatibility report"));
        assert!(page.contains("/openapi/flows/x/v3.json"));
    }
}
