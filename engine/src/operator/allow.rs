//! `Allow` on 405 answers (RFC 9110 asks for it). poem's router answers 405 without it, so
//! this middleware adds it, from the OpenAPI document's own paths and methods: whatever the
//! document says a path answers is what the header says.

use poem::http::{header, HeaderValue, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use serde_json::Value;

/// Path patterns (segments, `None` for a `{parameter}`) and the methods each answers.
#[derive(Debug, Clone, Default)]
pub struct Allowed(Vec<(Vec<Option<String>>, HeaderValue)>);

impl Allowed {
    /// The paths and methods of the OpenAPI document `spec` (JSON text), plus `get_only`
    /// paths served outside it.
    pub fn from_spec(spec: &str, get_only: &[&str]) -> Self {
        let spec: Value = serde_json::from_str(spec).unwrap_or_default();
        let mut allowed = Self::default();
        if let Some(paths) = spec.get("paths").and_then(Value::as_object) {
            for (path, operations) in paths {
                let methods: Vec<String> = operations
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                allowed.add(path, methods);
            }
        }
        for path in get_only {
            allowed.add(path, vec!["GET".into()]);
        }
        allowed
    }

    fn add(&mut self, path: &str, mut methods: Vec<String>) {
        // poem answers HEAD wherever it answers GET.
        if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
            methods.push("HEAD".into());
        }
        let segments = path
            .split('/')
            .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
            .collect();
        if let Ok(value) = HeaderValue::from_str(&methods.join(", ")) {
            self.0.push((segments, value));
        }
    }

    /// The methods `path` answers, when it is a known path.
    fn of(&self, path: &str) -> Option<&HeaderValue> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(pattern, methods)| {
            let matches = pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.as_deref().is_none_or(|p| p == *s));
            matches.then_some(methods)
        })
    }
}

impl<E: Endpoint> Middleware<E> for Allowed {
    type Output = AllowEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AllowEndpoint {
            inner,
            allowed: self.clone(),
        }
    }
}

/// An endpoint whose 405 answers say what is allowed.
pub struct AllowEndpoint<E> {
    inner: E,
    allowed: Allowed,
}

impl<E: Endpoint> Endpoint for AllowEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Self::Output> {
        let path = request.uri().path().to_string();
        let mut response = match self.inner.call(request).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            if let Some(methods) = self.allowed.of(&path) {
                response
                    .headers_mut()
                    .insert(header::ALLOW, methods.clone());
            }
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_documents_paths() {
        let spec = r#"{"paths": {"/p": {"post": {}}, "/p/{id}": {"get": {}}, "/admin/x/{name}/reload": {"post": {}}}}"#;
        let allowed = Allowed::from_spec(spec, &["/docs"]);
        assert_eq!(
            allowed.of("/p").map(|v| v.to_str().ok()),
            Some(Some("POST"))
        );
        assert_eq!(
            allowed.of("/p/42").map(|v| v.to_str().ok()),
            Some(Some("GET, HEAD"))
        );
        assert_eq!(
            allowed.of("/admin/x/a/reload").map(|v| v.to_str().ok()),
            Some(Some("POST"))
        );
        assert_eq!(
            allowed.of("/docs").map(|v| v.to_str().ok()),
            Some(Some("GET, HEAD"))
        );
        assert!(allowed.of("/nowhere").is_none());
    }
}
