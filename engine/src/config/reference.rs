//! The reference of the configuration, `docs/config.md`, generated: the tables of keys come
//! from the file types' doc comments and defaults (through their JSON Schema), the prose
//! around them from `reference.md`, the flags from the CLI's definitions (`ordo config docs`
//! passes them in). `engine/tests/config_docs.rs` fails when the committed page differs.

use schemars::schema::{RootSchema, Schema, SchemaObject};
use schemars::schema_for;
use serde_json::Value;

use super::auth::AuthFile;
use super::file::{AuditFile, IdempotencyFile, PipelineFile};

/// The page around the tables: `{{name}}` marks where each goes.
const TEMPLATE: &str = include_str!("reference.md");

/// Marks a required key in its doc comment.
const REQUIRED: &str = "(required)";

/// One row of a table of keys.
struct Row {
    key: String,
    required: bool,
    default: String,
    meaning: String,
}

/// A doc comment as one line of Markdown.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A default value as the file would write it, or "" when it says nothing useful.
fn default_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => format!("`\"{s}\"`"),
        Some(Value::Object(map)) if map.is_empty() => "`{}`".into(),
        Some(Value::Object(_)) => String::new(),
        Some(other) => format!("`{other}`"),
    }
}

fn rows(object: &SchemaObject) -> Vec<Row> {
    let Some(validation) = object.object.as_ref() else {
        return Vec::new();
    };
    validation
        .properties
        .iter()
        .map(|(key, schema)| {
            let metadata = match schema {
                Schema::Object(o) => o.metadata.as_deref(),
                Schema::Bool(_) => None,
            };
            let description = metadata
                .and_then(|m| m.description.as_deref())
                .unwrap_or("");
            let required = description.contains(REQUIRED);
            Row {
                key: key.clone(),
                required,
                default: default_text(metadata.and_then(|m| m.default.as_ref())),
                meaning: one_line(&description.replace(REQUIRED, "")).replace(" .", "."),
            }
        })
        .collect()
}

/// The Markdown table of `object`'s keys.
fn table(object: &SchemaObject) -> String {
    let mut out = String::from("| key | required | default | meaning |\n|---|---|---|---|\n");
    for row in rows(object) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            row.key,
            if row.required { "yes" } else { "" },
            row.default,
            row.meaning.replace('|', "\\|")
        ));
    }
    out.trim_end().to_string()
}

/// The table of the type `name` defined in `root` (a table nested in another).
fn defined(root: &RootSchema, name: &str) -> String {
    match root.definitions.get(name) {
        Some(Schema::Object(o)) => table(o),
        _ => format!("(no definition of {name})"),
    }
}

/// The whole page, with `flags` (the CLI's table) in its place.
pub fn markdown(flags: &str) -> String {
    let pipeline = schema_for!(PipelineFile);
    let auth = schema_for!(AuthFile);
    let parts = [
        ("{{pipeline}}", table(&pipeline.schema)),
        ("{{table_options}}", defined(&pipeline, "TableOptionsFile")),
        ("{{auth}}", table(&auth.schema)),
        ("{{api_keys}}", defined(&auth, "ApiKeyFile")),
        ("{{jwt}}", defined(&auth, "JwtFile")),
        (
            "{{idempotency}}",
            table(&schema_for!(IdempotencyFile).schema),
        ),
        ("{{audit}}", table(&schema_for!(AuditFile).schema)),
        ("{{flags}}", flags.trim_end().to_string()),
    ];
    let mut page = TEMPLATE.to_string();
    for (mark, text) in parts {
        page = page.replace(mark, &text);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_pipeline_is_in_the_page_with_its_default_and_required_ones_marked() {
        let page = markdown("| flag |");
        assert!(!page.contains("{{"), "every mark is filled");
        assert!(page.contains("| `topic` | yes |  |"), "{page}");
        assert!(page.contains("| `route` |  |  |"), "{page}");
        assert!(page.contains("| `partitions` |  | `6` |"));
        assert!(page.contains("| `window_hours` |  | `24` |"));
        assert!(page.contains("| `billing_mode` |"));
        assert!(!page.contains(REQUIRED));
    }
}
