//! The OpenAPI document: poem-openapi's for the engine's own endpoints (from their types),
//! plus one pair of operations per pipeline, built from `pipelines.toml` and the schema its
//! plugin exports, and the Swagger UI page that shows it.
//!
//! The plugin's schema is text somebody else wrote. In `/docs/openapi.json` it is JSON like the
//! rest; in the Swagger page it sits inside a `<script>`, so there every `<`, `>` and `&` of
//! the document is written as a JSON `\u` escape (the same JSON, and no way to end the script).

use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem_openapi::registry::Registry;
use poem_openapi::types::Type as _;
use poem_openapi::OpenApiService;
use serde_json::{json, Map, Value};

use crate::config::Pipeline;
use crate::ingest::bulk::BulkAnswer;
use crate::ingest::problem::Problem;
use crate::ingest::Accepted;
use crate::ingest::NDJSON;
use crate::plugin::{Policy, PolicyHandle};

/// What the document says about one pipeline: its configuration and its plugin's schema.
struct PipelineDoc<'a> {
    /// The pipeline.
    pipeline: &'a Pipeline,
    /// The plugin's JSON Schema of a body (or `{"type": "object"}` when it exported none
    /// that parses).
    schema: Value,
}

/// The example body of a pipeline's route: each property's `example` (for the patient profile,
/// the seed's body), without the version field unless the schema requires it (ingest stamps
/// an absent one).
fn example(doc: &PipelineDoc<'_>) -> Value {
    let mut example = Map::new();
    let required = |name: &str| {
        doc.schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name))
    };
    if let Some(Value::Object(props)) = doc.schema.get("properties") {
        for (name, prop) in props {
            if name == &doc.pipeline.version_field && !required(name) {
                continue; // stamped at receipt when absent: leave it out of the example
            }
            if let Some(e) = prop.get("example") {
                example.insert(name.clone(), e.clone());
            }
        }
    }
    Value::Object(example)
}

fn problem_response(status: StatusCode, when: &str) -> (String, Value) {
    (
        status.as_u16().to_string(),
        json!({
            "description": when,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        }),
    )
}

fn operation(doc: &PipelineDoc<'_>) -> Value {
    let p = doc.pipeline;
    let mut responses = Map::new();
    responses.insert(
        "202".into(),
        json!({
            "description": "The broker acknowledged the event; the replica will reflect it.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
        }),
    );
    for (code, when) in [
        ("200", "Bulk (`application/x-ndjson`): every line was accepted; `results` says where each was stored."),
        ("207", "Bulk (`application/x-ndjson`): some lines were not accepted; `results` gives each line's outcome (`problem` names the field), and the accepted ones were stored."),
    ] {
        responses.insert(
            code.into(),
            json!({
                "description": when,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BulkAnswer"}}}
            }),
        );
    }
    for (status, when) in [
        (
            StatusCode::BAD_REQUEST,
            "The body is not valid JSON (the answer gives line and column).",
        ),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The body is larger than the limit.",
        ),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type is not application/json.",
        ),
        (
            StatusCode::CONFLICT,
            "A request with the same `Idempotency-Key` is being produced now (nothing was produced for this one). Retry after `Retry-After` to get its answer.",
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The event fails validation, or its `Idempotency-Key` was used for another body (or sent with a bulk body); `field` names the field.",
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not taken: too many requests in flight, every instance of the plugin busy, or the Idempotency-Key table unreachable (nothing was produced), or the broker did not acknowledge in time (the event may or may not be stored). Retry after `Retry-After`; applying an event twice changes nothing.",
        ),
    ] {
        let (code, response) = problem_response(status, when);
        responses.insert(code, response);
    }
    json!({
        "post": {
            "tags": [p.name],
            "summary": format!("Publish a `{}` event", p.name),
            "description": format!(
                "Validates the body with the pipeline's plugin, stamps `{}` with the receipt time when absent, \
                 and produces it to `{}` keyed by `{}`. Answers 202 once the broker acknowledged. \
                 With `Content-Type: application/x-ndjson`, one event per line: 200 when every line was accepted, 207 when some were not, 503 (retry the whole body) when the broker or the plugin pool took none.",
                p.version_field, p.topic, p.key_field
            ),
            "operationId": format!("ingest_{}", p.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": false,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "A retry with the same key within the window (24 h by default) gets the first 202 answer (header `Idempotency-Replayed: true`) and produces no second event, from any engine and after a restart: keys are kept in a DynamoDB table (`[idempotency]`). The same key with another body is refused (422); while the first request is in flight, 409."
            }],
            "requestBody": {
                "required": true,
                "content": {
                    "application/json": {"schema": doc.schema, "example": example(doc)},
                    NDJSON: {
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "pattern": "\\S",
                            "description": "Bulk: one event per line (each as the application/json body), at most `--bulk-max-lines` lines (10,000 by default). Every line is checked, the accepted ones are produced all in flight, and the answer (200 or 207) comes once each is acknowledged. An Idempotency-Key is refused here (422)."
                        },
                        "example": format!("{}\n{}\n", example(doc), example(doc))
                    }
                }
            },
            "responses": responses
        }
    })
}

fn read_operation(doc: &PipelineDoc<'_>) -> Value {
    let p = doc.pipeline;
    let (not_found, absent) = problem_response(StatusCode::NOT_FOUND, "No record has this key.");
    let (unavailable, down) = problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "DynamoDB did not answer; retry.",
    );
    json!({
        "get": {
            "tags": [p.name],
            "summary": format!("Read the stored `{}` record", p.name),
            "description": format!("The replica's current record for this `{}`, read consistently from the table.", p.key_field),
            "operationId": format!("read_{}", p.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": format!("The `{}`.", p.key_field)}],
            "responses": {
                "200": {"description": "The stored record.", "content": {"application/json": {"schema": doc.schema}}},
                not_found: absent,
                unavailable: down
            }
        }
    })
}

/// The schema `policy` exports, or `{"type": "object"}` when it exports none that parses.
pub fn schema_of(policy: &dyn Policy) -> Value {
    policy
        .schema()
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object"}))
}

/// The document and the Swagger page as they stand with the plugins now in force: rebuilt
/// when a plugin was swapped since the last request, so `/docs` shows the new schema.
pub struct LiveSpec {
    /// poem-openapi's document of the engine's own endpoints, as JSON text.
    generated: String,
    /// poem-openapi's Swagger UI page, which embeds `generated`.
    swagger_html: String,
    /// Each pipeline and the handle of its plugin.
    pipelines: Vec<(Arc<Pipeline>, PolicyHandle)>,
    /// The texts last built, and the plugin ids they were built with.
    cache: Mutex<Option<Cached>>,
    /// Which operations need credentials.
    secured: Secured,
}

/// Which operations of the document need `Authorization: Bearer …`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Secured {
    /// The pipelines' routes (an `[auth]` table is configured).
    pub pipelines: bool,
    /// `/admin/*` (`[auth]` or an admin token is configured).
    pub admin: bool,
}

/// The name of the bearer security scheme in the document.
pub const BEARER_SCHEME: &str = "bearer";

/// (the OpenAPI document, the Swagger UI page).
pub type Rendered = Arc<(String, String)>;

/// What [`LiveSpec`] built last.
struct Cached {
    ids: Vec<String>,
    texts: Rendered,
}

impl LiveSpec {
    /// A live document over `service`'s and `pipelines`.
    pub fn new<T: poem_openapi::OpenApi>(
        service: &OpenApiService<T, ()>,
        pipelines: Vec<(Arc<Pipeline>, PolicyHandle)>,
        secured: Secured,
    ) -> Self {
        Self {
            generated: service.spec(),
            swagger_html: service.swagger_ui_html(),
            pipelines,
            cache: Mutex::new(None),
            secured,
        }
    }

    /// (the OpenAPI document, the Swagger UI page), both as text.
    pub fn render(&self) -> Rendered {
        let policies: Vec<_> = self.pipelines.iter().map(|(_, h)| h.current()).collect();
        let ids: Vec<String> = policies.iter().map(|p| p.id().to_string()).collect();
        if let Ok(cache) = self.cache.lock() {
            if let Some(cached) = cache.as_ref().filter(|c| c.ids == ids) {
                return Arc::clone(&cached.texts);
            }
        }
        let docs: Vec<PipelineDoc<'_>> = self
            .pipelines
            .iter()
            .zip(&policies)
            .map(|((pipeline, _), policy)| PipelineDoc {
                pipeline,
                schema: schema_of(policy.as_ref()),
            })
            .collect();
        let spec = serde_json::from_str(&self.generated)
            .map(|base| with_security(with_pipelines(base, &docs), &docs, self.secured).to_string())
            .unwrap_or_else(|_| self.generated.clone());
        // poem-openapi embeds the document in its page as a script literal, and has no way to
        // embed another: the one it embedded is swapped for the live one, made script-safe.
        let html = self
            .swagger_html
            .replacen(&self.generated, &script_safe(&spec), 1);
        let texts = Arc::new((spec, html));
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some(Cached {
                ids,
                texts: Arc::clone(&texts),
            });
        }
        texts
    }
}

/// `json` with `<`, `>`, `&`, U+2028 and U+2029 written as `\u` escapes: the same JSON, and safe
/// inside an HTML `<script>` (nothing in it can close the script or start a comment).
pub fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The component schemas of the 202 and problem bodies, from their types.
fn shared_schemas() -> Map<String, Value> {
    let mut registry = Registry::new();
    Accepted::register(&mut registry);
    Problem::register(&mut registry);
    BulkAnswer::register(&mut registry);
    registry
        .schemas
        .iter()
        .filter_map(|(name, schema)| Some((name.clone(), serde_json::to_value(schema).ok()?)))
        .collect()
}

/// Adds every pipeline's operations and the schemas they refer to to `spec`.
fn with_pipelines(mut spec: Value, pipelines: &[PipelineDoc<'_>]) -> Value {
    let paths = spec
        .as_object_mut()
        .map(|o| o.entry("paths").or_insert_with(|| json!({})));
    if let Some(Value::Object(paths)) = paths {
        for doc in pipelines {
            let Some(route) = doc.pipeline.route.as_deref() else {
                continue;
            };
            paths.insert(route.to_string(), operation(doc));
            paths.insert(format!("{route}/{{id}}"), read_operation(doc));
        }
    }
    let schemas = spec.as_object_mut().map(|o| {
        o.entry("components")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|c| c.entry("schemas").or_insert_with(|| json!({})))
    });
    if let Some(Some(Value::Object(schemas))) = schemas {
        schemas.extend(shared_schemas());
    }
    spec
}

/// `spec` with the bearer scheme declared and required by every operation `secured` names,
/// each of which also documents its 401 and 403 answers (so Swagger UI's "Authorize" works).
fn with_security(mut spec: Value, pipelines: &[PipelineDoc<'_>], secured: Secured) -> Value {
    if !secured.pipelines && !secured.admin {
        return spec;
    }
    let needs = |path: &str| {
        (secured.admin && path.starts_with(super::ADMIN_PATH))
            || (secured.pipelines && path == super::METRICS_PATH)
            || (secured.pipelines
                && pipelines.iter().any(|d| {
                    d.pipeline
                        .route
                        .as_deref()
                        .is_some_and(|route| path == route || path == format!("{route}/{{id}}"))
                }))
    };
    if let Some(Value::Object(paths)) = spec.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            if !needs(path) {
                continue;
            }
            for operation in item
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                operation["security"] = json!([{ BEARER_SCHEME: [] }]);
                if let Some(Value::Object(responses)) = operation.get_mut("responses") {
                    for (status, when) in [
                        (StatusCode::UNAUTHORIZED, "No credentials, or credentials that are not valid (see `WWW-Authenticate`)."),
                        (StatusCode::FORBIDDEN, "The caller lacks the scope this operation needs."),
                    ] {
                        let (code, answer) = problem_response(status, when);
                        responses.entry(code).or_insert(answer);
                    }
                }
            }
        }
    }
    if let Some(components) = spec
        .as_object_mut()
        .map(|o| o.entry("components").or_insert_with(|| json!({})))
    {
        components["securitySchemes"] = json!({
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key of `[auth.api_keys]` or a JWT of the `[auth.jwt]` issuer. Scopes: `<pipeline>:write` to POST, `<pipeline>:read` to GET a record, `admin` for /admin."
            }
        });
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secured_operations_require_the_bearer_scheme_and_document_401_and_403() {
        let pipeline = crate::testing::pipeline("patient-profile");
        let doc = PipelineDoc {
            pipeline: &pipeline,
            schema: json!({"type": "object"}),
        };
        let base = json!({"openapi": "3.0.0", "paths": {
            "/healthz": {"get": {"responses": {}}},
            "/admin/pipelines": {"get": {"responses": {}}}
        }});
        let spec = with_security(
            with_pipelines(base, std::slice::from_ref(&doc)),
            std::slice::from_ref(&doc),
            Secured {
                pipelines: true,
                admin: true,
            },
        );
        let route = pipeline.route.as_deref().unwrap_or_default();
        assert_eq!(
            spec["paths"][route]["post"]["security"],
            json!([{"bearer": []}])
        );
        assert!(spec["paths"][format!("{route}/{{id}}")]["get"]["responses"]["403"].is_object());
        assert!(spec["paths"]["/admin/pipelines"]["get"]["responses"]["401"].is_object());
        assert!(spec["paths"]["/healthz"]["get"].get("security").is_none());
        assert_eq!(
            spec["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn a_version_the_schema_requires_stays_in_the_example() {
        let pipeline = crate::testing::pipeline("practitioner");
        let doc = PipelineDoc {
            pipeline: &pipeline,
            schema: json!({"type": "object", "required": ["PatientId", "UpdatedAt"], "properties": {
                "PatientId": {"type": "string", "example": "1"},
                "UpdatedAt": {"example": 7}
            }}),
        };
        assert_eq!(example(&doc), json!({"PatientId": "1", "UpdatedAt": 7}));
    }

    #[test]
    fn pipeline_operation_is_added_with_schema_and_example() {
        let pipeline = crate::testing::pipeline("patient-profile");
        let doc = PipelineDoc {
            pipeline: &pipeline,
            schema: json!({"type": "object", "properties": {
                "PatientId": {"type": "string", "example": "1"},
                "UpdatedAt": {"type": "string", "example": "x"}
            }}),
        };
        let spec = with_pipelines(
            json!({"openapi": "3.0.0", "paths": {"/healthz": {}}}),
            &[doc],
        );
        let post = &spec["paths"]["/patient-profile"]["post"];
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["example"],
            json!({"PatientId": "1"})
        );
        for code in [
            "200", "202", "207", "400", "409", "413", "415", "422", "503",
        ] {
            assert!(post["responses"].get(code).is_some(), "{code}");
        }
        assert!(spec["paths"].get("/healthz").is_some());
        let read = &spec["paths"]["/patient-profile/{id}"]["get"];
        for code in ["200", "404", "503"] {
            assert!(read["responses"].get(code).is_some(), "{code}: {read}");
        }
        let schemas = &spec["components"]["schemas"];
        assert_eq!(
            schemas["Problem"]["properties"]["status"]["type"],
            "integer"
        );
        assert!(
            schemas["Accepted"]["properties"]["updatedAt"].is_object(),
            "{schemas}"
        );
    }

    #[test]
    fn a_script_in_the_schema_cannot_end_the_pages_script() {
        let hostile = json!({"description": "</script><script>alert(1)</script> & \u{2028}"});
        let safe = script_safe(&hostile.to_string());
        assert!(
            !safe.contains('<') && !safe.contains('>') && !safe.contains('&'),
            "{safe}"
        );
        let back: Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, hostile, "the same document");
    }
}
