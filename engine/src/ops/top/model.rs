//! What `ordo top` keeps between readings: each pipeline's recent apply rates.

use std::collections::{BTreeMap, VecDeque};

pub use crate::metrics::snapshot::{rows, Row, Snapshot};

/// Rates kept per pipeline for its sparkline.
pub const HISTORY: usize = 120;

/// The last [`HISTORY`] apply rates of each pipeline, oldest first.
#[derive(Debug, Default)]
pub struct History {
    rates: BTreeMap<String, VecDeque<u64>>,
}

impl History {
    /// Adds each row's apply rate.
    pub fn push(&mut self, rows: &[Row]) {
        for row in rows {
            let rates = self.rates.entry(row.name.clone()).or_default();
            if rates.len() == HISTORY {
                rates.pop_front();
            }
            rates.push_back((row.applied + row.skipped).round() as u64);
        }
    }

    /// `pipeline`'s rates, oldest first.
    pub fn of(&self, pipeline: &str) -> Vec<u64> {
        self.rates
            .get(pipeline)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::parse;
    use super::*;

    const BEFORE: &str = r#"ordo_ingest_requests_total{pipeline="p",status="202"} 10
ordo_ingest_requests_total{pipeline="p",status="422"} 1
ordo_events_total{pipeline="p",outcome="applied"} 5
ordo_events_total{pipeline="p",outcome="skipped_stale"} 1
ordo_events_total{pipeline="p",outcome="dead_lettered"} 0
ordo_consumer_lag{pipeline="p",partition="0"} 4
ordo_plugin_info{pipeline="p",plugin="sha256:ab"} 1
ordo_plugin_call_seconds_sum{pipeline="p",call="merge"} 0.001
ordo_plugin_call_seconds_count{pipeline="p",call="merge"} 10
ordo_plugin_reloads_total{outcome="swapped"} 0
"#;

    const AFTER: &str = r#"ordo_ingest_requests_total{pipeline="p",status="202"} 30
ordo_ingest_requests_total{pipeline="p",status="422"} 3
ordo_events_total{pipeline="p",outcome="applied"} 25
ordo_events_total{pipeline="p",outcome="skipped_stale"} 5
ordo_events_total{pipeline="p",outcome="dead_lettered"} 2
ordo_consumer_lag{pipeline="p",partition="0"} 1
ordo_consumer_lag{pipeline="p",partition="1"} 2
ordo_plugin_info{pipeline="p",plugin="sha256:cd"} 1
ordo_plugin_call_seconds_sum{pipeline="p",call="merge"} 0.003
ordo_plugin_call_seconds_count{pipeline="p",call="merge"} 30
ordo_plugin_reloads_total{outcome="swapped"} 1
"#;

    #[test]
    fn rates_come_from_two_readings() {
        let before = Snapshot::from_samples(&parse(BEFORE));
        let after = Snapshot::from_samples(&parse(AFTER));
        assert_eq!(after.swapped, 1.0);
        let rows = rows(&before, &after, 2.0);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.ingest, r.refused, r.applied, r.skipped),
            (10.0, 1.0, 10.0, 2.0)
        );
        assert_eq!(r.dead_letters, (2.0, 2.0));
        assert_eq!(r.applied_total, 25.0);
        assert_eq!(r.lag.0, 3.0);
        assert_eq!(r.plugin, "sha256:cd");
        let micros = r.merge_micros.expect("merges happened");
        assert!((micros - 100.0).abs() < 1e-6, "{micros}");
    }

    #[test]
    fn a_restarted_engine_shows_no_negative_rate() {
        let before = Snapshot::from_samples(&parse(AFTER));
        let after = Snapshot::from_samples(&parse(BEFORE));
        let r = &rows(&before, &after, 1.0)[0];
        assert_eq!((r.ingest, r.applied), (0.0, 0.0));
    }
}
