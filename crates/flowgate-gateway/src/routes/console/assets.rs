//! The console bundle, embedded at compile time from `console/dist/` (see the
//! gateway's `build.rs`): `index.html` for `/console` and every client-side
//! route, files under `/console/assets/`. Each answer has its media type, an
//! `ETag` (a content hash) and `Cache-Control: no-cache`, so browsers
//! revalidate cheaply and never run a stale bundle after an upgrade.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::{ApiError, ApiResult};

mod bundle {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

struct Asset {
    bytes: &'static [u8],
    etag: String,
    content_type: &'static str,
}

static ASSETS: LazyLock<BTreeMap<&'static str, Asset>> = LazyLock::new(|| {
    bundle::FILES
        .iter()
        .map(|(path, bytes)| {
            let digest = Sha256::digest(bytes);
            (
                *path,
                Asset {
                    bytes,
                    etag: format!("\"{}\"", hex::encode(&digest[..16])),
                    content_type: content_type(path),
                },
            )
        })
        .collect()
});

/// The media type of a bundle file, by extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(req: &HttpRequest, path: &str) -> Option<HttpResponse> {
    let asset = ASSETS.get(path)?;
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let mut res = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, asset.etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    Some(if cached {
        res.finish()
    } else {
        res.content_type(asset.content_type).body(asset.bytes)
    })
}

/// `GET /console` and every client-side route: the single-page application.
pub async fn index(req: HttpRequest) -> ApiResult<HttpResponse> {
    serve(&req, "index.html")
        .ok_or_else(|| ApiError::not_found("this server was built without the console bundle"))
}

/// `GET /console/assets/{file}`.
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> ApiResult<HttpResponse> {
    let path = format!("assets/{file}");
    serve(&req, &path).ok_or_else(|| ApiError::not_found(format!("no console asset `{file}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded_with_types() {
        for f in ["index.html", "assets/app.js", "assets/app.css"] {
            assert!(ASSETS.contains_key(f), "{f} is embedded");
        }
        assert_eq!(
            content_type("assets/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x.bin"), "application/octet-stream");
    }
}
