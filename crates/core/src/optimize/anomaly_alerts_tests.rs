//! Anomaly alerts: hand-checked series through [`findings`], the setting,
//! the ranges read, and the store pass on a real database (SQLite, or
//! PostgreSQL with `DOL_TEST_POSTGRES_URL`).

use super::*;
use crate::gateway::telemetry::{latency_bucket, latency_column};
use crate::observe::alerts::{AlertStatus, Matcher, Silence};
use crate::observe::store::{create_silence, get_alert, pending_messages};
use crate::test_db::{TestDb, db};

/// 2027-01-15 08:00:05 UTC: minute 30 000 000.
const NOW_S: i64 = 1_800_000_005;
const NOW_MINUTE: i64 = 30_000_000;

fn row(minute: i64, requests: u64, errors: u64, latency_ms: u64, quality: f64) -> UsageRow {
    let mut agg = Agg {
        requests,
        errors,
        quality_sum: quality * requests as f64,
        quality_n: requests,
        cost_micros: 100 * requests,
        baseline_micros: 100 * requests,
        ..Agg::default()
    };
    agg.buckets[latency_bucket(latency_ms)] = requests;
    UsageRow {
        minute: minute * 60,
        tier: "enhanced".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        outcome: "success".into(),
        variant: "-".into(),
        agg,
    }
}

/// 40 calm minutes (10 requests, no errors, 20 ms, quality 8) up to
/// `NOW_MINUTE - tail - 1`, then `tail` minutes made by `bad` up to the
/// current minute.
fn series(tail: i64, bad: impl Fn(i64) -> UsageRow) -> Vec<UsageRow> {
    let mut rows: Vec<UsageRow> = (NOW_MINUTE - tail - 40..NOW_MINUTE - tail)
        .map(|m| row(m, 10, 0, 20, 8.0))
        .collect();
    rows.extend((NOW_MINUTE - tail + 1..=NOW_MINUTE).map(bad));
    rows
}

fn only(found: &[Finding], metric: Metric) -> &Finding {
    let hits: Vec<&Finding> = found.iter().filter(|f| f.metric == metric).collect();
    assert_eq!(hits.len(), 1, "{found:#?}");
    hits[0]
}

#[test]
fn the_for_setting_parses_minutes_and_refuses_the_rest() {
    assert_eq!(parse_for(""), Ok(DEFAULT_FOR_MINUTES));
    assert_eq!(parse_for(" 5m "), Ok(5));
    assert_eq!(parse_for("120s"), Ok(2));
    assert_eq!(parse_for("1h"), Ok(60));
    for bad in ["0m", "90s", "2d", "soon", "-3m"] {
        assert!(parse_for(bad).is_err(), "{bad}");
    }
    assert_eq!(for_minutes_in_force("5m"), (5, None));
    let (minutes, refused) = for_minutes_in_force("soon");
    assert_eq!(minutes, DEFAULT_FOR_MINUTES);
    assert!(refused.is_some());
    assert!(
        parse_for("90s")
            .unwrap_err()
            .to_string()
            .contains("anomaly_for")
    );
}

#[test]
fn the_ranges_cover_the_recent_windows_and_each_seasonal_lag() {
    let r = ranges(NOW_S, 3);
    // window 60: two windows + for 3 + half-width 10 = 133 minutes back.
    assert_eq!(r[0], ((NOW_MINUTE - 133) * 60, (NOW_MINUTE + 1) * 60));
    let day = NOW_MINUTE - 1_440;
    assert_eq!(r[1], ((day - 133) * 60, (day + 11) * 60));
    assert_eq!(r[3].1, (NOW_MINUTE - 10_080 + 11) * 60);
    assert_eq!(r.len(), 4);
}

#[test]
fn a_latency_jump_is_found_with_its_band() {
    let calm = row(0, 10, 0, 20, 8.0);
    let base = Metric::P95LatencyMs.value(&calm.agg).unwrap();
    let found = findings(&series(3, |m| row(m, 10, 0, 900, 8.0)), NOW_S, 3);
    let f = only(&found, Metric::P95LatencyMs);
    // A flat series: expected = its value, MAD 0, so the band is the
    // 100 ms floor (5 % of ~20 ms is less).
    assert_eq!(f.judged.expected, base);
    assert_eq!(f.judged.high, base + 100.0);
    assert!(f.judged.value > 800.0, "{f:?}");
    assert_eq!(f.minute, NOW_MINUTE * 60);
    let text = f.summary(3);
    assert!(
        text.starts_with("p95_latency_ms of openai/gpt-4o-mini is "),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "(expected {base:.0}, band 0–{:.0}) for 3 min",
            base + 100.0
        )),
        "{text}"
    );
    // Only latency moved.
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn an_error_rate_jump_needs_the_configured_minutes() {
    let bad = |m| row(m, 10, 5, 20, 8.0);
    // Two breaching minutes: not yet with "for" 3, enough with 2.
    assert!(findings(&series(2, bad), NOW_S, 3).is_empty());
    let found = findings(&series(2, bad), NOW_S, 2);
    let f = only(&found, Metric::ErrorRate);
    // Expected 0, band ± the 0.05 floor; value 0.5.
    assert_eq!(
        (f.judged.expected, f.judged.high, f.judged.value),
        (0.0, 0.05, 0.5)
    );
    assert!(
        f.summary(2)
            .contains("is 0.5000 (expected 0.0000, band 0.0000–0.0500) for 2 min")
    );
}

#[test]
fn quality_alerts_only_downwards() {
    let found = findings(&series(3, |m| row(m, 10, 0, 20, 5.0)), NOW_S, 3);
    let f = only(&found, Metric::Quality);
    // Expected 8, band ± max(5 % of 8, 0.5) = 0.5.
    assert_eq!((f.judged.expected, f.judged.low), (8.0, 7.5));
    assert!(findings(&series(3, |m| row(m, 10, 0, 20, 10.0)), NOW_S, 3).is_empty());
}

#[test]
fn volume_judges_complete_minutes_and_zero_fills_a_drop() {
    // The current minute holds 1 request so far: not a drop.
    let mut rows: Vec<UsageRow> = (NOW_MINUTE - 40..NOW_MINUTE)
        .map(|m| row(m, 10, 0, 20, 8.0))
        .collect();
    rows.push(row(NOW_MINUTE, 1, 0, 20, 8.0));
    assert!(findings(&rows, NOW_S, 3).is_empty());
    // No traffic at all for the last three complete minutes: 0 < 10 − 5.
    let rows: Vec<UsageRow> = (NOW_MINUTE - 43..NOW_MINUTE - 3)
        .map(|m| row(m, 10, 0, 20, 8.0))
        .collect();
    let found = findings(&rows, NOW_S, 3);
    let f = only(&found, Metric::Requests);
    assert_eq!(
        (f.judged.value, f.judged.expected, f.judged.low, f.minute),
        (0.0, 10.0, 5.0, (NOW_MINUTE - 1) * 60)
    );
}

#[test]
fn at_the_cron_tick_the_last_complete_minute_decides() {
    // Second 0 of the next minute: the current minute has no rows yet.
    let rows = series(3, |m| row(m, 10, 0, 900, 8.0));
    let found = findings(&rows, (NOW_MINUTE + 1) * 60, 3);
    assert_eq!(only(&found, Metric::P95LatencyMs).minute, NOW_MINUTE * 60);
    // Two minutes later nothing new came: no longer news.
    assert!(findings(&rows, (NOW_MINUTE + 2) * 60 + 30, 3).is_empty());
}

#[test]
fn alerts_fire_for_findings_and_resolve_what_is_gone() {
    let found = findings(&series(3, |m| row(m, 10, 0, 900, 8.0)), NOW_S, 3);
    let gone = labels("anthropic", "claude", "error_rate");
    let out = alerts_for(&found, &[found[0].labels(), gone.clone()], 3, 7);
    assert_eq!(out.len(), 2);
    assert!(out[0].firing && out[0].name == ALERT_NAME);
    assert_eq!(out[0].fingerprint, alerts::fingerprint(&found[0].labels()));
    assert!(!out[1].firing);
    assert_eq!(out[1].fingerprint, alerts::fingerprint(&gone));
    assert_eq!(
        out[1].summary,
        "error_rate of anthropic/claude is back inside its band"
    );
}

fn insert(db: &mut TestDb, minute: i64, latency_ms: u64) {
    db.run(
        &format!(
            "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests, \
             latency_sum_ms, quality_sum, quality_n, {}) \
             VALUES (?1, 'enhanced', 'openai', 'gpt-4o-mini', 'success', '-', 10, ?2, 80.0, 10, 10)",
            latency_column(latency_bucket(latency_ms))
        ),
        &[(minute * 60).into(), i64::try_from(latency_ms * 10).unwrap().into()],
    );
}

#[test]
fn the_store_pass_fires_notifies_respects_silences_and_resolves() {
    let mut db = db();
    for m in NOW_MINUTE - 43..NOW_MINUTE - 3 {
        insert(&mut db, m, 20);
    }
    // Nothing anomalous: nothing written.
    let run0 = run(&mut db, 3, (NOW_MINUTE - 3) * 60_000 + 5_000).unwrap();
    assert!(run0.findings.is_empty() && run0.alerts.fired.is_empty());
    for m in NOW_MINUTE - 2..=NOW_MINUTE {
        insert(&mut db, m, 900);
    }
    let now_ms = NOW_S * 1_000;
    let r = run(&mut db, 3, now_ms).unwrap();
    assert_eq!(r.findings.len(), 1, "{r:#?}");
    let id = alerts::fingerprint(&labels("openai", "gpt-4o-mini", "p95_latency_ms"));
    assert_eq!(r.alerts.fired, vec![id.clone()]);
    assert_eq!(r.alerts.queued, 1);
    let stored = get_alert(&mut db, &id).unwrap().unwrap();
    assert_eq!(stored.state.source, AlertSource::Anomaly);
    assert_eq!(stored.state.status, AlertStatus::Firing);
    assert!(stored.summary.contains("band 0–1"), "{}", stored.summary);
    let queued = pending_messages(&mut db, 10).unwrap();
    assert_eq!(queued.len(), 1);
    assert!(
        queued[0].payload.to_string().contains("p95_latency_ms"),
        "{:?}",
        queued[0]
    );
    // Still anomalous a moment later: deduplicated.
    let again = run(&mut db, 3, now_ms + 1_000).unwrap();
    assert_eq!((again.alerts.fired.len(), again.alerts.queued), (0, 0));
    // What /api/health lists.
    let listed = active(&mut db, now_ms).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id.as_str(),
            listed[0].metric.as_str(),
            listed[0].silenced
        ),
        (id.as_str(), "p95_latency_ms", false)
    );
    assert_eq!(listed[0].summary, stored.summary);

    // Back to normal while silenced: resolved, nobody told.
    create_silence(
        &mut db,
        &Silence {
            id: "s1".into(),
            matchers: vec![Matcher::eq("alertname", ALERT_NAME)],
            starts_at_ms: now_ms,
            ends_at_ms: now_ms + 3_600_000,
            created_by: "test".into(),
            comment: String::new(),
        },
        now_ms,
    )
    .unwrap();
    assert!(active(&mut db, now_ms + 1).unwrap()[0].silenced);
    for m in NOW_MINUTE + 1..=NOW_MINUTE + 2 {
        insert(&mut db, m, 20);
    }
    let later = (NOW_MINUTE + 2) * 60_000 + 5_000;
    let resolved = run(&mut db, 3, later).unwrap();
    assert_eq!(resolved.alerts.resolved, vec![id.clone()]);
    assert_eq!(resolved.alerts.queued, 0);
    let stored = get_alert(&mut db, &id).unwrap().unwrap();
    assert_eq!(stored.state.status, AlertStatus::Resolved);
    assert_eq!(stored.state.incidents, 1);
    assert_eq!(pending_messages(&mut db, 10).unwrap().len(), 1);
    assert!(active(&mut db, later).unwrap().is_empty());
}
