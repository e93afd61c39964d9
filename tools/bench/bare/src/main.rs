//! The floor `make bench` measures Flowgate against: actix-web and serde_json
//! doing the benchmark's transform (`tools/bench/flows/transform/main.rhai`)
//! and nothing else: no auth, no storage, no script.
//!
//! `bench-bare [ADDR]` (default `127.0.0.1:0`) prints `listening on http://ADDR`.

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// The transform: order lines summed, the customer's name upper-cased.
fn transform(b: &Value) -> Value {
    let mut total = 0.0_f64;
    let mut quantity = 0_i64;
    let items = b["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for it in items {
        let qty = it["qty"].as_i64().unwrap_or(0);
        total += it["price"].as_f64().unwrap_or(0.0) * qty as f64;
        quantity += qty;
    }
    json!({
        "order_id": b["order_id"],
        "customer": b["customer"]["name"].as_str().unwrap_or("").to_uppercase(),
        "email": b["customer"]["email"],
        "lines": items.len(),
        "quantity": quantity,
        "total": total,
        "currency": b["currency"],
        "express": total > 50.0,
    })
}

async fn handle(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) => HttpResponse::Ok()
            .content_type("application/json")
            .body(transform(&v).to_string()),
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    actix_web::rt::System::new().block_on(async move {
        let server =
            HttpServer::new(|| App::new().route("/flows/transform", web::post().to(handle)))
                .bind(&addr)?;
        for a in server.addrs() {
            println!("listening on http://{a}");
        }
        server.run().await
    })
}
