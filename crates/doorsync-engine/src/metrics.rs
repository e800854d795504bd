//! Counters and a histogram for `/metrics`, rendered in the Prometheus text format by hand: a few
//! dozen series do not justify a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds, in seconds, of the transition lateness histogram.
const LATENESS_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    lateness: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENESS_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn label(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    fn add(&self, name: &'static str, labels: &[(&str, &str)], n: u64) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((name, label(labels))).or_insert(0) += n;
    }

    pub fn count_reconcile(&self, outcome: &str) {
        self.add("doorsync_reconciles_total", &[("outcome", outcome)], 1);
    }

    pub fn count_change(&self, operation: &str) {
        self.add(
            "doorsync_membership_changes_total",
            &[("operation", operation)],
            1,
        );
    }

    pub fn count_drift(&self, kind: &str, n: u64) {
        self.add("doorsync_drift_findings_total", &[("kind", kind)], n);
    }

    /// How long after its due time a subject was reconciled.
    pub fn observe_lateness(&self, seconds: f64) {
        let mut h = self.lateness.lock().unwrap_or_else(|e| e.into_inner());
        let seconds = seconds.max(0.0);
        for (i, bound) in LATENESS_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The Prometheus text; `extra` adds gauges and provider call counts read at scrape time.
    pub fn render(
        &self,
        gauges: &[(&str, &str, f64)],
        provider_calls: &[(String, String, String, u64)],
    ) -> String {
        let mut out = String::new();
        let help: [(&str, &str); 4] = [
            ("doorsync_reconciles_total", "Reconciles by outcome"),
            (
                "doorsync_membership_changes_total",
                "Changes made in the provider by operation",
            ),
            (
                "doorsync_drift_findings_total",
                "Drift found by the audit, by kind",
            ),
            (
                "doorsync_provider_calls_total",
                "Provider HTTP calls by connection, endpoint and outcome",
            ),
        ];
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        for (name, text) in help {
            let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} counter");
            for ((n, labels), v) in counters.iter() {
                if *n == name {
                    let _ = writeln!(out, "{name}{labels} {v}");
                }
            }
            if name == "doorsync_provider_calls_total" {
                for (connection, endpoint, outcome, n) in provider_calls {
                    let l = label(&[
                        ("connection", connection),
                        ("endpoint", endpoint),
                        ("outcome", outcome),
                    ]);
                    let _ = writeln!(out, "{name}{l} {n}");
                }
            }
        }
        drop(counters);
        let h = self.lateness.lock().unwrap_or_else(|e| e.into_inner());
        let name = "doorsync_transition_lateness_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a subject's due instant to the end of its reconcile"
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, bound) in LATENESS_BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", h.buckets[i]);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            h.count, h.sum, h.count
        );
        for (name, text, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} gauge\n{name} {v}");
        }
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
        assert!(text.contains("doorsync_transition_lateness_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("doorsync_transition_lateness_seconds_count 2"));
        assert!(text.contains("doorsync_due_subjects 4"));
        assert!(text.contains("endpoint=\"PUT /groups/{id}/users/{id}\""));
    }
}
