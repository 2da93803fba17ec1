//! `/metrics` in the Prometheus text exposition format (0.0.4), read from
//! the spool index like `firstlookd status`. Labels carry destination
//! names, finding ids, outcomes and model names: never patient data.

use std::fmt::Write;

use rusqlite::Connection;

use crate::spool::{table_exists, IndexError};
use crate::status::{DestinationStatus, StatusReport};

/// Upper bounds (seconds) of the decision latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect::<Vec<_>>()
            .join(",");
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        }
    }

    /// One sample per row of `sql`: the values of `labels`, then a count.
    fn grouped(
        &mut self,
        conn: &Connection,
        name: &str,
        labels: &[&str],
        sql: &str,
    ) -> Result<(), IndexError> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let values = (0..labels.len())
                .map(|i| r.get::<_, String>(i))
                .collect::<Result<Vec<_>, _>>()?;
            let n: i64 = r.get(labels.len())?;
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            self.sample(name, &pairs, n as f64);
        }
        Ok(())
    }
}

/// The exposition for `status` plus what only the index's tables give.
pub fn render(status: &StatusReport, conn: &Connection) -> Result<String, IndexError> {
    let mut o = Out(String::new());
    // Counts of what the spool holds: they fall when retention removes
    // instances, so they are gauges, not counters.
    o.family(
        "firstlook_spool_instances",
        "gauge",
        "Instances received from scanners and held in the spool.",
    );
    o.sample("firstlook_spool_instances", &[], status.instances as f64);
    o.family(
        "firstlook_spool_results",
        "gauge",
        "Instances the box made (SR reports and heatmap images) held in the spool.",
    );
    o.sample("firstlook_spool_results", &[], status.results as f64);
    o.family(
        "firstlook_spool_bytes",
        "gauge",
        "Bytes of records in the spool.",
    );
    o.sample("firstlook_spool_bytes", &[], status.spool_bytes as f64);
    o.family(
        "firstlook_disk_available_bytes",
        "gauge",
        "Free bytes on the spool's filesystem.",
    );
    o.sample(
        "firstlook_disk_available_bytes",
        &[],
        status.disk_available_bytes as f64,
    );
    type PerDestination = fn(&DestinationStatus) -> u64;
    let per_destination: [(&str, &str, &str, PerDestination); 3] = [
        (
            "firstlook_spool_delivered",
            "gauge",
            "Instances in the spool delivered to a destination.",
            |d| d.delivered,
        ),
        (
            "firstlook_dead_lettered",
            "gauge",
            "Instances given up for a destination (dead letters).",
            |d| d.dead,
        ),
        (
            "firstlook_forward_queue_depth",
            "gauge",
            "Instances waiting to be delivered to a destination.",
            |d| d.pending,
        ),
    ];
    for (name, kind, help, value) in per_destination {
        o.family(name, kind, help);
        for d in &status.destinations {
            o.sample(name, &[("destination", &d.name)], value(d) as f64);
        }
    }
    if let Some(t) = &status.triage {
        o.family(
            "firstlook_triage_queue_depth",
            "gauge",
            "Instances received and not yet looked at by the model.",
        );
        o.sample("firstlook_triage_queue_depth", &[], t.queue as f64);
        o.family(
            "firstlook_triage_awaiting_series",
            "gauge",
            "Scored slices waiting for the rest of their series.",
        );
        o.sample(
            "firstlook_triage_awaiting_series",
            &[],
            t.awaiting_series as f64,
        );
        if let Some(m) = &t.model {
            o.family(
                "firstlook_model_ready",
                "gauge",
                "1 when the model is loaded and proven on its golden cases.",
            );
            o.sample(
                "firstlook_model_ready",
                &[
                    ("model", m.name.as_deref().unwrap_or("")),
                    ("version", m.version.as_deref().unwrap_or("")),
                    ("engine", m.engine.as_deref().unwrap_or("")),
                    (
                        "clinical_use",
                        if m.clinical_use == Some(true) {
                            "true"
                        } else {
                            "false"
                        },
                    ),
                ],
                if m.state == "ready" { 1.0 } else { 0.0 },
            );
        }
    }
    if table_exists(conn, "decisions")? {
        o.family(
            "firstlook_decisions_total",
            "counter",
            "Triage decisions per finding and outcome.",
        );
        o.grouped(
            conn,
            "firstlook_decisions_total",
            &["finding", "outcome"],
            "SELECT coalesce(finding, 'none'), outcome, count(*) FROM decisions GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        // Per decision: from the last instance of its unit received to the decision.
        let mut secs: Vec<f64> = conn
            .prepare("SELECT (decided_at - received_last_at) / 1000.0 FROM decisions")?
            .query_map([], |r| r.get::<_, f64>(0))?
            .collect::<Result<_, _>>()?;
        secs.sort_by(f64::total_cmp);
        let name = "firstlook_decision_latency_seconds";
        o.family(
            name,
            "histogram",
            "Time from receiving a unit's last instance to its decision.",
        );
        for le in LATENCY_BUCKETS {
            let n = secs.partition_point(|&s| s <= le);
            o.sample(
                &format!("{name}_bucket"),
                &[("le", &le.to_string())],
                n as f64,
            );
        }
        o.sample(
            &format!("{name}_bucket"),
            &[("le", "+Inf")],
            secs.len() as f64,
        );
        o.sample(&format!("{name}_sum"), &[], secs.iter().sum());
        o.sample(&format!("{name}_count"), &[], secs.len() as f64);
    }
    if table_exists(conn, "results")? {
        o.family(
            "firstlook_reports_total",
            "counter",
            "Reports (SR and heatmap) per state and mode.",
        );
        o.grouped(
            conn,
            "firstlook_reports_total",
            &["state", "mode"],
            "SELECT state, mode, count(*) FROM results GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
    }
    if table_exists(conn, "hl7_outbox")? {
        o.family(
            "firstlook_hl7_messages",
            "gauge",
            "HL7 messages to the RIS per state (pending, sent, dead).",
        );
        o.grouped(
            conn,
            "firstlook_hl7_messages",
            &["state"],
            "SELECT state, count(*) FROM hl7_outbox GROUP BY 1 ORDER BY 1",
        )?;
    }
    if table_exists(conn, "feedback")? {
        o.family(
            "firstlook_feedback_total",
            "counter",
            "Technologists' feedback on decisions per finding, action (acknowledged, dismissed) and dismissal reason.",
        );
        o.grouped(
            conn,
            "firstlook_feedback_total",
            &["finding", "action", "reason"],
            "SELECT coalesce(finding, ''), action, coalesce(reason, ''), count(*) FROM feedback
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )?;
    }
    Ok(o.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
