//! Alertmanager webhook fixtures (written from the documented v4 format)
//! through parsing, mapping and the DOL alert states.

// A panic is how a test fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dol_core::observe::alertmanager::{AmError, AmStatus, parse, to_external};
use dol_core::observe::alerts::{AlertStatus, NotificationKind, Severity, apply_external};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn firing_fixture_parses_every_field() {
    let p = parse(&fixture("firing.json")).unwrap();
    assert_eq!(p.version, "4");
    assert_eq!(p.status, AmStatus::Firing);
    assert_eq!(p.receiver, "dol-webhook");
    assert_eq!(p.truncated_alerts, 0);
    assert!(p.group_key.contains("HighLatency"));
    assert_eq!(p.group_labels["alertname"], "HighLatency");
    assert_eq!(p.common_labels["severity"], "critical");
    assert!(p.common_annotations.contains_key("runbook_url"));
    assert_eq!(p.external_url, "http://alertmanager.example.com:9093");
    assert_eq!(p.alerts.len(), 2);
    let a = &p.alerts[0];
    assert_eq!(a.status, AmStatus::Firing);
    assert_eq!(a.labels["instance"], "gw-1:9100");
    assert_eq!(a.fingerprint, "4ad8f3a1c2b70e19");
    assert!(
        a.generator_url
            .starts_with("http://prometheus.example.com:9090/graph")
    );
    assert_eq!(a.ends_at, "0001-01-01T00:00:00Z");
}

#[test]
fn firing_then_resolved_dedups_and_records_mttr() {
    let firing = to_external(&parse(&fixture("firing.json")).unwrap());
    assert_eq!(firing.len(), 2);
    assert_eq!(firing[0].name, "HighLatency");
    assert_eq!(firing[0].severity, Severity::Critical);
    assert_eq!(firing[0].summary, "p95 latency above 5s on gw-1");
    assert_eq!(firing[0].starts_at_ms, Some(1_740_830_400_000));
    assert_eq!(firing[0].ends_at_ms, None);
    assert_eq!(firing[1].starts_at_ms, Some(1_740_830_490_250));

    let now = 1_740_830_600_000;
    let mut states = Vec::new();
    let n = apply_external(&mut states, &firing, &[], now);
    assert_eq!(n.len(), 2);
    assert!(n.iter().all(|n| n.kind == NotificationKind::Firing));
    // Alertmanager repeats the group on its repeat_interval: nothing new.
    let n = apply_external(&mut states, &firing, &[], now + 60_000);
    assert!(n.is_empty());
    assert_eq!(states.len(), 2);

    let resolved = to_external(&parse(&fixture("resolved.json")).unwrap());
    let n = apply_external(&mut states, &resolved, &[], now + 1_500_000);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].kind, NotificationKind::Resolved);
    assert_eq!(n[0].fingerprint, "4ad8f3a1c2b70e19");
    let s = states
        .iter()
        .find(|s| s.fingerprint == "4ad8f3a1c2b70e19")
        .unwrap();
    assert_eq!(s.status, AlertStatus::Resolved);
    // startsAt 12:00:00 → endsAt 12:25:00.
    assert_eq!(s.last_repair_ms, Some(25 * 60_000));
    let other = states
        .iter()
        .find(|s| s.fingerprint == "9b0e77c41f2d3a58")
        .unwrap();
    assert_eq!(other.status, AlertStatus::Firing);
}

#[test]
fn mixed_truncated_fixture() {
    let p = parse(&fixture("mixed_truncated.json")).unwrap();
    assert_eq!(p.truncated_alerts, 3);
    let x = to_external(&p);
    assert_eq!(x[0].severity, Severity::Warning);
    assert_eq!(x[0].summary, "anthropic probe failing");
    assert!(x[0].firing);
    assert_eq!(x[1].severity, Severity::Info);
    assert_eq!(x[1].summary, "QuotaLow");
    assert!(!x[1].firing);
    // A resolve for an alert DOL never saw firing changes nothing.
    let mut states = Vec::new();
    let n = apply_external(&mut states, &x, &[], 1_740_816_000_000);
    assert_eq!(n.len(), 1);
    assert_eq!(states.len(), 1);
}

#[test]
fn bad_version_and_malformed_are_refused() {
    assert_eq!(
        parse(&fixture("bad_version.json")),
        Err(AmError::Version("3".into()))
    );
    assert!(matches!(parse(b"not json"), Err(AmError::Json(_))));
    let mut tampered = fixture("firing.json");
    tampered.truncate(tampered.len() / 2);
    assert!(matches!(parse(&tampered), Err(AmError::Json(_))));
}
