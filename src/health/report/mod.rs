//! Output formats of a [`Report`], one file each: `text.rs`, a grouped,
//! aligned text report for people (colour optional, each problem with its
//! remedy); `json.rs`, the [`Report`] itself (schema in
//! docs/status-schema.json); `nagios.rs`, a Nagios plugin line with
//! perfdata and exit code; `prometheus.rs`, the Prometheus text exposition
//! format for node_exporter's textfile collector.
//!
//! Rendering only: what the report contains is decided in `health/mod.rs`;
//! where it is written and the exit code policy in `commands/status.rs`.

mod json;
mod nagios;
mod prometheus;
mod text;

pub(crate) use json::json;
pub(crate) use nagios::{nagios, nagios_code, nagios_unknown};
pub(crate) use prometheus::prometheus;
pub(crate) use text::human;

#[cfg(test)]
pub(crate) mod tests {
    use crate::config::HealthConfig;
    use crate::health::tests::healthy_facts;
    use crate::health::Report;

    /// The report over healthy facts changed by `f`.
    pub(crate) fn report(f: impl FnOnce(&mut crate::health::Facts)) -> Report {
        let mut facts = healthy_facts();
        f(&mut facts);
        Report::new(facts, &HealthConfig::default(), &[], std::time::Instant::now())
    }
}
