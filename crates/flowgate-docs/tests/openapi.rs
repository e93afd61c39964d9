//! Generated OpenAPI documents: snapshots, structure, validity (with the Python
//! `openapi-spec-validator` when installed) and examples that match their schemas.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flowgate_docs::{flow_version_openapi, live_openapi, FlowDoc};
use serde_json::{json, Value};
use std::path::PathBuf;

const SERVER: &str = "https://flows.example.com";

/// Compares `doc` with `tests/snapshots/{name}.json`; `UPDATE_SNAPSHOTS=1` rewrites it.
fn assert_snapshot(name: &str, doc: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.json"));
    let actual = format!("{}\n", serde_json::to_string_pretty(doc).unwrap());
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
        let first = e.iter().zip(a.iter()).take_while(|(x, y)| x == y).count();
        let from = first.saturating_sub(3);
        let diff = format!(
            "first difference at line {}\n--- expected\n{}\n+++ actual\n{}",
            first + 1,
            e[from..(first + 12).min(e.len())].join("\n"),
            a[from..(first + 12).min(a.len())].join("\n")
        );
        panic!("snapshot {name} differs (UPDATE_SNAPSHOTS=1 to accept):\n{diff}");
    }
}

#[test]
fn snapshot_upgrade_plan_v3() {
    let s = upgrade_plan();
    assert_snapshot(
        "upgrade-plan.v3",
        &flow_version_openapi(&s.doc(true), SERVER),
    );
}

#[test]
fn snapshot_payment_webhook_v1() {
    let s = payment_webhook();
    assert_snapshot(
        "payment-webhook.v1",
        &flow_version_openapi(&s.doc(true), SERVER),
    );
}

#[test]
fn snapshot_live_document() {
    let a = upgrade_plan();
    let b = payment_webhook();
    let c = event_flow();
    assert_snapshot(
        "live",
        &live_openapi(&[a.doc(true), b.doc(true), c.doc(true)], SERVER),
    );
}

fn codes(op: &Value) -> Vec<String> {
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn http_operation_documents_what_the_server_enforces() {
    let s = upgrade_plan();
    let doc = flow_version_openapi(&s.doc(false), SERVER);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Upgrade a customer's plan");
    assert_eq!(doc["info"]["version"], "v3");
    assert_eq!(doc["servers"], json!([{"url": SERVER}]));
    let item = &doc["paths"]["/flows/upgrade-plan/v3/customers/{customer_id}"];
    let post = &item["post"];
    let get = &item["get"];
    assert_eq!(post["operationId"], "post_upgrade_plan");
    assert_eq!(get["operationId"], "get_upgrade_plan");
    assert_eq!(
        codes(post),
        [
            "200", "400", "401", "402", "403", "404", "408", "409", "410", "413", "415", "422",
            "429", "500", "503", "504"
        ]
    );
    // GET has no Idempotency-Key, so no 409; the input schema still applies (415, 422).
    assert_eq!(
        codes(get),
        [
            "200", "400", "401", "403", "404", "410", "413", "415", "422", "429", "500", "503",
            "504"
        ]
    );
    assert_eq!(
        post["x-ratelimit"],
        json!({"rate": "600/minute", "burst": 50})
    );
    assert_eq!(post["x-timeout-ms"], 3000);
    assert_eq!(
        post["security"],
        json!([{"apiKey": ["billing:write"]}, {"bearerAuth": ["billing:write"]}])
    );
    assert_eq!(post["x-required-scopes"], json!(["billing:write"]));
    let desc = post["description"].as_str().unwrap();
    assert!(desc.starts_with("Moves the customer"), "{desc}");
    assert!(
        desc.contains("Timeout: 3000 ms. Rate limit: 600/minute per caller (burst 50)."),
        "{desc}"
    );

    let params: Vec<(String, String, bool)> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = resolve(&doc, p);
            (
                p["name"].as_str().unwrap().to_owned(),
                p["in"].as_str().unwrap().to_owned(),
                p["required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        params,
        vec![
            ("customer_id".into(), "path".into(), true),
            ("Idempotency-Key".into(), "header".into(), false),
            ("X-Request-Id".into(), "header".into(), false),
        ]
    );
    let idem = resolve(&doc, &post["parameters"][1]);
    assert_eq!(idem["schema"]["maxLength"], 255);
    // Query parameters come from the GET fixture only.
    let get_query: Vec<&str> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(get_query, ["expand", "locale"]);

    let rb = &post["requestBody"];
    assert_eq!(rb["required"], true);
    assert_eq!(
        rb["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/upgrade-plan.Input"
    );
    // Only the successful fixture's body is a request example.
    let ex = rb["content"]["application/json"]["examples"]
        .as_object()
        .unwrap();
    assert_eq!(ex.keys().collect::<Vec<_>>(), ["paid"]);
    assert_eq!(ex["paid"]["summary"], "paid invoice upgrades the plan");
    // The embedded schema's local $ref now points into components.
    assert_eq!(
        doc["components"]["schemas"]["upgrade-plan.Input"]["properties"]["plan"]["$ref"],
        "#/components/schemas/upgrade-plan.Input/$defs/plan"
    );

    let ok = &post["responses"]["200"];
    assert_eq!(
        ok["content"]["application/json"]["examples"]["paid"]["value"],
        json!({"id": "u1", "plan": "pro", "status": "active"})
    );
    for h in [
        "X-Request-Id",
        "RateLimit-Policy",
        "RateLimit",
        "Idempotent-Replayed",
    ] {
        assert!(ok["headers"].get(h).is_some(), "200 lacks {h}");
    }
    // 422 carries the fixture's example, completed to a full problem.
    let unp = &post["responses"]["422"];
    let v = &unp["content"]["application/problem+json"]["examples"]["bad-plan"]["value"];
    assert_eq!(v["status"], 422);
    assert_eq!(v["code"], "validation_failed");
    assert_eq!(v["errors"][0]["pointer"], "/plan");
    // fail(402) seen in a fixture becomes a documented problem response.
    assert_eq!(
        post["responses"]["402"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    let tmr = resolve(&doc, &post["responses"]["429"]);
    assert!(tmr["headers"].get("Retry-After").is_some());
    assert!(tmr["headers"].get("RateLimit-Policy").is_some());
    assert_eq!(
        post["responses"]["413"]["description"],
        "The request body is larger than 65536 bytes."
    );
    let problem = &doc["components"]["schemas"]["Problem"];
    for k in [
        "type",
        "title",
        "status",
        "detail",
        "code",
        "request_id",
        "errors",
    ] {
        assert!(problem["properties"].get(k).is_some(), "Problem lacks {k}");
    }
    assert_eq!(doc["x-flowgate"]["emits"], json!(["billing.plan_upgraded"]));
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(&r[1..]).unwrap(),
        None => v,
    }
}

#[test]
fn async_webhook_with_standard_webhooks_signature() {
    let s = payment_webhook();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    let op = &doc["paths"]["/flows/payment-webhook/v1/invoices/{invoice_id}"]["post"];
    assert_eq!(op["operationId"], "post_payment_webhook");
    assert_eq!(
        codes(op),
        [
            "202", "400", "401", "404", "408", "409", "410", "413", "415", "422", "429", "500",
            "503"
        ]
    );
    let accepted = &op["responses"]["202"];
    assert!(accepted["headers"].get("Location").is_some());
    assert_eq!(
        accepted["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RunAccepted"
    );
    assert_eq!(op["security"], json!([{"standardWebhooksSignature": []}]));
    assert_eq!(
        op["x-webhook-signature"],
        json!({"scheme": "standard-webhooks"})
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["standardWebhooksSignature"]["name"],
        "webhook-signature"
    );
    let required_headers: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header" && p["required"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(required_headers, ["webhook-id", "webhook-timestamp"]);
    assert!(resolve(&doc, &op["responses"]["401"])["description"]
        .as_str()
        .unwrap()
        .contains("signature"));
    assert_eq!(
        doc["x-flowgate"]["events"],
        json!(["billing.plan_upgraded"])
    );
    assert_eq!(doc["x-ratelimit"], Value::Null);
    assert_eq!(op["x-ratelimit"], json!({"rate": "10/second", "burst": 10}));
}

#[test]
fn other_signature_schemes() {
    let s = provider_hooks();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["stripeSignature"]["name"], "Stripe-Signature");
    assert_eq!(schemes["githubSignature"]["name"], "X-Hub-Signature-256");
    assert_eq!(
        schemes["hmacSha256Signature.x-crm-signature"]["name"],
        "x-crm-signature"
    );
    assert!(
        schemes.get("apiKey").is_none(),
        "signed webhooks do not use [auth]"
    );
    let gh = &doc["paths"]["/flows/provider-hooks/v2/github"]["post"];
    assert_eq!(gh["x-webhook-signature"]["scheme"], "github");
    assert!(gh["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "X-GitHub-Delivery"));
    // Sync webhook: the fixture's 202 from `respond` is documented.
    assert!(gh["responses"].get("200").is_some());
    assert!(gh["responses"].get("202").is_some());
    assert!(gh["responses"].get("504").is_some());
    // No input schema: open body; 415 only for bodies that are not UTF-8 text.
    assert_eq!(gh["requestBody"]["required"], false);
    assert_eq!(
        gh["requestBody"]["content"]["application/json"]["schema"],
        json!({})
    );
    assert_eq!(
        gh["responses"]["415"]["description"],
        "The body is neither JSON nor UTF-8 text."
    );
    // Signed webhooks without a rate limit are not throttled per caller.
    assert!(gh["responses"].get("429").is_none());
    // GitHub deliveries are de-duplicated by id: 409/422 without Idempotency-Key semantics
    // beyond POST; the generic HMAC scheme has no delivery id.
    assert!(gh["responses"].get("409").is_some());
    let crm_put = &doc["paths"]["/flows/provider-hooks/v2/crm"]["put"];
    assert!(crm_put["responses"]["422"]["description"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));
    let crm = &doc["paths"]["/flows/provider-hooks/v2/crm"]["put"];
    assert_eq!(crm["operationId"], "put_provider_hooks");
    assert_eq!(
        crm["security"],
        json!([{"hmacSha256Signature.x-crm-signature": []}])
    );
}

#[test]
fn oauth2_any_and_none() {
    let s = oauth_flow();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    let op = &doc["paths"]["/flows/profile-sync/v1"]["patch"];
    assert_eq!(
        op["security"],
        json!([{"oauth2Jwt": ["users:write", "profile:sync"]}])
    );
    let scheme = &doc["components"]["securitySchemes"]["oauth2Jwt"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["bearerFormat"], "JWT");
    assert!(codes(op).contains(&"403".to_owned()));
    // No rate limit, but repeated failed authentication is throttled.
    assert!(op.get("x-ratelimit").is_none());
    let d429 = op["responses"]["429"]["description"].as_str().unwrap();
    assert!(d429.contains("failed authentication"), "{d429}");
    assert!(!d429.contains("from this caller"), "{d429}");

    let s = any_flow();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    let op = &doc["paths"]["/flows/crm-import/v1/records/{system}/{record_id}"]["put"];
    assert_eq!(
        op["security"],
        json!([{"apiKey": []}, {"bearerAuth": []}, {"oauth2Jwt": []}])
    );
    assert!(!codes(op).contains(&"403".to_owned()));

    let s = public_flow();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    let get = &doc["paths"]["/flows/status-page/v4"]["get"];
    let del = &doc["paths"]["/flows/status-page/v4/cache/{key}"]["delete"];
    assert_eq!(get["security"], json!([]));
    assert!(!codes(get).contains(&"401".to_owned()));
    assert!(get.get("requestBody").is_none());
    assert_eq!(del["operationId"], "delete_status_page");
    assert!(doc["components"].get("securitySchemes").is_none());
}

#[test]
fn event_and_schedule_flows_have_no_paths() {
    let e = event_flow();
    let doc = flow_version_openapi(&e.doc(true), SERVER);
    assert_eq!(doc["paths"], json!({}));
    assert_eq!(
        doc["x-flowgate"]["events"],
        json!(["user.created", "crm.synced"])
    );
    assert_eq!(doc["x-flowgate"]["emits"], json!(["mail.sent"]));
    let s = schedule_flow();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    assert_eq!(doc["paths"], json!({}));
    assert_eq!(
        doc["x-flowgate"]["schedule"],
        json!({"cron": "0 0 3 * * *", "timezone": "Europe/Amsterdam"})
    );
    assert_eq!(doc["info"]["title"], "nightly-cleanup");
}

#[test]
fn live_document_merges_flows() {
    let samples = all_samples();
    let mut docs: Vec<FlowDoc<'_>> = samples.iter().map(|s| s.doc(true)).collect();
    // A non-live version is left out.
    let old = upgrade_plan();
    docs.push(FlowDoc::new(
        "upgrade-plan",
        2,
        &old.manifest,
        &old.package,
        false,
    ));
    let doc = live_openapi(&docs, SERVER);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/flows/upgrade-plan/customers/{customer_id}"));
    assert!(paths.contains_key("/flows/payment-webhook/invoices/{invoice_id}"));
    assert!(
        paths.keys().all(|p| !p.contains("/v")),
        "{:?}",
        paths.keys()
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for k in [
        "upgrade-plan.Input",
        "upgrade-plan.Output",
        "payment-webhook.Input",
        "crm-import.Input",
    ] {
        assert!(schemas.contains_key(k), "missing {k}");
    }
    let mut ids = Vec::new();
    for item in paths.values() {
        for op in item.as_object().unwrap().values() {
            ids.push(op["operationId"].as_str().unwrap().to_owned());
            assert!(op["responses"].get("410").is_none());
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "operation ids are unique");
    assert_eq!(
        doc["x-flowgate"]["flows"].as_array().unwrap().len(),
        samples.len()
    );
}

fn all_documents() -> Vec<(String, Value)> {
    let samples = all_samples();
    let mut out: Vec<(String, Value)> = samples
        .iter()
        .map(|s| {
            (
                format!("{}.v{}", s.flow, s.version),
                flow_version_openapi(&s.doc(true), SERVER),
            )
        })
        .collect();
    let docs: Vec<FlowDoc<'_>> = samples.iter().map(|s| s.doc(true)).collect();
    out.push(("live".into(), live_openapi(&docs, SERVER)));
    out
}

#[test]
fn documents_pass_openapi_spec_validator() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        println!(
            "SKIPPED: python3 module openapi_spec_validator is missing \
             (pip install openapi-spec-validator)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, doc) in all_documents() {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let out = std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} is not a valid OpenAPI 3.1 document:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every (schema, example) pair of a document.
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    let mut media = |at: String, m: &Value| {
        if let (Some(schema), Some(ex)) = (
            m.get("schema"),
            m.get("examples").and_then(Value::as_object),
        ) {
            for (name, x) in ex {
                out.push((
                    format!("{at} example {name}"),
                    schema.clone(),
                    x["value"].clone(),
                ));
            }
        }
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (ct, m) in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                media(format!("{method} {path} request {ct}"), m);
            }
            for (status, r) in op["responses"].as_object().unwrap() {
                let r = resolve(doc, r);
                for (ct, m) in r["content"].as_object().into_iter().flatten() {
                    media(format!("{method} {path} {status} {ct}"), m);
                }
            }
        }
    }
    out
}

#[test]
fn every_example_matches_its_schema() {
    let mut checked = 0;
    for (name, doc) in all_documents() {
        for (at, schema, value) in examples(&doc) {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": doc["components"],
                "allOf": [schema],
            });
            let v = jsonschema::validator_for(&root)
                .unwrap_or_else(|e| panic!("{name} {at}: schema does not compile: {e}"));
            let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{name} {at}: {value} does not match: {errors:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} examples checked");
}

#[test]
fn example_check_catches_a_bad_example() {
    // The check above must be able to fail: a wrong value against a real schema.
    let s = upgrade_plan();
    let doc = flow_version_openapi(&s.doc(true), SERVER);
    let root = json!({
        "components": doc["components"],
        "allOf": [{"$ref": "#/components/schemas/upgrade-plan.Input"}],
    });
    let v = jsonschema::validator_for(&root).unwrap();
    assert!(v.is_valid(&json!({"plan": "pro"})));
    assert!(!v.is_valid(&json!({"plan": "platinum"})));
    assert!(!v.is_valid(&json!({"plan": "pro", "extra": 1})));
}
