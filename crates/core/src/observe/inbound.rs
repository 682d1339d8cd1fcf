//! Rules for DOL's inbound webhooks (the `alerts` component): content
//! types, the generic signed webhook's body, and the texts and JSON DOL
//! answers Slack with. Verification itself is [`super::slack`]; storage is
//! [`super::store`].

use std::collections::BTreeMap;

use serde_json::{Value, json};
use thiserror::Error;

use super::alerts::{ExternalAlert, Severity, fingerprint};
use super::slack::mrkdwn;
use super::store::{AlertRecord, ControlValue, EmergencyOverride, ExternalOutcome};

/// Slack's interactivity and slash-command body type.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// Alertmanager's and the generic webhook's body type.
pub const JSON: &str = "application/json";

/// Longest accepted alert id (fingerprint) from a generic webhook.
pub const MAX_ID_CHARS: usize = 128;

/// Whether a `Content-Type` header value names `expected` (parameters such
/// as `charset` ignored, case-insensitive).
pub fn has_media_type(header: Option<&str>, expected: &str) -> bool {
    header
        .and_then(|h| h.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(expected))
}

/// Why a generic webhook body was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GenericError {
    /// Not JSON, or not an object.
    #[error("body is not a JSON object: {0}")]
    Json(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has a bad value.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// Field name.
        field: String,
        /// What is wrong.
        reason: &'static str,
    },
}

fn invalid(field: &str, reason: &'static str) -> GenericError {
    GenericError::Invalid {
        field: field.to_owned(),
        reason,
    }
}

/// Parses a generic webhook body:
///
/// ```json
/// {"name": "DiskFull", "status": "firing", "severity": "critical",
///  "id": "optional-stable-id", "labels": {"host": "db-1"}, "summary": "disk 97% full"}
/// ```
///
/// `name` and `status` (`firing` or `resolved`) are required; `severity`
/// defaults to warning, `summary` to the name. Without `id` the alert id is
/// the [`fingerprint`] of the labels plus `alertname` = name, so the same
/// alert sent again is deduplicated and a later `resolved` finds it.
pub fn parse_generic(body: &[u8]) -> Result<ExternalAlert, GenericError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| GenericError::Json(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| GenericError::Json("expected an object".to_owned()))?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "name" | "status" | "severity" | "id" | "labels" | "summary"
        ) {
            return Err(invalid(key, "unknown field"));
        }
    }
    let string = |field: &'static str| -> Result<Option<&str>, GenericError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
            Some(_) => Err(invalid(field, "expected a non-empty string")),
        }
    };
    let name = string("name")?.ok_or(GenericError::Missing("name"))?;
    let firing = match string("status")?.ok_or(GenericError::Missing("status"))? {
        "firing" => true,
        "resolved" => false,
        _ => return Err(invalid("status", "expected firing or resolved")),
    };
    let severity = match string("severity")? {
        None => Severity::Warning,
        Some(s) => Severity::parse(s)
            .ok_or_else(|| invalid("severity", "expected critical, warning or info"))?,
    };
    let mut labels = BTreeMap::new();
    match obj.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(l)) => {
            for (k, v) in l {
                let v = v
                    .as_str()
                    .ok_or_else(|| invalid(&format!("labels.{k}"), "expected a string"))?;
                labels.insert(k.clone(), v.to_owned());
            }
        }
        Some(_) => return Err(invalid("labels", "expected an object of strings")),
    }
    labels.insert("alertname".to_owned(), name.to_owned());
    let id = match string("id")? {
        Some(id) if id.chars().count() > MAX_ID_CHARS => {
            return Err(invalid("id", "longer than 128 characters"));
        }
        Some(id) if id.chars().any(char::is_control) => {
            return Err(invalid("id", "contains control characters"));
        }
        Some(id) => id.to_owned(),
        None => fingerprint(&labels),
    };
    Ok(ExternalAlert {
        fingerprint: id,
        name: name.to_owned(),
        severity,
        labels,
        summary: string("summary")?.unwrap_or(name).to_owned(),
        firing,
        starts_at_ms: None,
        ends_at_ms: None,
    })
}

/// The actor recorded for a Slack user: `slack:` plus the user name (else
/// the id), printable ASCII only, at most 64 characters.
pub fn slack_actor(user_id: &str, user_name: Option<&str>) -> String {
    let who = user_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(user_id);
    let clean: String = who
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    format!("slack:{clean}")
}

/// An ephemeral Slack reply (only the person who asked sees it).
pub fn ephemeral(text: &str) -> Value {
    json!({ "response_type": "ephemeral", "text": text })
}

/// A follow-up posted to a Slack `response_url`: a new message in the
/// channel, leaving the alert message with its buttons in place.
pub fn follow_up(text: &str) -> Value {
    json!({ "response_type": "in_channel", "replace_original": false, "text": text })
}

/// The slash-command usage text, after an unknown command.
pub fn usage(unknown: &str) -> String {
    let mut s = String::new();
    if !unknown.trim().is_empty() {
        s.push_str(&format!(
            "Sorry, I don't know `{}`.\n",
            mrkdwn(unknown.trim())
        ));
    }
    s.push_str(
        "Usage:\n\
         • `status`: firing alerts and emergency mode\n\
         • `ack <id>`: acknowledge a firing alert\n\
         • `resolve <id>`: resolve a firing alert\n\
         • `kill <flag>`: kill switch on a feature flag (everyone gets its default variant)\n\
         • `emergency on|off`: force emergency mode on or off",
    );
    s
}

/// A duration as `3h 5m`, `5m 20s` or `12s`.
pub fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1_000;
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn label(r: &AlertRecord) -> String {
    format!(
        "*{}* (`{}`)",
        mrkdwn(&r.state.name),
        mrkdwn(&r.state.fingerprint)
    )
}

/// Text after an acknowledgement.
pub fn acknowledged_text(r: &AlertRecord, by: &str) -> String {
    format!(":eyes: {} acknowledged by {}", label(r), mrkdwn(by))
}

/// Text after a manual resolve.
pub fn resolved_text(r: &AlertRecord, by: &str) -> String {
    match r.state.last_repair_ms {
        Some(ms) if r.state.resolved_by.is_some() => format!(
            ":white_check_mark: {} resolved by {} after {}",
            label(r),
            mrkdwn(by),
            human_duration(i64::try_from(ms).unwrap_or(i64::MAX))
        ),
        _ => format!(":white_check_mark: {} resolved by {}", label(r), mrkdwn(by)),
    }
}

/// Text after a kill switch.
pub fn killed_text(flag: &str, by: &str) -> String {
    format!(
        ":octagonal_sign: Kill switch on for flag `{}` by {}: everyone now gets its default variant.",
        mrkdwn(flag),
        mrkdwn(by)
    )
}

/// Text after forcing emergency mode.
pub fn emergency_text(mode: EmergencyOverride, by: &str) -> String {
    match mode {
        EmergencyOverride::On => format!(
            ":rotating_light: Emergency mode forced *on* by {}: generation uses the safe tier.",
            mrkdwn(by)
        ),
        EmergencyOverride::Off => format!(
            ":large_green_circle: Emergency mode forced *off* by {}.",
            mrkdwn(by)
        ),
    }
}

/// The `status` reply: emergency mode and the firing alerts (most severe
/// first), at `now_ms`.
pub fn status_text(
    firing: &[AlertRecord],
    emergency: Option<&(EmergencyOverride, ControlValue)>,
    now_ms: i64,
) -> String {
    let mut s = match emergency {
        None => "Emergency mode: automatic.".to_owned(),
        Some((mode, c)) => format!(
            "Emergency mode: forced *{}* by {} {} ago.",
            match mode {
                EmergencyOverride::On => "on",
                EmergencyOverride::Off => "off",
            },
            mrkdwn(&c.updated_by),
            human_duration(now_ms.saturating_sub(c.updated_at_ms))
        ),
    };
    if firing.is_empty() {
        s.push_str("\nNo firing alerts.");
        return s;
    }
    s.push_str(&format!("\nFiring alerts ({}):", firing.len()));
    for r in firing {
        let since = r
            .state
            .fired_at_ms
            .map(|t| format!(" for {}", human_duration(now_ms.saturating_sub(t))))
            .unwrap_or_default();
        let ack = r
            .state
            .acknowledged_by
            .as_deref()
            .map(|w| format!(", acknowledged by {}", mrkdwn(w)))
            .unwrap_or_default();
        s.push_str(&format!(
            "\n• [{}] {}{since}{ack}: {}",
            r.state.severity.as_str().to_uppercase(),
            label(r),
            mrkdwn(&r.summary)
        ));
    }
    s
}

/// The JSON answer to an Alertmanager or generic webhook delivery.
pub fn intake_json(outcome: &ExternalOutcome, received: usize) -> Value {
    json!({
        "received": received,
        "fired": outcome.fired,
        "resolved": outcome.resolved,
        "unchanged": outcome.unchanged,
        "conflicting": outcome.conflicting,
        "queued_notifications": outcome.queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::alerts::{AlertSource, AlertState, AlertStatus};

    #[test]
    fn media_types() {
        assert!(has_media_type(Some("application/json"), JSON));
        assert!(has_media_type(
            Some("Application/JSON; charset=utf-8"),
            JSON
        ));
        assert!(has_media_type(
            Some("application/x-www-form-urlencoded"),
            FORM
        ));
        assert!(!has_media_type(Some("text/plain"), JSON));
        assert!(!has_media_type(Some("application/jsonx"), JSON));
        assert!(!has_media_type(None, JSON));
    }

    #[test]
    fn generic_body() {
        let a = parse_generic(
            br#"{"name":"DiskFull","status":"firing","severity":"critical",
                 "labels":{"host":"db-1"},"summary":"97% full"}"#,
        )
        .unwrap();
        assert_eq!((a.name.as_str(), a.firing), ("DiskFull", true));
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.labels["alertname"], "DiskFull");
        assert_eq!(a.labels["host"], "db-1");
        assert_eq!(a.summary, "97% full");
        assert_eq!(a.fingerprint, fingerprint(&a.labels));
        // Same alert resolved: same id.
        let r =
            parse_generic(br#"{"name":"DiskFull","status":"resolved","labels":{"host":"db-1"}}"#)
                .unwrap();
        assert_eq!(
            (r.fingerprint.as_str(), r.firing),
            (a.fingerprint.as_str(), false)
        );
        assert_eq!(
            (r.severity, r.summary.as_str()),
            (Severity::Warning, "DiskFull")
        );
        let i = parse_generic(br#"{"name":"X","status":"firing","id":"ext-42"}"#).unwrap();
        assert_eq!(i.fingerprint, "ext-42");
    }

    #[test]
    fn generic_body_errors() {
        let e = |b: &str| parse_generic(b.as_bytes()).unwrap_err();
        assert!(matches!(e("{"), GenericError::Json(_)));
        assert!(matches!(e("[1]"), GenericError::Json(_)));
        assert_eq!(e(r#"{"status":"firing"}"#), GenericError::Missing("name"));
        assert_eq!(e(r#"{"name":"x"}"#), GenericError::Missing("status"));
        assert_eq!(
            e(r#"{"name":"x","status":"open"}"#),
            invalid("status", "expected firing or resolved")
        );
        assert_eq!(
            e(r#"{"name":"x","status":"firing","severity":"huge"}"#),
            invalid("severity", "expected critical, warning or info")
        );
        assert_eq!(
            e(r#"{"name":"x","status":"firing","labels":{"a":1}}"#),
            invalid("labels.a", "expected a string")
        );
        assert_eq!(
            e(r#"{"name":"x","status":"firing","extra":1}"#),
            invalid("extra", "unknown field")
        );
        assert_eq!(
            e(r#"{"name":" ","status":"firing"}"#),
            invalid("name", "expected a non-empty string")
        );
        let long = format!(
            r#"{{"name":"x","status":"firing","id":"{}"}}"#,
            "a".repeat(129)
        );
        assert_eq!(e(&long), invalid("id", "longer than 128 characters"));
    }

    #[test]
    fn actors_and_durations() {
        assert_eq!(slack_actor("U1", Some("ana")), "slack:ana");
        assert_eq!(slack_actor("U1", None), "slack:U1");
        assert_eq!(slack_actor("U1", Some(" ")), "slack:U1");
        assert_eq!(slack_actor("U1", Some("a\nb c")), "slack:abc");
        assert_eq!(human_duration(12_345), "12s");
        assert_eq!(human_duration(320_000), "5m 20s");
        assert_eq!(human_duration(3 * 3_600_000 + 300_000), "3h 5m");
        assert_eq!(human_duration(90_000_000), "1d 1h");
        assert_eq!(human_duration(-5), "0s");
    }

    fn record(name: &str, ack: Option<&str>) -> AlertRecord {
        AlertRecord {
            state: AlertState {
                fingerprint: format!("fp-{name}"),
                name: name.into(),
                source: AlertSource::Alertmanager,
                severity: Severity::Critical,
                labels: BTreeMap::new(),
                status: AlertStatus::Firing,
                value: None,
                active_since_ms: Some(0),
                fired_at_ms: Some(0),
                resolved_at_ms: None,
                acknowledged_by: ack.map(str::to_owned),
                acknowledged_at_ms: None,
                resolved_by: None,
                incidents: 0,
                total_repair_ms: 0,
                last_repair_ms: None,
            },
            summary: "p95 <high>".into(),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn status_and_action_texts() {
        let t = status_text(&[], None, 0);
        assert_eq!(t, "Emergency mode: automatic.\nNo firing alerts.");
        let c = ControlValue {
            key: "emergency_mode".into(),
            value: json!({"mode": "on"}),
            updated_by: "slack:ana".into(),
            updated_at_ms: 0,
        };
        let t = status_text(
            &[record("A", Some("slack:bo")), record("B", None)],
            Some(&(EmergencyOverride::On, c)),
            125_000,
        );
        assert!(
            t.starts_with("Emergency mode: forced *on* by slack:ana 2m 5s ago."),
            "{t}"
        );
        assert!(t.contains("Firing alerts (2):"), "{t}");
        assert!(
            t.contains(
                "• [CRITICAL] *A* (`fp-A`) for 2m 5s, acknowledged by slack:bo: p95 &lt;high&gt;"
            ),
            "{t}"
        );
        let r = record("A", None);
        assert_eq!(
            acknowledged_text(&r, "slack:ana"),
            ":eyes: *A* (`fp-A`) acknowledged by slack:ana"
        );
        let mut resolved = r.clone();
        resolved.state.resolved_by = Some("slack:ana".into());
        resolved.state.last_repair_ms = Some(60_000);
        assert!(resolved_text(&resolved, "slack:ana").ends_with("after 1m 0s"));
        assert!(resolved_text(&r, "x").ends_with("resolved by x"));
        assert!(killed_text("beta", "slack:ana").contains("`beta`"));
        assert!(emergency_text(EmergencyOverride::Off, "x").contains("*off*"));
        let u = usage("frobnicate <x>");
        assert!(
            u.starts_with("Sorry, I don't know `frobnicate &lt;x&gt;`."),
            "{u}"
        );
        assert!(u.contains("`emergency on|off`"));
        assert!(!usage("").starts_with("Sorry"));
        assert_eq!(ephemeral("x")["response_type"], "ephemeral");
        assert_eq!(follow_up("x")["replace_original"], false);
    }
}
