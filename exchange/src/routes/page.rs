//! The market page: `GET /` and its assets under `/assets/`.
//!
//! The files in `exchange/page/` are compiled into the binary (`include_bytes!`): nothing is built
//! or fetched at run time, no CDN is named, and the page reads only what any client may read (the
//! public API and the oracle's SSE stream) plus, once a buyer signs in, that buyer's own routes
//! with their token. The charting library (uPlot) is vendored in `exchange/page/vendor/` with its
//! licence; `exchange/page/test` checks the copy against the npm package it came from.
//!
//! Every answer carries an `ETag` (SHA-256 of the file, computed once) and `Cache-Control:
//! no-cache`, so a browser revalidates and gets `304` until the binary changes. The page itself
//! is served with a Content-Security-Policy that allows scripts, styles and connections from this
//! origin only.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// One embedded file.
struct Asset {
    /// Its name under `/assets/` (the page itself is `index.html`, served at `/`).
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $path:literal, $type:literal) => {
        Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/page/", $path)) }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "index.html", "text/html; charset=utf-8"),
    asset!("app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!("uPlot.iife.min.js", "vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    asset!("uPlot.min.css", "vendor/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("uPlot.LICENSE.txt", "vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
];

/// Scripts, styles, data and the stream from this origin only; no frames, no forms posted away.
/// uPlot styles its elements through the CSSOM (`element.style`), which `style-src` does not
/// govern, so no `'unsafe-inline'` is needed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                           connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes (outside the OpenAPI document: they are not API).
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/assets/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = serve(0, &headers);
    let set = response.headers_mut();
    set.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
    set.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    set.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name && a.name != "index.html") {
        Some(i) => serve(i, &headers),
        None => ApiError::new(ErrorCode::RouteNotFound, format!("no asset `{name}`; the market page is at /")).into_response(),
    }
}

/// The strong validator of each asset, in [`ASSETS`] order.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                // Hex digits in quotes: always a valid header value.
                HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16]))).unwrap_or(HeaderValue::from_static("\"\""))
            })
            .collect()
    })
}

fn serve(i: usize, request: &HeaderMap) -> Response {
    let (Some(asset), Some(etag)) = (ASSETS.get(i), etags().get(i)) else {
        return ApiError::internal("an embedded asset is missing").into_response();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type))], asset.bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_once_with_its_own_etag() {
        let names: std::collections::HashSet<_> = ASSETS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
        let tags: std::collections::HashSet<_> = etags().iter().collect();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn the_page_names_only_embedded_assets() {
        let page = std::str::from_utf8(ASSETS[0].bytes).expect("utf-8 page");
        let mut named = 0;
        for part in page.split("/assets/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(ASSETS.iter().any(|a| a.name == name), "index.html names /assets/{name}, which is not embedded");
            named += 1;
        }
        assert_eq!(named, 6, "uPlot's script, style and licence, and the page's own script, style and icon");
        assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");
    }
}
