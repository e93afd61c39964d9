//! The offline HTML documentation: index, version pages, event catalogue.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flowgate_docs::{
    compare, docs_index_html, docs_version_html, event_catalogue, flow_version_openapi, FlowDoc,
    FlowSummary,
};

#[test]
fn index_lists_live_flows_and_event_catalogue() {
    let samples = all_samples();
    let docs: Vec<FlowDoc<'_>> = samples.iter().map(|s| s.doc(true)).collect();
    let summaries: Vec<FlowSummary<'_>> = docs
        .iter()
        .map(|d| FlowSummary {
            live: *d,
            versions: vec![1, d.version],
        })
        .collect();
    let cat = event_catalogue(&docs);
    let html = docs_index_html(&summaries, &cat);
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Flow cards with title, live paths, auth, limits, version links.
    assert!(html.contains("Upgrade a customer&#39;s plan"));
    assert!(html.contains("<code>/flows/upgrade-plan/customers/{customer_id}</code>"));
    assert!(html.contains("600/minute per caller, burst 50"));
    assert!(html.contains("scopes: billing:write"));
    assert!(html.contains("webhook signature (standard-webhooks)"));
    assert!(html.contains("href=\"/docs/flows/upgrade-plan/v1\""));
    assert!(html.contains("href=\"/docs/flows/upgrade-plan/v3\""));
    assert!(html.contains("href=\"/openapi/flows/upgrade-plan/v3.json\""));
    assert!(html.contains("Runs on schedule <code>0 0 3 * * *</code> (Europe/Amsterdam)"));
    // Catalogue: crm.synced is emitted by provider-hooks and consumed by welcome-mail.
    let row = html
        .lines()
        .find(|l| l.starts_with("<tr>") && l.contains("<code>crm.synced</code>"))
        .unwrap();
    assert!(
        row.contains("welcome-mail") && row.contains("provider-hooks"),
        "{row}"
    );
    assert!(
        row.find("welcome-mail") < row.find("provider-hooks"),
        "{row}"
    );
    assert!(html.contains("<code>billing.plan_upgraded</code>"));
    assert!(html.contains("<code>mail.sent</code>"));
    assert_eq!(
        cat.types["billing.plan_upgraded"].emitters,
        ["upgrade-plan"]
    );
    assert_eq!(
        cat.types["billing.plan_upgraded"].subscribers,
        ["payment-webhook"]
    );
    // Offline: nothing is loaded from elsewhere.
    // Offline: the only <link> is the inline (data:) icon that stops the
    // browser asking for /favicon.ico.
    let html = html.replace("<link rel=\"icon\" href=\"data:,\">", "");
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
}

#[test]
fn version_page_shows_operations_schemas_examples_and_compat() {
    let new = upgrade_plan();
    let old = sample(
        "upgrade-plan",
        2,
        &[
            (
                "flow.toml",
                "name = \"upgrade-plan\"\n[[trigger]]\nkind = \"http\"\npath = \"/customers/{customer_id}\"\n\
                 [[trigger]]\nkind = \"http\"\nmethod = \"DELETE\"\n",
            ),
            ("main.rhai", "1"),
            (
                "input.schema.json",
                r#"{"type": "object", "properties": {"plan": {"type": "string"}}}"#,
            ),
        ],
    );
    let d = new.doc(false);
    let report = compare(&old.doc(true), &d);
    assert!(report.is_breaking());
    let api = flow_version_openapi(&d, "https://flows.example.com");
    let html = docs_version_html(&d, &api, Some(&report));
    for needle in [
        "<h1>Upgrade a customer&#39;s plan",
        "<code>/flows/upgrade-plan/v3/customers/{customer_id}</code>",
        "operationId <code>post_upgrade_plan</code>",
        "<code>Idempotency-Key</code>",
        "<code>expand</code>",
        "Schema <code>upgrade-plan.Input</code>",
        "&quot;seats&quot;",
        "Example <code>paid</code>",
        "paid invoice upgrades the plan",
        "<strong>429</strong>",
        "<strong>402</strong>",
        "Required scopes (all): <code>billing:write</code>",
        "<code>apiKey</code> (header <code>X-API-Key</code>)",
        "Problem responses",
        "Compatibility report",
        "endpoint_removed",
        "DELETE /flows/upgrade-plan",
        "3000 ms per run",
        "<code>billing.plan_upgraded</code>",
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    let html = html.replace("<link rel=\"icon\" href=\"data:,\">", "");
    assert!(!html.contains("<script") && !html.contains("<link"));
}

#[test]
fn event_only_version_page() {
    let s = event_flow();
    let d = s.doc(true);
    let api = flow_version_openapi(&d, "http://x");
    let html = docs_version_html(&d, &api, None);
    assert!(html.contains("has no HTTP endpoint"));
    assert!(html.contains("<code>user.created</code>"));
    assert!(!html.contains("Compatibility report"));
}
