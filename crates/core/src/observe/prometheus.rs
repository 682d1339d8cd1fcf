//! A writer for the Prometheus text exposition format (version 0.0.4).
//!
//! Each metric family is written as a `# HELP` line, a `# TYPE` line and its
//! samples, all together; a family name may appear only once. Metric names
//! match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`
//! and may not start with `__` (reserved). Label values escape `\` as `\\`,
//! `"` as `\"` and a line feed as `\n`; HELP text escapes `\` and line feed
//! only. Values are Go-style floats: `+Inf`, `-Inf`, `NaN`, else the
//! shortest decimal that round-trips. Histograms write cumulative
//! `_bucket{le="…"}` samples ending with `le="+Inf"`, then `_sum` and
//! `_count` (equal to the `+Inf` bucket). Every line ends with `\n`. Output was
//! checked with the `prometheus_client` Python text parser.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use thiserror::Error;

use super::stats::LatencyHistogram;
use crate::gateway::telemetry::LATENCY_BUCKETS_MS;

/// The `Content-Type` of the output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a family or sample was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PromError {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name `{0}`")]
    MetricName(String),
    /// The label name does not match `[a-zA-Z_][a-zA-Z0-9_]*` or starts with `__`.
    #[error("invalid label name `{0}`")]
    LabelName(String),
    /// The same label name appears twice in one sample.
    #[error("duplicate label `{0}`")]
    DuplicateLabel(String),
    /// A histogram sample uses the reserved `le` label.
    #[error("histogram `{0}` may not have an `le` label")]
    ReservedLe(String),
    /// The family was already written.
    #[error("metric family `{0}` written twice")]
    DuplicateFamily(String),
    /// Histogram bucket bounds are not strictly increasing or counts decrease.
    #[error("histogram `{0}`: buckets must have increasing bounds and non-decreasing counts")]
    Buckets(String),
}

/// The metric types this writer emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Bucketed observations.
    Histogram,
}

impl MetricType {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Label pairs of one sample, in output order.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// One histogram series: cumulative buckets plus sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    /// `(upper bound, cumulative count)`, bounds strictly increasing, not
    /// including `+Inf` (written from `count`).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl HistogramSeries {
    /// From a [`LatencyHistogram`], bounds and sum converted to seconds
    /// (Prometheus' base unit).
    pub fn from_latency_seconds(h: &LatencyHistogram) -> Self {
        Self::from_latency_buckets(h.counts.as_slice(), h.sum_ms)
    }

    /// From per-bucket (not cumulative) latency counts over
    /// [`LATENCY_BUCKETS_MS`] (the last count is `+Inf`, as in the stored
    /// `usage_minute.b0..b11`) and their sum in ms, in seconds. Every
    /// latency histogram DOL exports goes through here, so all share the
    /// stored bucket bounds.
    pub fn from_latency_buckets(counts: &[u64], sum_ms: u64) -> Self {
        let mut acc = 0u64;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_MS.len());
        for (i, le) in LATENCY_BUCKETS_MS.iter().enumerate() {
            acc = acc.saturating_add(counts.get(i).copied().unwrap_or(0));
            buckets.push((*le as f64 / 1000.0, acc));
        }
        Self {
            buckets,
            sum: sum_ms as f64 / 1000.0,
            count: counts.iter().fold(0u64, |a, b| a.saturating_add(*b)),
        }
    }
}

/// True when `name` is a valid metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// True when `name` is a valid, non-reserved label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Escapes a label value (`\`, `"`, line feed).
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes HELP text (`\` and line feed; quotes stay as they are).
pub fn escape_help(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Formats a sample value the way Prometheus parses it.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else if v != 0.0 && (v.abs() >= 1e15 || v.abs() < 1e-4) {
        // Plain notation would print hundreds of digits for extreme values;
        // Prometheus parses Go float literals, exponents included.
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Accumulates the exposition text.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    families: BTreeSet<String>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, help: &str, kind: MetricType) -> Result<(), PromError> {
        if !valid_metric_name(name) {
            return Err(PromError::MetricName(name.to_owned()));
        }
        if self.families.contains(name) {
            return Err(PromError::DuplicateFamily(name.to_owned()));
        }
        self.families.insert(name.to_owned());
        // HELP is optional; an empty one would only add a dangling space.
        if !help.is_empty() {
            let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        }
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Ok(())
    }

    fn check_labels(labels: Labels<'_>) -> Result<(), PromError> {
        let mut seen = BTreeSet::new();
        for (k, _) in labels {
            if !valid_label_name(k) {
                return Err(PromError::LabelName((*k).to_owned()));
            }
            if !seen.insert(*k) {
                return Err(PromError::DuplicateLabel((*k).to_owned()));
            }
        }
        Ok(())
    }

    fn sample_line(
        out: &mut String,
        name: &str,
        labels: Labels<'_>,
        extra: Option<(&str, &str)>,
        value: &str,
    ) {
        out.push_str(name);
        let pairs = labels.iter().copied().chain(extra);
        let mut first = true;
        for (k, v) in pairs {
            out.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
        out.push_str(value);
        out.push('\n');
    }

    /// A simple family (counter or gauge) with its samples. All samples are
    /// validated before anything is written.
    pub fn simple(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: &[(Labels<'_>, f64)],
    ) -> Result<(), PromError> {
        for (labels, _) in samples {
            Self::check_labels(labels)?;
        }
        self.header(name, help, kind)?;
        for (labels, v) in samples {
            Self::sample_line(&mut self.out, name, labels, None, &format_value(*v));
        }
        Ok(())
    }

    /// A counter family.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(Labels<'_>, f64)],
    ) -> Result<(), PromError> {
        self.simple(name, help, MetricType::Counter, samples)
    }

    /// A gauge family.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(Labels<'_>, f64)],
    ) -> Result<(), PromError> {
        self.simple(name, help, MetricType::Gauge, samples)
    }

    /// A histogram family: per series `_bucket` lines (cumulative, then
    /// `+Inf`), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        series: &[(Labels<'_>, &HistogramSeries)],
    ) -> Result<(), PromError> {
        for (labels, s) in series {
            Self::check_labels(labels)?;
            if labels.iter().any(|(k, _)| *k == "le") {
                return Err(PromError::ReservedLe(name.to_owned()));
            }
            let ordered = s.buckets.windows(2).all(|w| match w {
                [a, b] => a.0 < b.0 && a.1 <= b.1,
                _ => true,
            });
            let within = s
                .buckets
                .last()
                .is_none_or(|(b, c)| *c <= s.count && b.is_finite());
            if !ordered || !within || s.buckets.iter().any(|(b, _)| b.is_nan()) {
                return Err(PromError::Buckets(name.to_owned()));
            }
        }
        self.header(name, help, MetricType::Histogram)?;
        let bucket = format!("{name}_bucket");
        for (labels, s) in series {
            for (le, c) in &s.buckets {
                Self::sample_line(
                    &mut self.out,
                    &bucket,
                    labels,
                    Some(("le", &format_value(*le))),
                    &c.to_string(),
                );
            }
            Self::sample_line(
                &mut self.out,
                &bucket,
                labels,
                Some(("le", "+Inf")),
                &s.count.to_string(),
            );
            Self::sample_line(
                &mut self.out,
                &format!("{name}_sum"),
                labels,
                None,
                &format_value(s.sum),
            );
            Self::sample_line(
                &mut self.out,
                &format!("{name}_count"),
                labels,
                None,
                &s.count.to_string(),
            );
        }
        Ok(())
    }

    /// The text so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge_text() {
        let mut w = Writer::new();
        w.counter(
            "dol_requests_total",
            "Generation requests.",
            &[
                (&[("route", "/v1/generate"), ("outcome", "ok")], 1027.0),
                (&[("route", "/v1/generate"), ("outcome", "error")], 3.0),
            ],
        )
        .unwrap();
        w.gauge(
            "dol_emergency_mode",
            "1 when emergency mode is on.",
            &[(&[], 0.0)],
        )
        .unwrap();
        assert_eq!(
            w.finish(),
            "# HELP dol_requests_total Generation requests.\n\
             # TYPE dol_requests_total counter\n\
             dol_requests_total{route=\"/v1/generate\",outcome=\"ok\"} 1027\n\
             dol_requests_total{route=\"/v1/generate\",outcome=\"error\"} 3\n\
             # HELP dol_emergency_mode 1 when emergency mode is on.\n\
             # TYPE dol_emergency_mode gauge\n\
             dol_emergency_mode 0\n"
        );
    }

    #[test]
    fn escaping_of_labels_and_help() {
        let mut w = Writer::new();
        w.gauge(
            "m",
            "a \\ b\nc \"q\"",
            &[(&[("path", "C:\\dir\\\"x\"\nend")], 1.5)],
        )
        .unwrap();
        assert_eq!(
            w.finish(),
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m gauge\nm{path=\"C:\\\\dir\\\\\\\"x\\\"\\nend\"} 1.5\n"
        );
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.005), "0.005");
        assert_eq!(format_value(-2.0), "-2");
        assert_eq!(format_value(1e21), "1e21");
        assert_eq!(format_value(1.5e-7), "1.5e-7");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(123_456.75), "123456.75");
    }

    #[test]
    fn histogram_text() {
        let mut h = LatencyHistogram::new();
        h.record(3);
        h.record(8);
        h.record(70_000);
        let s = HistogramSeries::from_latency_seconds(&h);
        let mut w = Writer::new();
        w.histogram(
            "dol_latency_seconds",
            "Latency.",
            &[(&[("tier", "fast")], &s)],
        )
        .unwrap();
        let text = w.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP dol_latency_seconds Latency.");
        assert_eq!(lines[1], "# TYPE dol_latency_seconds histogram");
        // The stored usage_minute bounds: 0 s, 1 ms … 301.267 s, then +Inf.
        let bucket = |le: &str| {
            let prefix = format!("dol_latency_seconds_bucket{{tier=\"fast\",le=\"{le}\"}} ");
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no bucket le={le}"))
                .to_owned()
        };
        assert_eq!(
            lines[2],
            "dol_latency_seconds_bucket{tier=\"fast\",le=\"0\"} 0"
        );
        assert_eq!(bucket("0.002"), "0");
        assert_eq!(bucket("0.003"), "1");
        assert_eq!(bucket("0.008"), "2");
        assert_eq!(bucket("67.92"), "2");
        assert_eq!(bucket("80.146"), "3");
        assert_eq!(bucket("301.267"), "3");
        assert_eq!(bucket("+Inf"), "3");
        let n = lines.len();
        assert_eq!(
            lines[n - 2],
            "dol_latency_seconds_sum{tier=\"fast\"} 70.011"
        );
        assert_eq!(lines[n - 1], "dol_latency_seconds_count{tier=\"fast\"} 3");
        // HELP, TYPE, one line per bucket (+Inf too), sum, count.
        assert_eq!(n, 2 + crate::gateway::telemetry::LATENCY_BUCKETS + 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn hand_built_histogram_without_labels() {
        let s = HistogramSeries {
            buckets: vec![(1.0, 1), (2.5, 4)],
            sum: 7.25,
            count: 5,
        };
        let mut w = Writer::new();
        w.histogram("q", "Quality.", &[(&[], &s)]).unwrap();
        assert_eq!(
            w.finish(),
            "# HELP q Quality.\n# TYPE q histogram\n\
             q_bucket{le=\"1\"} 1\nq_bucket{le=\"2.5\"} 4\nq_bucket{le=\"+Inf\"} 5\n\
             q_sum 7.25\nq_count 5\n"
        );
    }

    #[test]
    fn empty_help_is_left_out() {
        let mut w = Writer::new();
        w.gauge("up", "", &[(&[], 1.0)]).unwrap();
        assert_eq!(w.finish(), "# TYPE up gauge\nup 1\n");
    }

    #[test]
    fn name_validation() {
        assert!(valid_metric_name("a:b_c9"));
        assert!(valid_metric_name(":x"));
        assert!(!valid_metric_name("9a"));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("_a1"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
        assert!(!valid_label_name("1a"));
        let mut w = Writer::new();
        assert_eq!(
            w.gauge("bad-name", "x", &[]),
            Err(PromError::MetricName("bad-name".into()))
        );
        assert_eq!(
            w.gauge("ok", "x", &[(&[("bad-label", "v")], 1.0)]),
            Err(PromError::LabelName("bad-label".into()))
        );
        assert_eq!(
            w.gauge("ok", "x", &[(&[("a", "1"), ("a", "2")], 1.0)]),
            Err(PromError::DuplicateLabel("a".into()))
        );
        // Refused families write nothing.
        assert_eq!(w.finish(), "");
    }

    #[test]
    fn duplicates_and_histogram_rules() {
        let mut w = Writer::new();
        w.gauge("g", "x", &[]).unwrap();
        assert_eq!(
            w.counter("g", "x", &[]),
            Err(PromError::DuplicateFamily("g".into()))
        );
        let s = HistogramSeries {
            buckets: vec![(2.0, 1), (1.0, 2)],
            sum: 0.0,
            count: 2,
        };
        assert_eq!(
            w.histogram("h", "x", &[(&[], &s)]),
            Err(PromError::Buckets("h".into()))
        );
        let s = HistogramSeries {
            buckets: vec![(1.0, 3)],
            sum: 0.0,
            count: 2,
        };
        assert_eq!(
            w.histogram("h", "x", &[(&[], &s)]),
            Err(PromError::Buckets("h".into()))
        );
        let ok = HistogramSeries {
            buckets: vec![],
            sum: 0.0,
            count: 0,
        };
        assert_eq!(
            w.histogram("h", "x", &[(&[("le", "1")], &ok)]),
            Err(PromError::ReservedLe("h".into()))
        );
    }
}
