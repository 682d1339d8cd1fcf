//! Prometheus Alertmanager webhook intake (payload `version: "4"`).
//!
//! Alertmanager posts a JSON group notification: `version`, `groupKey`,
//! `truncatedAlerts`, `status` (`firing`/`resolved`), `receiver`,
//! `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL` and
//! `alerts[]`, each with `status`, `labels`, `annotations`, `startsAt`,
//! `endsAt` (RFC 3339; Go's zero time `0001-01-01T00:00:00Z` when unset),
//! `generatorURL` and `fingerprint`. [`to_external`] turns the alerts into
//! [`ExternalAlert`]s for [`super::alerts::apply_external`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::alerts::{ExternalAlert, Severity, fingerprint};

/// The only payload version accepted.
pub const VERSION: &str = "4";

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmStatus {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

/// One alert in the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmAlert {
    /// Firing or resolved.
    pub status: AmStatus,
    /// Identifying labels (`alertname`, `severity`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (`summary`, `description`, …).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Start time, RFC 3339.
    #[serde(default)]
    pub starts_at: String,
    /// End time, RFC 3339 (zero time when unset).
    #[serde(default)]
    pub ends_at: String,
    /// Link to the expression that generated the alert.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the labels.
    #[serde(default)]
    pub fingerprint: String,
}

/// The webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmPayload {
    /// Payload version; must be `"4"`.
    pub version: String,
    /// Key identifying the group.
    #[serde(default)]
    pub group_key: String,
    /// How many alerts were left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Group status.
    pub status: AmStatus,
    /// Receiver name.
    #[serde(default)]
    pub receiver: String,
    /// Labels the group is keyed on.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels shared by all alerts.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations shared by all alerts.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's external URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<AmAlert>,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmError {
    /// Not JSON or not the v4 shape; names the field where serde says.
    #[error("alertmanager payload: {0}")]
    Json(String),
    /// A version other than 4.
    #[error("alertmanager payload: unsupported version `{0}` (expected \"4\")")]
    Version(String),
    /// A timestamp is not RFC 3339.
    #[error("alertmanager payload: alerts[{index}].{field}: not an RFC 3339 time")]
    Time {
        /// Alert position.
        index: usize,
        /// `startsAt` or `endsAt`.
        field: &'static str,
    },
    /// A fingerprint (the stored alert's id) is longer than the generic
    /// webhook's ids may be, or holds control characters.
    #[error(
        "alertmanager payload: alerts[{index}].fingerprint: at most {max} characters without control characters",
        max = super::inbound::MAX_ID_CHARS
    )]
    Fingerprint {
        /// Alert position.
        index: usize,
    },
}

/// Parses and checks a webhook body.
pub fn parse(body: &[u8]) -> Result<AmPayload, AmError> {
    let p: AmPayload = serde_json::from_slice(body).map_err(|e| AmError::Json(e.to_string()))?;
    if p.version != VERSION {
        return Err(AmError::Version(p.version));
    }
    for (index, a) in p.alerts.iter().enumerate() {
        if !a.starts_at.is_empty() && parse_rfc3339_ms(&a.starts_at).is_none() {
            return Err(AmError::Time {
                index,
                field: "startsAt",
            });
        }
        if !a.ends_at.is_empty() && parse_rfc3339_ms(&a.ends_at).is_none() {
            return Err(AmError::Time {
                index,
                field: "endsAt",
            });
        }
        // The fingerprint becomes the alert's id: held to what a generic
        // webhook's id may be (a 100 KB one was stored as given).
        let fingerprint = a.fingerprint.trim();
        if fingerprint.chars().count() > super::inbound::MAX_ID_CHARS
            || fingerprint.chars().any(char::is_control)
        {
            return Err(AmError::Fingerprint { index });
        }
    }
    Ok(p)
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to
/// Unix milliseconds (fraction truncated to ms).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_at_checked(10)?;
    let mut dp = date.split('-');
    let (y, m, d) = (
        digits(dp.next()?)?,
        digits(dp.next()?)?,
        digits(dp.next()?)?,
    );
    if dp.next().is_some() || date.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (time, rest) = rest.split_at_checked(8)?;
    let mut tp = time.split(':');
    let (hh, mm, ss) = (
        digits(tp.next()?)?,
        digits(tp.next()?)?,
        digits(tp.next()?)?,
    );
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut ms = 0;
    let mut rest = rest;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let (f, tail) = frac.split_at(n);
        let first3: String = f.chars().chain("000".chars()).take(3).collect();
        ms = digits(&first3)?;
        rest = tail;
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match rest.split_at_checked(1)? {
                ("+", hm) => (1, hm),
                ("-", hm) => (-1, hm),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (digits(h)? * 60 + digits(m)?)
        }
    };
    let days = days_from_civil(y, m, d);
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss - offset_min * 60;
    Some(secs * 1_000 + ms)
}

/// Go's zero time and anything before 1970 mean "unset".
fn time_or_unset(s: &str) -> Option<i64> {
    parse_rfc3339_ms(s).filter(|t| *t > 0)
}

/// Turns the payload's alerts into [`ExternalAlert`]s: name from the
/// `alertname` label (else `receiver`), severity from the `severity`
/// label (`critical`/`warning`/`info`, else warning; `error`/`page` map to
/// critical), summary from the `summary` then `description` annotation
/// (alert's, then common), fingerprint the payload's or, when empty, one
/// computed from the labels. Duplicates within one payload are dropped
/// (first wins).
pub fn to_external(p: &AmPayload) -> Vec<ExternalAlert> {
    let mut out: Vec<ExternalAlert> = Vec::with_capacity(p.alerts.len());
    for a in &p.alerts {
        let fp = if a.fingerprint.trim().is_empty() {
            fingerprint(&a.labels)
        } else {
            a.fingerprint.trim().to_owned()
        };
        if out.iter().any(|x| x.fingerprint == fp) {
            continue;
        }
        let name = a
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| p.receiver.clone());
        let severity = match a.labels.get("severity").map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == "error" || s == "page" => Severity::Critical,
            Some(s) => Severity::parse(&s).unwrap_or(Severity::Warning),
            None => Severity::Warning,
        };
        let ann = |k: &str| a.annotations.get(k).or_else(|| p.common_annotations.get(k));
        let summary = ann("summary")
            .or_else(|| ann("description"))
            .cloned()
            .unwrap_or_else(|| name.clone());
        out.push(ExternalAlert {
            fingerprint: fp,
            name,
            severity,
            labels: a.labels.clone(),
            summary,
            firing: a.status == AmStatus::Firing,
            starts_at_ms: time_or_unset(&a.starts_at),
            ends_at_ms: time_or_unset(&a.ends_at),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T21:13:20-01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert!(parse_rfc3339_ms("0001-01-01T00:00:00Z").is_some_and(|t| t < 0));
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T00:00:00",
            "2023-11-14T00:00:00.Z",
            "2023-11-14T00:00:00+1:00",
            "x023-11-14T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn minimal_payload_and_errors() {
        let body = br#"{"version":"4","status":"firing","alerts":[]}"#;
        let p = parse(body).unwrap();
        assert!(p.alerts.is_empty());
        assert_eq!(p.truncated_alerts, 0);
        assert_eq!(
            parse(br#"{"version":"3","status":"firing","alerts":[]}"#),
            Err(AmError::Version("3".into()))
        );
        let e = parse(br#"{"version":"4","status":"weird","alerts":[]}"#).unwrap_err();
        assert!(
            matches!(e, AmError::Json(ref m) if m.contains("unknown variant")),
            "{e}"
        );
        let e = parse(br#"{"version":"4","status":"firing"}"#).unwrap_err();
        assert!(
            matches!(e, AmError::Json(ref m) if m.contains("alerts")),
            "{e}"
        );
        assert_eq!(
            parse(br#"{"version":"4","status":"firing","alerts":[{"status":"firing","startsAt":"yesterday"}]}"#),
            Err(AmError::Time { index: 0, field: "startsAt" })
        );
        let with_fingerprint = |fp: &str| {
            parse(
                serde_json::json!({"version": "4", "status": "firing",
                    "alerts": [{"status": "firing", "fingerprint": "ok"},
                               {"status": "firing", "fingerprint": fp}]})
                .to_string()
                .as_bytes(),
            )
        };
        assert!(with_fingerprint(&"f".repeat(128)).is_ok());
        assert_eq!(
            with_fingerprint(&"f".repeat(129)),
            Err(AmError::Fingerprint { index: 1 })
        );
        assert_eq!(
            with_fingerprint("a\u{0}b"),
            Err(AmError::Fingerprint { index: 1 })
        );
    }

    #[test]
    fn mapping_rules() {
        let p: AmPayload = serde_json::from_value(serde_json::json!({
            "version": "4", "status": "firing", "receiver": "dol",
            "commonAnnotations": {"description": "common text"},
            "alerts": [
                {"status": "firing", "labels": {"alertname": "A", "severity": "page"},
                 "startsAt": "2023-11-14T22:13:20Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f1"},
                {"status": "firing", "labels": {"alertname": "A", "severity": "page"}, "fingerprint": "f1"},
                {"status": "resolved", "labels": {"severity": "odd"}, "annotations": {"summary": "own"},
                 "endsAt": "2023-11-14T22:14:20Z"}
            ]
        }))
        .unwrap();
        let x = to_external(&p);
        assert_eq!(x.len(), 2);
        assert_eq!(
            (x[0].name.as_str(), x[0].severity, x[0].firing),
            ("A", Severity::Critical, true)
        );
        assert_eq!(
            (x[0].starts_at_ms, x[0].ends_at_ms),
            (Some(1_700_000_000_000), None)
        );
        assert_eq!(x[0].summary, "common text");
        assert_eq!(
            (x[1].name.as_str(), x[1].severity, x[1].firing),
            ("dol", Severity::Warning, false)
        );
        assert_eq!(x[1].summary, "own");
        assert_eq!(x[1].fingerprint, fingerprint(&p.alerts[2].labels));
        assert_eq!(x[1].ends_at_ms, Some(1_700_000_060_000));
    }
}
