//! Why an event was skipped or refused, in two parts: a code and the field at fault, which
//! logs, metrics and the operator page show; and the whole text, which only the dead letter
//! carries (where access is the topic's ACL). A plugin writes its own reasons, and a
//! masking rule cannot know every way a value may appear in them, so no log line shows them:
//! [`Reason`]'s `Display` writes the code alone, and the text is reached only by
//! [`Reason::text`].

use std::fmt;

/// What kind of refusal or skip, as logs and the operator page name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The payload is not UTF-8.
    NotUtf8,
    /// The payload is not a JSON object.
    NotJson,
    /// The key field is missing or not a non-empty string.
    NoKey,
    /// The message key differs from the body's key field.
    KeyMismatch,
    /// The version is further ahead of the message's timestamp than the pipeline allows.
    VersionAhead,
    /// The plugin's `validate` refused the event.
    Invalid,
    /// The plugin's `merge` rejected the event.
    Rejected,
    /// The plugin's `merge` kept the stored record.
    Skipped,
    /// The plugin failed on the event (a trap, out of fuel, time or memory, a bad answer).
    PluginFailed,
    /// The plugin returned a record the engine cannot store as it is (not an object, the
    /// key changed).
    BadRecord,
    /// The store cannot hold the record (too large, a type it refuses).
    TooLarge,
    /// The store refused the write for good.
    StoreRefused,
    /// Transient failures outlasted the pipeline's `max_attempts`.
    GaveUp,
}

impl Code {
    /// The code as logs, metrics and the operator page write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not-utf8",
            Self::NotJson => "not-json",
            Self::NoKey => "no-key",
            Self::KeyMismatch => "key-mismatch",
            Self::VersionAhead => "version-ahead",
            Self::Invalid => "invalid",
            Self::Rejected => "rejected",
            Self::Skipped => "skipped",
            Self::PluginFailed => "plugin-failed",
            Self::BadRecord => "bad-record",
            Self::TooLarge => "too-large",
            Self::StoreRefused => "store-refused",
            Self::GaveUp => "gave-up",
        }
    }
}

/// Why one event was skipped or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    code: Code,
    /// The top-level field at fault, when it reads as a field name.
    field: Option<String>,
    /// The whole text: for the dead letter only.
    text: String,
}

impl Reason {
    /// A reason of kind `code`, whose whole text is `text`.
    pub fn new(code: Code, text: impl Into<String>) -> Self {
        Self {
            code,
            field: None,
            text: text.into(),
        }
    }

    /// Names the field at fault. A plugin chooses it, so it is kept only when it reads as a
    /// field name (letters, digits, `_`, `-`, `.`, `$`, up to 64 characters, fewer than four
    /// digits), never a value.
    pub fn at(mut self, field: &str) -> Self {
        self.field = is_name(field).then(|| field.to_string());
        self
    }

    /// The kind of refusal.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The field at fault, when known and a name.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The whole text, values and the plugin's words included: for the dead letter's
    /// `ordo-reason` header, and nowhere a log or a page can show it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The same reason with `prefix` before its text.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.text = format!("{prefix}{}", self.text);
        self
    }
}

/// The code, and the field when there is one: what a log line may show.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        match &self.field {
            Some(field) => write!(f, " `{field}`"),
            None => Ok(()),
        }
    }
}

/// Whether `text` reads as a field name rather than a value.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        && !matches!(text, "true" | "false" | "null")
        && text.chars().filter(char::is_ascii_digit).count() < 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_shows_the_code_and_a_field_name_never_the_text() {
        let reason =
            Reason::new(Code::Rejected, "`Jane Doe` is not a name we accept").at("FirstName");
        assert_eq!(reason.to_string(), "rejected `FirstName`");
        assert_eq!(reason.text(), "`Jane Doe` is not a name we accept");
        for not_a_name in ["Jane Doe", "1985-02-03", "12345", "true", "", "a\"b", "x:y"] {
            let reason = Reason::new(Code::Invalid, "t").at(not_a_name);
            assert_eq!(reason.to_string(), "invalid", "{not_a_name:?} was kept");
        }
        assert_eq!(
            Reason::new(Code::NotJson, "expected value").to_string(),
            "not-json"
        );
    }
}
