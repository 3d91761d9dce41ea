//! The Prometheus text a running engine serves at `/metrics`, read into samples with the
//! `prometheus-parse` crate. It splits labels on `,` and `=` without reading escapes, which
//! holds for every label the engine writes (pipeline names, outcomes, statuses, partitions,
//! plugin ids): none contains a comma, an equals sign or a quote.

pub use crate::metrics::snapshot::Sample;

/// The samples of an exposition (a histogram's `_sum` and `_count` among them, its buckets
/// not); comments and lines it cannot read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return Vec::new();
    };
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            Some(Sample {
                labels: s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                name: s.metric,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels() {
        let text = "# HELP x y\n# TYPE ordo_events_total counter\n\
            ordo_events_total{pipeline=\"p\",outcome=\"applied\"} 12\n\
            ordo_plugin_info{pipeline=\"p\",plugin=\"sha256:ab\"} 1\n\
            # TYPE ordo_plugin_call_seconds histogram\n\
            ordo_plugin_call_seconds_bucket{pipeline=\"p\",call=\"merge\",le=\"0.1\"} 3\n\
            ordo_plugin_call_seconds_sum{pipeline=\"p\",call=\"merge\"} 0.25\n\
            ordo_plugin_call_seconds_count{pipeline=\"p\",call=\"merge\"} 3\n\
            up 1\n\
            garbage line\n";
        let samples = parse(text);
        let find = |name: &str| samples.iter().find(|s| s.name == name);
        let events = find("ordo_events_total").expect("counter read");
        assert_eq!((events.label("outcome"), events.value), ("applied", 12.0));
        assert_eq!(
            find("ordo_plugin_info").map(|s| s.label("plugin")),
            Some("sha256:ab")
        );
        assert_eq!(
            find("ordo_plugin_call_seconds_sum").map(|s| s.value),
            Some(0.25)
        );
        assert_eq!(
            find("ordo_plugin_call_seconds_count").map(|s| s.label("call")),
            Some("merge")
        );
        assert!(find("up").is_some());
        assert_eq!(samples.len(), 5, "{samples:?}");
    }
}
