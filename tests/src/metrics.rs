//! The panel's `/metrics`, fetched and parsed with a Prometheus text parser.

use std::process::Command;
use std::time::Duration;

use crate::process::run_cmd;

/// `GET /metrics` on the panel's port, parsed; panics if it does not parse.
pub fn scrape(panel_port: u16) -> (prometheus_parse::Scrape, String) {
    let out = run_cmd(
        Command::new("curl").args([
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{panel_port}/metrics"),
        ]),
        Duration::from_secs(30),
    );
    let text = out.stdout;
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    (parsed, text)
}

/// The value of the first sample of `name` carrying all of `labels`.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}
