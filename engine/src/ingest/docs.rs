//! The OpenAPI document: poem-openapi's for the fixed endpoints, plus one operation per
//! pipeline built from `pipelines.toml` and the schema its plugin exports.

use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use serde_json::{json, Map, Value};

use crate::plugin::{Policy, PolicyHandle};

/// What the document needs to know about one pipeline.
#[derive(Debug, Clone)]
pub struct PipelineDoc {
    /// The pipeline's name, used as the operation's tag.
    pub name: String,
    /// Its HTTP route.
    pub route: String,
    /// Its topic, for the description.
    pub topic: String,
    /// Its key field, for the description.
    pub key_field: String,
    /// Its version field, for the description.
    pub version_field: String,
    /// The plugin's JSON Schema of a body (or `{}` when it exported none that parses).
    pub schema: Value,
}

/// The seed's body, shown as the example of the patient profile route.
fn example(doc: &PipelineDoc) -> Value {
    let mut example = Map::new();
    if let Some(Value::Object(props)) = doc.schema.get("properties") {
        for (name, prop) in props {
            if name == &doc.version_field {
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

fn operation(doc: &PipelineDoc) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "202".into(),
        json!({
            "description": "The broker acknowledged the event; the replica will reflect it.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
        }),
    );
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
            StatusCode::UNPROCESSABLE_ENTITY,
            "The event fails validation; `field` names the field.",
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not taken: too many requests in flight (nothing was produced), or the broker did not acknowledge in time (the event may or may not be stored). Retry after `Retry-After`; applying an event twice changes nothing.",
        ),
    ] {
        let (code, response) = problem_response(status, when);
        responses.insert(code, response);
    }
    json!({
        "post": {
            "tags": [doc.name],
            "summary": format!("Publish a `{}` event", doc.name),
            "description": format!(
                "Validates the body with the pipeline's plugin, stamps `{}` with the receipt time when absent, \
                 and produces it to `{}` keyed by `{}`. Answers 202 once the broker acknowledged.",
                doc.version_field, doc.topic, doc.key_field
            ),
            "operationId": format!("ingest_{}", doc.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": false,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "A retry with the same key within 24 h gets the first 202 answer (header `Idempotency-Replayed: true`) and produces no second event. Remembered per engine process."
            }],
            "requestBody": {
                "required": true,
                "content": {"application/json": {"schema": doc.schema, "example": example(doc)}}
            },
            "responses": responses
        }
    })
}

fn read_operation(doc: &PipelineDoc) -> Value {
    let (not_found, absent) = problem_response(StatusCode::NOT_FOUND, "No record has this key.");
    let (unavailable, down) = problem_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "DynamoDB did not answer; retry.",
    );
    json!({
        "get": {
            "tags": [doc.name],
            "summary": format!("Read the stored `{}` record", doc.name),
            "description": format!("The replica's current record for this `{}`, read consistently from the table.", doc.key_field),
            "operationId": format!("read_{}", doc.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": format!("The `{}`.", doc.key_field)}],
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
    /// poem-openapi's document of the fixed endpoints, as JSON text.
    generated: String,
    /// poem-openapi's Swagger UI page, which embeds `generated`.
    swagger_html: String,
    /// Each pipeline's description and the handle of its plugin.
    pipelines: Vec<(PipelineDoc, PolicyHandle)>,
    /// Whether the admin endpoints are served.
    admin: bool,
    /// The texts last built, and the plugin ids they were built with.
    cache: Mutex<Option<Cached>>,
}

/// (the OpenAPI document, the Swagger UI page).
pub type Rendered = Arc<(String, String)>;

/// What [`LiveSpec`] built last.
struct Cached {
    ids: Vec<String>,
    texts: Rendered,
}

impl LiveSpec {
    /// A live document over poem-openapi's `generated` one and its `swagger_html`.
    pub fn new(
        generated: String,
        swagger_html: String,
        pipelines: Vec<(PipelineDoc, PolicyHandle)>,
        admin: bool,
    ) -> Self {
        Self {
            generated,
            swagger_html,
            pipelines,
            admin,
            cache: Mutex::new(None),
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
        let docs: Vec<PipelineDoc> = self
            .pipelines
            .iter()
            .zip(&policies)
            .map(|((doc, _), policy)| PipelineDoc {
                schema: schema_of(policy.as_ref()),
                ..doc.clone()
            })
            .collect();
        let spec = serde_json::from_str(&self.generated)
            .map(|base| {
                let spec = with_pipelines(base, &docs);
                if self.admin { with_admin(spec) } else { spec }.to_string()
            })
            .unwrap_or_else(|_| self.generated.clone());
        let html = self.swagger_html.replacen(&self.generated, &spec, 1);
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

/// Adds the admin operations to `spec`.
fn with_admin(mut spec: Value) -> Value {
    let (unauthorised, when_unauthorised) = problem_response(
        StatusCode::UNAUTHORIZED,
        "ORDO_ADMIN_TOKEN is set and the request's `Authorization: Bearer` token is missing or wrong.",
    );
    let (not_found, when_not_found) =
        problem_response(StatusCode::NOT_FOUND, "No pipeline has this name.");
    let (refused, when_refused) = problem_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "The new plugin was refused (the detail says why); the old one keeps serving.",
    );
    if let Some(Value::Object(paths)) = spec.get_mut("paths") {
        paths.insert(
            "/admin/pipelines".into(),
            json!({"get": {
                "tags": ["admin"],
                "summary": "The plugin in force for each pipeline",
                "operationId": "admin_pipelines",
                "responses": {
                    "200": {"description": "`[{pipeline, plugin}]`, `plugin` being `sha256:<hex>` of the file.",
                            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                    unauthorised.clone(): when_unauthorised.clone()
                }
            }}),
        );
        paths.insert(
            "/admin/pipelines/{name}/reload".into(),
            json!({"post": {
                "tags": ["admin"],
                "summary": "Reload a pipeline's plugin from its file",
                "description": "Compiles the file, checks the contract, runs the pipeline's self-test, then swaps atomically. The same happens on SIGHUP and when the file changes.",
                "operationId": "admin_reload",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "`{pipeline, plugin, previous, changed}`.",
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                    unauthorised: when_unauthorised,
                    not_found: when_not_found,
                    refused: when_refused
                }
            }}),
        );
    }
    spec
}

/// Adds every pipeline's operation and the shared schemas to `spec` (poem-openapi's JSON).
pub fn with_pipelines(mut spec: Value, pipelines: &[PipelineDoc]) -> Value {
    let paths = spec
        .as_object_mut()
        .map(|o| o.entry("paths").or_insert_with(|| json!({})));
    if let Some(Value::Object(paths)) = paths {
        for doc in pipelines {
            paths.insert(doc.route.clone(), operation(doc));
            paths.insert(format!("{}/{{id}}", doc.route), read_operation(doc));
        }
    }
    let schemas = spec.as_object_mut().map(|o| {
        o.entry("components")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|c| c.entry("schemas").or_insert_with(|| json!({})))
    });
    if let Some(Some(Value::Object(schemas))) = schemas {
        schemas.insert(
            "Accepted".into(),
            json!({
                "type": "object",
                "required": ["pipeline", "key", "partition", "offset", "updatedAt"],
                "properties": {
                    "pipeline": {"type": "string"},
                    "key": {"type": "string"},
                    "partition": {"type": "integer", "format": "int32"},
                    "offset": {"type": "integer", "format": "int64"},
                    "updatedAt": {"description": "The version field as produced."}
                }
            }),
        );
        schemas.insert(
            "Problem".into(),
            json!({
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["status", "title", "detail"],
                "properties": {
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "detail": {"type": "string"},
                    "field": {"type": "string", "description": "The body field at fault."},
                    "line": {"type": "integer"},
                    "column": {"type": "integer"}
                }
            }),
        );
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_operation_is_added_with_schema_and_example() {
        let doc = PipelineDoc {
            name: "patient-profile".into(),
            route: "/patientprofile".into(),
            topic: "t".into(),
            key_field: "PatientId".into(),
            version_field: "UpdatedAt".into(),
            schema: json!({"type": "object", "properties": {
                "PatientId": {"type": "string", "example": "1"},
                "UpdatedAt": {"type": "string", "example": "x"}
            }}),
        };
        let spec = with_pipelines(
            json!({"openapi": "3.0.0", "paths": {"/healthz": {}}}),
            &[doc],
        );
        let post = &spec["paths"]["/patientprofile"]["post"];
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["example"],
            json!({"PatientId": "1"})
        );
        for code in ["202", "400", "413", "415", "422", "503"] {
            assert!(post["responses"].get(code).is_some(), "{code}");
        }
        assert!(spec["paths"].get("/healthz").is_some());
        let read = &spec["paths"]["/patientprofile/{id}"]["get"];
        for code in ["200", "404", "503"] {
            assert!(read["responses"].get(code).is_some(), "{code}: {read}");
        }
        assert!(spec["components"]["schemas"].get("Problem").is_some());
    }
}
