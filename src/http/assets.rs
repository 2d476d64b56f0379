//! The browser pages the binary serves itself: GraphiQL at `/` and the
//! event console at `/console`, with their scripts and styles under
//! `/assets/`. Every file is embedded at build time (our own from
//! `web/static/`, pinned third-party builds from `web/vendor/`, refreshed
//! by `scripts/web-assets`), so the pages work offline and need no Node.
//!
//! Every response carries [`CONTENT_SECURITY_POLICY`]: the pages load
//! nothing from any other origin and run no inline script.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Only this origin, for everything. Two additions, both for GraphiQL's
/// own stylesheet, which embeds its fonts and two small images as `data:`
/// URLs; no inline script or inline style element is allowed.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; font-src 'self' data:; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($dir:literal, $name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../web/", $dir, "/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Everything under `/assets/`.
const ASSETS: &[Asset] = &[
    asset!("vendor", "react.production.min.js", JS),
    asset!("vendor", "react-dom.production.min.js", JS),
    asset!("vendor", "graphiql.min.js", JS),
    asset!("vendor", "graphiql.min.css", CSS),
    asset!("vendor", "LICENSE.react", TEXT),
    asset!("vendor", "LICENSE.react-dom", TEXT),
    asset!("vendor", "LICENSE.graphiql", TEXT),
    asset!("vendor", "VERSIONS", TEXT),
    asset!("static", "graphiql-page.js", JS),
    asset!("static", "graphiql-page.css", CSS),
    asset!("static", "console.js", JS),
    asset!("static", "console.css", CSS),
];

const GRAPHIQL_PAGE: &[u8] = include_bytes!("../../web/static/graphiql.html");
const CONSOLE_PAGE: &[u8] = include_bytes!("../../web/static/console.html");

/// GraphiQL, at `/`.
pub(super) async fn graphiql() -> Response {
    page(GRAPHIQL_PAGE)
}

/// The event console, at `/console`. The page itself shows nothing
/// without the API, which checks the caller's role on every operation.
pub(super) async fn console() -> Response {
    page(CONSOLE_PAGE)
}

/// A file under `/assets/`, or 404.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => respond(a.content_type, a.body),
        None => (StatusCode::NOT_FOUND, secured(), "no such asset").into_response(),
    }
}

fn page(body: &'static [u8]) -> Response {
    respond("text/html; charset=utf-8", body)
}

fn respond(content_type: &'static str, body: &'static [u8]) -> Response {
    let headers = [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))];
    // Embedded files change only with the binary: a browser revalidates
    // after a few minutes.
    let cache = [(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"))];
    (headers, cache, secured(), body).into_response()
}

/// The headers every page and asset carries.
fn secured() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ]
}
