//! The web pages' static files, embedded at build time (see `build.rs`): served under
//! content-hash names with a one-year immutable cache lifetime, gzip-compressed once at build time.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub struct Asset {
    /// The name templates use (`htmx.js`).
    pub name: &'static str,
    /// The served file name, with its content hash (`htmx.0123456789.js`).
    pub file: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
    /// The same, gzip-compressed.
    pub gzip: &'static [u8],
}

/// Every embedded file.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The URL of an asset by its template name; an unknown name is a programming error caught by
/// the tests (it yields a URL that answers 404).
pub fn url(name: &str) -> String {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => format!("/assets/{}", a.file),
        None => format!("/assets/missing-{name}"),
    }
}

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.file == file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-store")],
            "no such asset",
        )
            .into_response();
    };
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        });
    let mut res = if gzip {
        let mut r = a.gzip.into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        a.body.into_response()
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_name_and_a_smaller_gzip_copy() {
        assert!(ASSETS.len() >= 5);
        for a in ASSETS {
            let (stem, _) = a.name.rsplit_once('.').unwrap();
            assert!(a.file.starts_with(&format!("{stem}.")), "{}", a.file);
            assert_eq!(a.file.split('.').count(), 3, "{}", a.file);
            assert!(!a.body.is_empty());
            assert!(a.gzip.len() < a.body.len() + 64, "{}", a.name);
            assert_eq!(url(a.name), format!("/assets/{}", a.file));
        }
    }
}
