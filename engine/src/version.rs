//! Versions from the future. A last-writer-wins rule lets the event with the latest version
//! win; an event whose version lies far ahead of the time it was received (a bad clock, or a
//! caller pinning a record with `UpdatedAt = 9999-…`) would then win against every real update
//! to come. So an RFC 3339 version more than the pipeline's `max_version_skew` ahead of the
//! receipt time is refused: at ingest against the clock, from the topic against the message's
//! Kafka timestamp. The skew allows for clocks that differ between services; five minutes by
//! default, as Kerberos allows. A version that is not an RFC 3339 instant is left to the plugin.

use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The skew allowed when a pipeline does not say.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(300);

/// Why `version` is too far ahead of `received`, or `None` (also when it is not an instant).
pub fn too_far_ahead(version: &Value, received: OffsetDateTime, skew: Duration) -> Option<String> {
    let at = OffsetDateTime::parse(version.as_str()?, &Rfc3339).ok()?;
    let ahead = at - received;
    (ahead > skew).then(|| {
        format!(
            "is {} s ahead of the time the event was received; at most {} s is allowed (the pipeline's max_version_skew)",
            ahead.whole_seconds(),
            skew.as_secs()
        )
    })
}

/// The instant `millis` after the Unix epoch, or `None` when it is out of range.
pub fn from_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

/// A duration written as seconds (`300`) or with a unit (`"90s"`, `"5m"`, `"2h"`, `"1d"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_version_past_the_skew_is_refused_and_others_pass() {
        let now = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).expect("instant");
        let skew = Duration::from_secs(300);
        assert!(too_far_ahead(&json!("2026-01-01T00:04:59Z"), now, skew).is_none());
        assert!(too_far_ahead(&json!("2025-01-01T00:00:00Z"), now, skew).is_none());
        let why = too_far_ahead(&json!("9999-12-31T23:59:59Z"), now, skew).expect("refused");
        assert!(why.contains("at most 300 s"), "{why}");
        assert!(too_far_ahead(&json!("2026-01-01T01:00:00+01:00"), now, skew).is_none());
        assert!(
            too_far_ahead(&json!(42), now, skew).is_none(),
            "not an instant"
        );
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1w"), None);
    }
}
