//! The pipelines file read as a TOML document first: every syntax error, unknown key and
//! value of the wrong type is found in one pass, each with its line, and the pipelines are
//! still read around them, so `ordo validate` can go on to check their plugins and tables.

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::auth::AuthFile;
use super::file::{AuditFile, IdempotencyFile, PipelineFile};
use super::ConfigError;

/// What the document holds.
#[derive(Debug, Default)]
pub(super) struct Document {
    /// Each `[pipelines.<name>]` table that reads as one, in file order, without the keys
    /// that were named as problems.
    pub pipelines: Vec<(String, PipelineFile)>,
    /// The `[auth]` table, when there is one and it reads.
    pub auth: Option<AuthFile>,
    /// The `[audit]` table, or its defaults.
    pub audit: AuditFile,
    /// The `[idempotency]` table, or its defaults.
    pub idempotency: IdempotencyFile,
    /// The `[kafka]` table as written.
    pub kafka: Option<toml::Table>,
    /// Syntax errors, unknown keys and ill-typed values, in file order.
    pub problems: Vec<ConfigError>,
}

/// The top-level keys a pipelines file may have.
const TOP_LEVEL: [&str; 5] = ["pipelines", "auth", "audit", "idempotency", "kafka"];

/// Reads `text`, naming every problem it can find without the file's meaning.
pub(super) fn read(text: &str) -> Document {
    let (root, errors) = DeTable::parse_recoverable(text);
    let mut document = Document {
        problems: errors
            .iter()
            .map(|e| ConfigError::Syntax {
                path: "<string>".into(),
                line: line_of(text, e.span().map_or(0, |s| s.start)),
                message: e.message().trim().to_string(),
            })
            .collect(),
        ..Document::default()
    };
    for (key, value) in root.get_ref() {
        let line = line_of(text, key.span().start);
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("pipelines", DeValue::Table(pipelines)) => {
                for (name, body) in pipelines {
                    if let Some(problem) = super::rules::pipeline_name_problem(name.get_ref()) {
                        document.problems.push(ConfigError::Key {
                            path: "<string>".into(),
                            pipeline: None,
                            key: format!("pipelines.{}", name.get_ref()),
                            line: line_of(text, name.span().start),
                            problem,
                        });
                    }
                    if let Some(file) = pipeline(text, name.get_ref(), body, &mut document) {
                        document.pipelines.push((name.get_ref().to_string(), file));
                    }
                }
            }
            ("pipelines", _) => document.problems.push(ConfigError::Key {
                path: "<string>".into(),
                pipeline: None,
                key: "pipelines".into(),
                line,
                problem: "must hold tables such as [pipelines.patient-profile]".into(),
            }),
            ("auth", DeValue::Table(_)) => {
                if let Some(auth) = top_table::<AuthFile>(text, key, value, &mut document) {
                    document.auth = Some(auth);
                }
            }
            ("audit", DeValue::Table(_)) => {
                if let Some(audit) = top_table::<AuditFile>(text, key, value, &mut document) {
                    document.audit = audit;
                }
            }
            ("idempotency", DeValue::Table(_)) => {
                if let Some(table) = top_table::<IdempotencyFile>(text, key, value, &mut document) {
                    document.idempotency = table;
                }
            }
            ("kafka", DeValue::Table(_)) => {
                if let Some(table) = top_table::<toml::Table>(text, key, value, &mut document) {
                    document.kafka = Some(table);
                }
            }
            ("auth", _) => document.problems.push(ConfigError::Key {
                path: "<string>".into(),
                pipeline: None,
                key: "auth".into(),
                line,
                problem: "must be a table: [auth]".into(),
            }),
            (other, _) => document.problems.push(ConfigError::Key {
                path: "<string>".into(),
                pipeline: None,
                key: other.to_string(),
                line,
                problem: unknown(other, &TOP_LEVEL),
            }),
        }
    }
    document
}

/// Reads the top-level table `key` as a `T`; a table that does not read is named as a
/// problem (with the line of the fault) and gives `None`.
fn top_table<T: serde::de::DeserializeOwned>(
    text: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
    document: &mut Document,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(table) => Some(table),
        Err(error) => {
            document.problems.push(ConfigError::Key {
                path: "<string>".into(),
                pipeline: None,
                key: key.get_ref().to_string(),
                line: line_of(text, error.span().map_or(key.span().start, |s| s.start)),
                problem: error.message().trim().to_string(),
            });
            None
        }
    }
}

/// Reads one pipeline's table. A key that is unknown or has a value of the wrong type is
/// named and left out, and the table is read again without it, so every such key is named.
fn pipeline(
    text: &str,
    name: &str,
    body: &Spanned<DeValue<'_>>,
    document: &mut Document,
) -> Option<PipelineFile> {
    let DeValue::Table(table) = body.get_ref() else {
        document.problems.push(ConfigError::Key {
            path: "<string>".into(),
            pipeline: None,
            key: format!("pipelines.{name}"),
            line: line_of(text, body.span().start),
            problem: "must be a table of the pipeline's keys".into(),
        });
        return None;
    };
    let mut table: DeTable<'_> = table.clone();
    // Each pass either succeeds or removes one key, so this ends.
    loop {
        let value = Spanned::new(body.span(), DeValue::Table(table.clone()));
        let error = match PipelineFile::deserialize(ValueDeserializer::from(value)) {
            Ok(file) => return Some(file),
            Err(error) => error,
        };
        let at = error.span().map(|s| s.start);
        let culprit = table
            .iter()
            .find(|(k, v)| at.is_some_and(|at| k.span().contains(&at) || v.span().contains(&at)))
            .map(|(k, _)| k.clone());
        let message = error.message().trim().to_string();
        let Some(key) = culprit else {
            document.problems.push(ConfigError::Key {
                path: "<string>".into(),
                pipeline: Some(name.to_string()),
                key: format!("pipelines.{name}"),
                line: line_of(text, at.unwrap_or(body.span().start)),
                problem: message,
            });
            return None;
        };
        let problem = match expected_keys(&message) {
            Some(known) => unknown(key.get_ref(), &known),
            None => message,
        };
        document.problems.push(ConfigError::Key {
            path: "<string>".into(),
            pipeline: Some(name.to_string()),
            key: key.get_ref().to_string(),
            line: line_of(text, key.span().start),
            problem,
        });
        table.remove(&key);
    }
}

/// The 1-based line of byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The keys serde's "unknown field `x`, expected one of `a`, `b`" message lists, or `None`
/// when the message is about something else.
fn expected_keys(message: &str) -> Option<Vec<&str>> {
    let (_, list) = message
        .strip_prefix("unknown field")?
        .split_once("expected ")?;
    Some(list.split('`').skip(1).step_by(2).collect())
}

/// "is not a known key", with the known key closest to `key` when one is close.
fn unknown(key: &str, known: &[&str]) -> String {
    let nearest = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    match nearest {
        Some((_, k)) => format!("is not a known key; did you mean `{k}`?"),
        None => format!("is not a known key (known: {})", known.join(", ")),
    }
}

/// Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
pipeline = 1
[pipelines.a]
route = "/a"
partitons = 3
concurrency = "many"
plugin = "a.wasm"
"#;

    #[test]
    fn every_unknown_key_and_bad_value_is_named_with_its_line() {
        let document = read(TEXT);
        let problems: Vec<String> = document.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`pipeline` (line 2)"), "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("pipeline `a`: `partitons` (line 5)")
                    && p.contains("did you mean `partitions`?")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`concurrency` (line 6)") && p.contains("invalid type")),
            "{problems:?}"
        );
        // The pipeline is still read, without the keys named.
        let (name, file) = &document.pipelines[0];
        assert_eq!(name, "a");
        assert_eq!(file.route.as_deref(), Some("/a"));
        assert_eq!(file.concurrency, super::super::file::DEFAULT_CONCURRENCY);
    }

    #[test]
    fn syntax_errors_are_named_and_the_rest_still_read() {
        let document = read("[pipelines.a]\nroute = /a\ntopic = \"t\"\n");
        assert!(
            matches!(document.problems[0], ConfigError::Syntax { line: 2, .. }),
            "{:?}",
            document.problems
        );
        assert_eq!(document.pipelines.len(), 1);
    }

    #[test]
    fn suggestions_are_only_for_close_keys() {
        assert_eq!(edit_distance("partitons", "partitions"), 1);
        assert!(unknown("colour", &["route", "topic"]).contains("known: route, topic"));
    }
}
