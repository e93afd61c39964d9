//! Sample flow packages shared by the integration tests.
#![allow(dead_code, clippy::expect_used)]

use flowgate_core::{FlowPackage, Manifest};
use flowgate_docs::FlowDoc;

/// A sample version: name, number, manifest and files.
pub struct Sample {
    pub flow: &'static str,
    pub version: i64,
    pub manifest: Manifest,
    pub package: FlowPackage,
}

impl Sample {
    pub fn doc(&self, live: bool) -> FlowDoc<'_> {
        FlowDoc::new(self.flow, self.version, &self.manifest, &self.package, live)
    }
}

pub fn sample(flow: &'static str, version: i64, files: &[(&str, &str)]) -> Sample {
    let package = FlowPackage {
        files: files
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect(),
    };
    let parsed = package.parse().expect("sample package parses");
    Sample {
        flow,
        version,
        manifest: parsed.manifest,
        package: parsed.package,
    }
}

/// HTTP flow with input/output schemas, fixtures (success, validation failure,
/// `fail(402)`, a GET with query parameters), api_key auth with a scope, a rate limit.
pub fn upgrade_plan() -> Sample {
    sample(
        "upgrade-plan",
        3,
        &[
            (
                "flow.toml",
                r#"name = "upgrade-plan"
title = "Upgrade a customer's plan"
description = "Moves the customer to a paid plan once billing confirms."

[[trigger]]
kind = "http"
method = "POST"
path = "/customers/{customer_id}"

[[trigger]]
kind = "http"
method = "GET"
path = "/customers/{customer_id}"

[auth]
mode = "api_key"
scopes = ["billing:write"]

[limits]
rate = "600/minute"
burst = 50
timeout_ms = 3000
max_body_bytes = 65536
"#,
            ),
            (
                "main.rhai",
                r#"let u = users::get(request.params.customer_id);
if u == () { fail(404, "unknown_customer", "no such customer"); }
if request.method == "POST" {
    if request.body.plan == "gold" { fail(402, "payment_required", "gold needs a card"); }
    users::update(u.id, #{ attributes: #{ plan: request.body.plan } });
    events::emit("billing.plan_upgraded", #{ id: u.id, plan: request.body.plan });
}
#{ id: u.id, plan: request.body.plan, status: "active" }
"#,
            ),
            (
                "input.schema.json",
                r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["plan"],
  "additionalProperties": false,
  "properties": {
    "plan": {"$ref": "#/$defs/plan"},
    "seats": {"type": "integer", "minimum": 1, "maximum": 500}
  },
  "$defs": {"plan": {"type": "string", "enum": ["free", "pro", "gold"]}}
}"##,
            ),
            (
                "output.schema.json",
                r#"{
  "type": "object",
  "required": ["id", "plan", "status"],
  "properties": {
    "id": {"type": "string"},
    "plan": {"type": "string"},
    "status": {"type": "string", "enum": ["active", "suspended", "disabled"]}
  }
}"#,
            ),
            (
                "tests/paid.json",
                r#"{
  "name": "paid invoice upgrades the plan",
  "trigger": {"kind": "http"},
  "request": {"method": "POST", "path": "/customers/u1", "body": {"plan": "pro", "seats": 3}},
  "expect": {"status": 200, "body": {"id": "u1", "plan": "pro", "status": "active"}}
}"#,
            ),
            (
                "tests/bad-plan.json",
                r#"{
  "name": "an unknown plan is refused",
  "trigger": {"kind": "http"},
  "request": {"method": "POST", "path": "/customers/u1", "body": {"plan": "platinum"}},
  "expect": {"status": 422, "body": {"code": "validation_failed", "errors": [{"pointer": "/plan", "detail": "not one of the allowed values"}]}}
}"#,
            ),
            (
                "tests/gold.json",
                r#"{
  "name": "gold needs a card on file",
  "trigger": {"kind": "http"},
  "request": {"method": "POST", "path": "/customers/u1", "body": {"plan": "gold"}},
  "expect": {"status": 402, "body": {"code": "payment_required", "detail": "gold needs a card"}}
}"#,
            ),
            (
                "tests/lookup.json",
                r#"{
  "name": "reads the current plan",
  "trigger": {"kind": "http"},
  "request": {"method": "GET", "path": "/customers/u1", "query": {"expand": "plan", "locale": "nl"}},
  "expect": {"body": {"id": "u1", "plan": "pro", "status": "active"}}
}"#,
            ),
            (
                "tests/on-event.json",
                r#"{"name": "not an http fixture", "trigger": {"kind": "event", "event": {"type": "x.y"}}}"#,
            ),
        ],
    )
}

/// Async webhook with a Standard Webhooks signature and a path parameter.
pub fn payment_webhook() -> Sample {
    sample(
        "payment-webhook",
        1,
        &[
            (
                "flow.toml",
                r#"name = "payment-webhook"
title = "Payment provider notifications"
description = "Marks the customer's plan as paid when the provider confirms a payment."

[[trigger]]
kind = "webhook"
path = "/invoices/{invoice_id}"
signature = { scheme = "standard-webhooks", secret = "PAYMENTS_WEBHOOK_SECRET" }

[[trigger]]
kind = "event"
events = ["billing.plan_upgraded"]

[limits]
rate = "10/second"
"#,
            ),
            ("main.rhai", "log::info(\"paid\"); #{ ok: true }"),
            (
                "input.schema.json",
                r#"{"type": "object", "required": ["type", "data"], "properties": {
  "type": {"type": "string"}, "data": {"type": "object"}}}"#,
            ),
            (
                "tests/paid.json",
                r#"{
  "name": "payment succeeded",
  "trigger": {"kind": "webhook"},
  "request": {"method": "POST", "path": "/invoices/in_1", "body": {"type": "payment.succeeded", "data": {"amount": 1200}}},
  "expect": {"status": 200, "body": {"ok": true}}
}"#,
            ),
        ],
    )
}

/// Webhooks signed with Stripe, GitHub and generic HMAC, no schemas.
pub fn provider_hooks() -> Sample {
    sample(
        "provider-hooks",
        2,
        &[
            (
                "flow.toml",
                r#"name = "provider-hooks"
title = "Provider hooks"

[[trigger]]
kind = "webhook"
path = "/stripe"
signature = { scheme = "stripe", secret = "STRIPE_SECRET" }

[[trigger]]
kind = "webhook"
path = "/github"
mode = "sync"
signature = { scheme = "github", secret = "GITHUB_SECRET" }

[[trigger]]
kind = "webhook"
path = "/crm"
method = "PUT"
signature = { scheme = "hmac-sha256", secret = "CRM_SECRET", header = "X-Crm-Signature", encoding = "base64", prefix = "sha256=" }
"#,
            ),
            ("main.rhai", "events::emit(\"crm.synced\", #{}); 1"),
            (
                "tests/push.json",
                r#"{"name": "a push", "trigger": {"kind": "webhook"},
  "request": {"method": "POST", "path": "/github", "body": "plain text body"},
  "expect": {"status": 202, "body": {"queued": true}}}"#,
            ),
        ],
    )
}

/// OAuth2-only HTTP flow with scopes, PATCH.
pub fn oauth_flow() -> Sample {
    sample(
        "profile-sync",
        1,
        &[
            (
                "flow.toml",
                r#"name = "profile-sync"
[[trigger]]
kind = "http"
method = "PATCH"
[auth]
mode = "oauth2"
scopes = ["users:write", "profile:sync"]
"#,
            ),
            ("main.rhai", "1"),
            ("output.schema.json", r#"{"type": "object"}"#),
        ],
    )
}

/// Anonymous GET and DELETE, `any` is covered by [`any_flow`].
pub fn public_flow() -> Sample {
    sample(
        "status-page",
        4,
        &[
            (
                "flow.toml",
                r#"name = "status-page"
title = "Public status"
[[trigger]]
kind = "http"
method = "GET"
[[trigger]]
kind = "http"
method = "DELETE"
path = "/cache/{key}"
[auth]
mode = "none"
"#,
            ),
            ("main.rhai", "#{ up: true }"),
        ],
    )
}

/// `[auth] mode = "any"`, PUT with an input schema only.
pub fn any_flow() -> Sample {
    sample(
        "crm-import",
        1,
        &[
            (
                "flow.toml",
                r#"name = "crm-import"
[[trigger]]
kind = "http"
method = "PUT"
path = "/records/{system}/{record_id}"
[auth]
mode = "any"
"#,
            ),
            ("main.rhai", "1"),
            (
                "input.schema.json",
                r#"{"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}"#,
            ),
        ],
    )
}

/// Event-only flow.
pub fn event_flow() -> Sample {
    sample(
        "welcome-mail",
        1,
        &[
            (
                "flow.toml",
                r#"name = "welcome-mail"
title = "Welcome new users"
[[trigger]]
kind = "event"
events = ["user.created", "crm.synced"]
"#,
            ),
            (
                "main.rhai",
                "events::emit(`mail.sent`, #{ to: trigger.event.data.email });",
            ),
        ],
    )
}

/// Schedule-only flow.
pub fn schedule_flow() -> Sample {
    sample(
        "nightly-cleanup",
        7,
        &[
            (
                "flow.toml",
                r#"name = "nightly-cleanup"
[[trigger]]
kind = "schedule"
cron = "0 0 3 * * *"
timezone = "Europe/Amsterdam"
"#,
            ),
            ("main.rhai", "1"),
        ],
    )
}

pub fn all_samples() -> Vec<Sample> {
    vec![
        upgrade_plan(),
        payment_webhook(),
        provider_hooks(),
        oauth_flow(),
        public_flow(),
        any_flow(),
        event_flow(),
        schedule_flow(),
    ]
}
