//! Counters and a histogram for `/metrics`, kept with prometheus-client and encoded in the
//! OpenMetrics text format, with the gauges and provider call counts read at scrape time.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Upper bounds, in seconds, of the transition lateness histogram.
const LATENESS_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub struct Metrics {
    reconciles: Family<Labels, Counter>,
    changes: Family<Labels, Counter>,
    drift: Family<Labels, Counter>,
    lateness: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Family::default(),
            changes: Family::default(),
            drift: Family::default(),
            lateness: Histogram::new(LATENESS_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn count_reconcile(&self, outcome: &str) {
        self.reconciles
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    pub fn count_change(&self, operation: &str) {
        self.changes
            .get_or_create(&labels(&[("operation", operation)]))
            .inc();
    }

    pub fn count_drift(&self, kind: &str, n: u64) {
        self.drift
            .get_or_create(&labels(&[("kind", kind)]))
            .inc_by(n);
    }

    /// How long after its due time a subject was reconciled.
    pub fn observe_lateness(&self, seconds: f64) {
        self.lateness.observe(seconds.max(0.0));
    }

    /// The OpenMetrics text; `gauges` and `provider_calls` are read at scrape time.
    pub fn render(
        &self,
        gauges: &[(&str, &str, f64)],
        provider_calls: &[(String, String, String, u64)],
    ) -> String {
        let mut registry = Registry::default();
        registry.register(
            "doorsync_reconciles",
            "Reconciles by outcome",
            self.reconciles.clone(),
        );
        registry.register(
            "doorsync_membership_changes",
            "Changes made in the provider by operation",
            self.changes.clone(),
        );
        registry.register(
            "doorsync_drift_findings",
            "Drift found by the audit, by kind",
            self.drift.clone(),
        );
        let calls = Family::<Labels, Counter>::default();
        for (connection, endpoint, outcome, n) in provider_calls {
            calls
                .get_or_create(&labels(&[
                    ("connection", connection),
                    ("endpoint", endpoint),
                    ("outcome", outcome),
                ]))
                .inc_by(*n);
        }
        registry.register(
            "doorsync_provider_calls",
            "Provider HTTP calls by connection, endpoint and outcome",
            calls,
        );
        registry.register(
            "doorsync_transition_lateness_seconds",
            "Time from a subject's due instant to the end of its reconcile",
            self.lateness.clone(),
        );
        for (name, help, v) in gauges {
            let gauge = Gauge::<f64, AtomicU64>::default();
            gauge.set(*v);
            registry.register(*name, *help, gauge);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.count_reconcile("ok");
        m.count_reconcile("ok");
        m.count_drift("stranger", 3);
        m.observe_lateness(0.3);
        m.observe_lateness(7.0);
        let text = m.render(
            &[("doorsync_due_subjects", "Subjects due now", 4.0)],
            &[(
                "c1".into(),
                "PUT /groups/{id}/users/{id}".into(),
                "ok".into(),
                9,
            )],
        );
        assert!(
            text.contains("doorsync_reconciles_total{outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("doorsync_drift_findings_total{kind=\"stranger\"} 3"));
        assert!(text.contains("doorsync_transition_lateness_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("doorsync_transition_lateness_seconds_bucket{le=\"10.0\"} 2"));
        assert!(text.contains("doorsync_transition_lateness_seconds_count 2"));
        assert!(text.contains("doorsync_due_subjects 4"));
        assert!(text.contains("endpoint=\"PUT /groups/{id}/users/{id}\""));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
