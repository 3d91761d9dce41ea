//! Versions from the future. A last-writer-wins rule lets the event with the latest version
//! win; an event whose version lies far ahead of the time it was received (a bad clock, or a
//! caller pinning a record with `UpdatedAt = 9999-…`) would then win against every real update
//! to come. So an RFC 3339 version more than the pipeline's `max_version_skew` ahead of the
//! receipt time is refused: at ingest against the clock, from the topic against the message's
//! Kafka timestamp. The skew allows for clocks that differ between services; five minutes by
//! default, as Kerberos allows. A version that is not an RFC 3339 instant is left to the plugin.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;

/// The skew allowed when a pipeline does not say.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(300);

/// Why `version` is too far ahead of `received`, or `None` (also when it is not an instant).
pub fn too_far_ahead(version: &Value, received: DateTime<Utc>, skew: Duration) -> Option<String> {
    let at = DateTime::parse_from_rfc3339(version.as_str()?).ok()?;
    let ahead = at.with_timezone(&Utc) - received;
    (ahead > TimeDelta::from_std(skew).unwrap_or(TimeDelta::MAX)).then(|| {
        format!(
            "is {} s ahead of the time the event was received; at most {} s is allowed (the pipeline's max_version_skew)",
            ahead.num_seconds(),
            skew.as_secs()
        )
    })
}

/// The instant `millis` after the Unix epoch, or `None` when it is out of range.
pub fn from_millis(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// `at` as RFC 3339 text in UTC, with as many fraction digits as it needs (0, 3, 6 or 9).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A duration written as seconds (`300`) or as `humantime` reads it (`"90s"`, `"5m"`,
/// `"2h"`, `"1d"`, `"1h 30m"`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_version_past_the_skew_is_refused_and_others_pass() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("instant")
            .with_timezone(&Utc);
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
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
