//! The operator page at `/ui`: a static page, embedded in the binary (no CDN, nothing fetched
//! from elsewhere), that draws what `GET /admin/live` pushes. The page itself holds no data;
//! every reading comes from `/admin/live`, which needs the `admin` scope (or the admin token)
//! whenever the engine is configured to ask for credentials. With `--admin-listen`, the page
//! is served only there, beside the other operator endpoints.

use poem::http::{header, StatusCode};
use poem::{get, Response, Route};

/// Path of the operator page.
pub const UI_PATH: &str = "/ui";

/// The page, its script, its style sheet and its icon, as served.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        UI_PATH,
        "text/html; charset=utf-8",
        include_str!("ui/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_str!("ui/app.css"),
    ),
    ("/ui/icon.svg", "image/svg+xml", include_str!("ui/icon.svg")),
];

/// What the page may load and connect to: only this engine. No inline script or style, no
/// frames around it, no referrer sent.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The paths the page is served at (each answers GET only).
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(path, _, _)| *path)
}

/// `route` with the page and its assets added.
pub fn routes(mut route: Route) -> Route {
    for (path, content_type, body) in ASSETS {
        route = route.at(
            path,
            get(poem::endpoint::make_sync(move |_| {
                asset(content_type, body)
            })),
        );
    }
    route
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        let (_, _, page) = ASSETS[0];
        for (path, _, _) in &ASSETS[1..] {
            assert!(page.contains(&format!("\"{path}\"")), "{path} not linked");
        }
        for forbidden in [
            "http://", "https://", "<script>", "style=", "onclick", "onload",
        ] {
            assert!(!page.contains(forbidden), "{forbidden} in the page");
        }
        let (_, _, script) = ASSETS[1];
        assert!(!script.contains("innerHTML"), "data is set as text only");
        assert!(
            !script.contains("localStorage"),
            "the token stays in the tab"
        );
    }
}
