//! A pipeline's `plugin_config` table, TOML as written, turned into the JSON object its plugin
//! is handed. The engine does not read it: its keys and their meaning are the plugin's.

use serde_json::{Map, Number, Value};

/// `table` as a JSON object: TOML's strings, integers, booleans, arrays and tables as
/// themselves, floats as numbers, datetimes as their RFC 3339 text. A float JSON cannot hold
/// (`nan`, `inf`) is refused, naming its key.
pub(super) fn to_json(table: &toml::Table) -> Result<Map<String, Value>, String> {
    table
        .iter()
        .map(|(key, value)| Ok((key.clone(), value_to_json(value, key)?)))
        .collect()
}

fn value_to_json(value: &toml::Value, at: &str) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(n) => Value::Number((*n).into()),
        toml::Value::Float(f) => Value::Number(Number::from_f64(*f).ok_or_else(|| {
            format!("`{at}` is {f}, which JSON cannot hold: a plugin is handed its configuration as JSON")
        })?),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| value_to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(key, item)| Ok((key.clone(), value_to_json(item, &format!("{at}.{key}"))?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn convert(text: &str) -> Result<Value, String> {
        let table: toml::Table = toml::from_str(text).expect("the fixture is TOML");
        to_json(&table).map(Value::Object)
    }

    #[test]
    fn every_toml_value_becomes_its_json_and_datetimes_rfc_3339_text() {
        let got = convert(
            r#"
            key_field = "PatientId"
            n = 3
            ratio = 0.5
            on = true
            since = 2006-01-02T15:00:00.5+10:00
            day = 2006-01-02
            list = ["a", 1]
            [fields.PatientId]
            example = "1"
            "#,
        )
        .expect("converts");
        assert_eq!(
            got,
            json!({
                "key_field": "PatientId", "n": 3, "ratio": 0.5, "on": true,
                "since": "2006-01-02T15:00:00.5+10:00", "day": "2006-01-02",
                "list": ["a", 1], "fields": {"PatientId": {"example": "1"}}
            })
        );
    }

    const PIPELINE: &str = r#"
[pipelines.p]
route = "/p"
topic = "p"
key_field = "Id"
version_field = "At"
table = "ppp"
plugin = "p.wasm"
"#;

    #[test]
    fn a_pipeline_takes_its_plugin_config_as_a_table_or_inline_and_none_is_empty() {
        let base = std::path::Path::new("/etc/ordo");
        let table = format!("{PIPELINE}[pipelines.p.plugin_config]\nkey_field = \"Id\"\n[pipelines.p.plugin_config.fields]\nId = {{ example = \"1\" }}\n");
        let inline = format!("{PIPELINE}plugin_config = {{ key_field = \"Id\", fields = {{ Id = {{ example = \"1\" }} }} }}\n");
        for text in [table, inline] {
            let p = crate::config::from_str(&text, base).expect("a right file");
            assert_eq!(
                Value::Object(p[0].plugin_config.clone()),
                json!({"key_field": "Id", "fields": {"Id": {"example": "1"}}})
            );
            assert_eq!(
                p[0].plugin_spec().config,
                r#"{"fields":{"Id":{"example":"1"}},"key_field":"Id"}"#
            );
        }
        let p = crate::config::from_str(PIPELINE, base).expect("a right file");
        assert_eq!(p[0].plugin_spec().config, "{}");
        let err = crate::config::from_str(&format!("{PIPELINE}plugin_config = 3\n"), base)
            .expect_err("not a table")
            .to_string();
        assert!(err.contains("`plugin_config`"), "{err}");
        let err =
            crate::config::from_str(&format!("{PIPELINE}plugin_config = {{ x = nan }}\n"), base)
                .expect_err("nan")
                .to_string();
        assert!(err.contains("`plugin_config` `x` is NaN"), "{err}");
    }

    #[test]
    fn a_float_json_cannot_hold_is_refused_naming_its_key() {
        let err = convert("[limits]\nmax = [1.0, nan]").expect_err("nan");
        assert!(err.contains("`limits.max[1]`"), "{err}");
    }
}
