//! What of an event may reach a log line. Record values never do; a key appears as a short
//! keyed hash (`k:3f9a…`), the same for the same key within one process (or across processes
//! that share `ORDO_LOG_KEY_SECRET`), so lines about one record can be found together without
//! the log naming the patient. `--log-keys` writes keys as they are, for a development stack.
//! Why an event was refused is logged (and shown on the operator page) through [`reason`],
//! which masks what may be a value in it: a plugin writes its own reasons.

use std::fmt;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How keys are written in logs, set once at start-up.
static KEYS: OnceLock<Keys> = OnceLock::new();

/// How keys are written.
enum Keys {
    /// As they are.
    Plain,
    /// As the first bytes of HMAC-SHA-256 under this secret.
    Hashed(Vec<u8>),
}

/// Hex digits of the hash shown: 48 bits, enough to tell keys apart in a log.
const SHOWN_BYTES: usize = 6;

/// Sets how keys are written: as they are (`plain`), else hashed under `secret`, or under a
/// random secret of this process when none is given. The first call wins.
pub fn init(plain: bool, secret: Option<&str>) {
    let keys = if plain {
        Keys::Plain
    } else {
        Keys::Hashed(match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => random_secret(),
        })
    };
    let _ = KEYS.set(keys);
}

fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    // Without randomness the secret is fixed: hashes are then only as strong as a plain hash.
    let _ = getrandom::fill(&mut secret);
    secret
}

/// `key` as a log line may show it.
pub fn key(key: &str) -> LogKey<'_> {
    LogKey(key)
}

/// A key, displayed as [`init`] said.
pub struct LogKey<'a>(&'a str);

impl fmt::Display for LogKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = KEYS.get_or_init(|| Keys::Hashed(random_secret()));
        match keys {
            Keys::Plain => f.write_str(self.0),
            Keys::Hashed(secret) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                    return f.write_str("k:?");
                };
                mac.update(self.0.as_bytes());
                f.write_str("k:")?;
                for byte in &mac.finalize().into_bytes()[..SHOWN_BYTES] {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// What stands for a masked value.
const MASK: &str = "…";

/// `reason` (why an event was refused) with what may be a value masked, for places that must
/// never show one (the operator page): the inside of every `"…"`, every backticked span that
/// is not a plain name (or that follows `boolean`, `integer`, `character`, …, as serde writes
/// a value), and every number of five digits or more, dates and times included (identifiers,
/// phone numbers, birth dates). Field names, which reasons quote in backticks, stay readable.
pub fn reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(c) = rest.chars().next() {
        match c {
            '"' => {
                let end = closing(&rest[1..], '"');
                out.push('"');
                out.push_str(MASK);
                out.push('"');
                rest = end.map_or("", |e| &rest[1 + e + 1..]);
            }
            '`' => {
                let end = closing(&rest[1..], '`');
                let inside = end.map_or(&rest[1..], |e| &rest[1..1 + e]);
                out.push('`');
                out.push_str(if is_name(inside) && !after_type_word(&out) {
                    inside
                } else {
                    MASK
                });
                out.push('`');
                rest = end.map_or("", |e| &rest[1 + e + 1..]);
            }
            d if d.is_ascii_digit() => {
                let number = number(rest);
                let digits = number.chars().filter(char::is_ascii_digit).count();
                out.push_str(if digits >= MASKED_DIGITS {
                    MASK
                } else {
                    number
                });
                rest = &rest[number.len()..];
            }
            c => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Numbers with this many digits or more are masked (a date, a time, an identifier, a phone
/// number); shorter ones (a count, a year alone, `RFC 3339`) stay.
const MASKED_DIGITS: usize = 5;

/// The number `text` starts with: digits, with the separators of dates and times between
/// them (`2031-01-02T15:00:00`), up to its last digit.
fn number(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || "-/.:+TZ".contains(c)))
        .unwrap_or(text.len());
    let last_digit = text[..end]
        .rfind(|c: char| c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    &text[..last_digit]
}

/// Where the `close` ending a span that starts at `text` is (a backslash escapes one).
fn closing(text: &str, close: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == close => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether `text` reads as a field name rather than a value.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(text, "true" | "false" | "null")
        && text.chars().filter(char::is_ascii_digit).count() < 4
}

/// Whether what was written so far ends with a word serde puts before a value.
fn after_type_word(written: &str) -> bool {
    let before = written.trim_end_matches('`').trim_end();
    [
        "boolean",
        "integer",
        "character",
        "point",
        "number",
        "value",
        "string",
        "char",
        "bool",
    ]
    .iter()
    .any(|w| before.ends_with(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_keeps_field_names_and_loses_values() {
        for (given, shown) in [
            (
                "plugin rejected the event: `IsPregnant` must be \"True\" or \"False\"",
                "plugin rejected the event: `IsPregnant` must be \"…\" or \"…\"",
            ),
            (
                "invalid type: string \"John \\\"JD\\\" Doe\", expected a boolean at line 1 column 22",
                "invalid type: string \"…\", expected a boolean at line 1 column 22",
            ),
            (
                "invalid type: boolean `true`, expected a string",
                "invalid type: boolean `…`, expected a string",
            ),
            ("invalid value: integer `5`", "invalid value: integer `…`"),
            ("missing field `PatientId`", "missing field `PatientId`"),
            (
                "`UpdatedAt` 2031-01-02T15:00:00Z is ahead of the clock",
                "`UpdatedAt` …Z is ahead of the clock",
            ),
            (
                "must be an RFC 3339 timestamp such as 2006-01-02T15:00:00.5+10:00 (born 1984-03-12.)",
                "must be an RFC 3339 timestamp such as … (born ….)",
            ),
            ("record of 412345 bytes, over 400 KB", "record of … bytes, over 400 KB"),
            ("phone 0612345678 refused", "phone … refused"),
            ("`Phone` is `+33 6 12`", "`Phone` is `…`"),
            ("unterminated \"Jane", "unterminated \"…\""),
            ("not applied after 12 attempts", "not applied after 12 attempts"),
            ("", ""),
            ("é \"ü\" ß", "é \"…\" ß"),
        ] {
            assert_eq!(reason(given), shown, "{given}");
        }
    }

    #[test]
    fn a_key_is_shown_as_a_stable_short_hash() {
        let shown = key("patient-42").to_string();
        assert!(
            shown.starts_with("k:") && shown.len() == 2 + 2 * SHOWN_BYTES,
            "{shown}"
        );
        assert!(!shown.contains("patient-42"));
        assert_eq!(key("patient-42").to_string(), shown, "stable");
        assert_ne!(key("patient-43").to_string(), shown);
    }
}
