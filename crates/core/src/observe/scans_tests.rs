//! Unit tests of the scans' pure decisions, with known answers.

use std::collections::BTreeSet;

use super::*;
use crate::gateway::telemetry::{LatencyCounts, latency_bucket};
use crate::observe::alerts::{Severity, parse_rules};

/// A histogram of `count` requests at each latency (ms).
fn lat(pairs: &[(u64, u64)]) -> LatencyCounts {
    let mut b = LatencyCounts::default();
    for (ms, count) in pairs {
        b[latency_bucket(*ms)] += count;
    }
    b
}

/// Whether a histogram reading is within 10 % of the exact value.
fn near(read: Option<f64>, exact: f64) -> bool {
    read.is_some_and(|r| (r - exact).abs() <= 0.1 * exact)
}

fn row(minute: i64, requests: u64, errors: u64, buckets: LatencyCounts) -> UsageRow {
    UsageRow {
        minute,
        tier: "enhanced".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        outcome: "success".into(),
        variant: "-".into(),
        agg: Agg {
            requests,
            errors,
            buckets,
            latency_sum_ms: 100 * requests,
            ..Agg::default()
        },
    }
}

const NOW: i64 = 1_800_000_000;

#[test]
fn due_scans_follow_the_schedules() {
    assert_eq!(
        due_scans(1_800_000_060),
        vec![ALERTS, ROLLOUTS, VIDEO_JOBS, SELECTION]
    );
    // 1_800_000_000 is a multiple of 300 but not of 21 600.
    assert_eq!(
        due_scans(1_800_000_000),
        vec![ALERTS, ROLLOUTS, VIDEO_JOBS, SELECTION, PROBES]
    );
    // 2027-01-15 00:00 UTC = 1_800_000_000 - 1_800_000_000 % 86_400.
    let midnight = 1_800_000_000 - 1_800_000_000 % 86_400;
    assert_eq!(
        due_scans(midnight as u64),
        vec![ALERTS, ROLLOUTS, VIDEO_JOBS, SELECTION, PROBES, DISCOVERY]
    );
    assert_eq!(
        due_scans((midnight + 3 * 3_600) as u64),
        vec![
            ALERTS,
            ROLLOUTS,
            VIDEO_JOBS,
            SELECTION,
            PROBES,
            REPORT,
            RETENTION,
            RECOMMENDATIONS
        ]
    );
    assert_eq!(
        due_scans((midnight + 6 * 3_600) as u64),
        vec![ALERTS, ROLLOUTS, VIDEO_JOBS, SELECTION, PROBES, DISCOVERY]
    );
}

#[test]
fn percentiles_read_the_bucket_of_the_nearest_rank() {
    let b = lat(&[(40, 90), (2_500, 9), (400_000, 1)]);
    let a = Agg::of(&[row(NOW, 100, 0, b)]);
    let p = |q: f64| a.percentile_ms(q).map(|ms| ms as f64);
    assert!(near(p(0.50), 40.0), "{:?}", p(0.50));
    assert!(near(p(0.90), 40.0), "{:?}", p(0.90));
    assert!(near(p(0.95), 2_500.0), "{:?}", p(0.95));
    assert!(near(p(0.99), 2_500.0), "{:?}", p(0.99));
    // Past the last bound (just over 5 minutes): "at least".
    assert_eq!(a.percentile_ms(1.0), Some(301_267));
    assert_eq!(Agg::default().percentile_ms(0.5), None);
}

#[test]
fn rule_metrics_from_aggregate_rows() {
    let rules = parse_rules(
        r#"[
        {"name":"err5","metric":"error_rate","comparison":">","threshold":0.1,"window":"5m","severity":"critical"},
        {"name":"err1","metric":"error_rate","comparison":">","threshold":0.1,"window":"1m","severity":"critical"},
        {"name":"p95","metric":"p95_latency_ms","comparison":">","threshold":1000,"window":"5m","severity":"warning"},
        {"name":"q","metric":"avg_quality","comparison":"<","threshold":3.5,"window":"30m","severity":"warning"},
        {"name":"fb","metric":"fallback_rate","comparison":">","threshold":0.5,"window":"5m","severity":"info"}
    ]"#,
    )
    .unwrap();
    let fast = lat(&[(100, 10)]);
    let slow = lat(&[(5_000, 10)]);
    let mut old = row(NOW - 1_200, 10, 0, fast);
    old.agg.quality_sum = 20.0;
    old.agg.quality_n = 10;
    let mut recent = row(NOW - 240, 10, 5, slow);
    recent.agg.fallbacks = 5;
    recent.agg.quality_sum = 50.0;
    recent.agg.quality_n = 10;
    let rows = vec![
        old,
        recent,
        row(NOW, 10, 0, fast),
        // In the future (clock skew): ignored.
        row(NOW + 60, 100, 100, fast),
    ];
    let v = metric_values(&rules, &rows, NOW);
    // 5 min: 20 requests, 5 errors.
    assert_eq!(v.get("error_rate", 300), Some(0.25));
    // 1 min: only the current minute.
    assert_eq!(v.get("error_rate", 60), Some(0.0));
    // 5 min: 10 at 100 ms, 10 at 5000 ms → p95 in the slow bucket.
    assert!(near(v.get("p95_latency_ms", 300), 5_000.0));
    // 30 min: (20 + 50) / 20.
    assert_eq!(v.get("avg_quality", 1_800), Some(3.5));
    assert_eq!(v.get("fallback_rate", 300), Some(0.25));
    // No traffic: rates are 0, latency and quality have no value.
    let empty = metric_values(&rules, &[], NOW);
    assert_eq!(empty.get("error_rate", 300), Some(0.0));
    assert_eq!(empty.get("p95_latency_ms", 300), None);
    assert_eq!(empty.get("avg_quality", 1_800), None);
}

#[test]
fn the_shipped_rules_parse_and_use_known_metrics() {
    let rules = parse_rules(DEFAULT_RULES).unwrap();
    assert!(rules.len() >= 5);
    assert!(
        unknown_metrics(&rules).is_empty(),
        "{:?}",
        unknown_metrics(&rules)
    );
    let err = rules.iter().find(|r| r.metric == "error_rate").unwrap();
    assert_eq!(
        (err.threshold, err.window_secs, err.for_secs),
        (0.10, 300, 300)
    );
    assert_eq!(err.severity, Severity::Critical);
    let q = rules.iter().find(|r| r.metric == "avg_quality").unwrap();
    assert_eq!((q.threshold, q.window_secs), (3.5, 1_800));
    assert!(rules.iter().any(|r| r.metric == "models_without_price"));
    let typo = parse_rules(
        r#"[{"name":"x","metric":"eror_rate","comparison":">","threshold":1,"window":"1m","severity":"info"}]"#,
    )
    .unwrap();
    assert_eq!(unknown_metrics(&typo), vec!["x: eror_rate".to_owned()]);
}

fn cat(model: &str, cw: u64, caps: &[&str], priced: bool) -> CatalogModel {
    CatalogModel {
        provider: "openai".into(),
        model: model.into(),
        context_window: cw,
        capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
        input_price: priced.then_some(150_000),
        output_price: priced.then_some(600_000),
        source: "seed".into(),
    }
}

fn listed(id: &str, cw: Option<u64>, caps: &[&str]) -> DiscoveredModel {
    DiscoveredModel {
        id: id.into(),
        display_name: None,
        context_window: cw,
        output_limit: None,
        capabilities: caps
            .iter()
            .map(|c| (*c).to_owned())
            .collect::<BTreeSet<_>>(),
    }
}

#[test]
fn discovery_diff_finds_new_removed_and_changed_models() {
    let mut other = cat("claude", 200_000, &[], true);
    other.provider = "anthropic".into();
    let catalog = vec![
        cat("gpt-4o", 128_000, &["json", "streaming"], true),
        cat("gpt-4o-mini", 128_000, &["json"], true),
        cat("gpt-3.5", 16_000, &[], true),
        other,
    ];
    let list = vec![
        listed("gpt-4o", Some(128_000), &["json", "streaming"]),
        listed("gpt-4o-mini", Some(64_000), &["json", "vision"]),
        listed("gpt-5", None, &[]),
        listed("gpt-5", None, &[]),
    ];
    let d = diff_models("openai", &catalog, &list);
    assert_eq!(
        d.added.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["gpt-5"]
    );
    assert_eq!(d.removed, vec!["gpt-3.5".to_owned()]);
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].model, "gpt-4o-mini");
    assert_eq!(
        d.changed[0].changes,
        vec![
            "context_window 128000 -> 64000".to_owned(),
            "capabilities [json] -> [json,vision]".to_owned()
        ]
    );
    // Unknown limits and capabilities are not changes.
    let same = diff_models("openai", &catalog[..1], &[listed("gpt-4o", None, &[])]);
    assert!(same.is_empty());
    let e = discovered_entry("openai", &list[2]);
    assert_eq!(
        (e.source.as_str(), e.input_price, e.context_window),
        ("discovered", None, UNKNOWN_CONTEXT_WINDOW)
    );
    assert!(e.unpriced());
    assert!(!catalog[0].unpriced());
}

#[test]
fn discovery_messages_name_new_and_changed_models_only() {
    let catalog = vec![cat("gpt-4o", 128_000, &["json"], true)];
    let only_removed = diff_models("openai", &catalog, &[]);
    assert_eq!(only_removed.removed, vec!["gpt-4o".to_owned()]);
    // Removed models alone send nothing (they would repeat every run).
    assert_eq!(
        discovery_message(std::slice::from_ref(&only_removed), 7).unwrap(),
        None
    );
    let added = diff_models("openai", &catalog, &[listed("gpt-5", None, &[])]);
    let (message, key) = discovery_message(&[added, only_removed], 7)
        .unwrap()
        .unwrap();
    assert_eq!(message.scan, DISCOVERY);
    assert_eq!(
        message.text,
        "new openai/gpt-5 (no price yet)\nremoved openai/gpt-4o\nremoved openai/gpt-4o"
    );
    // Data lists only the providers with something new or changed.
    assert_eq!(message.data.as_array().map(Vec::len), Some(1));
    assert!(key.starts_with("discovery:7:"), "{key}");
}

#[test]
fn retention_cutoff_is_days_before_now() {
    assert_eq!(retention_cutoff_ms(100 * DAY_MS, 30), 70 * DAY_MS);
    assert_eq!(retention_cutoff_ms(5, 30), 5 - 30 * DAY_MS);
    assert_eq!(parse_retention_days(""), DEFAULT_RETENTION_DAYS);
    assert_eq!(parse_retention_days("0"), DEFAULT_RETENTION_DAYS);
    assert_eq!(parse_retention_days("x"), DEFAULT_RETENTION_DAYS);
    assert_eq!(parse_retention_days(" 7 "), 7);
}

#[test]
fn daily_report_covers_the_last_24_hours() {
    let b = lat(&[(250, 10)]);
    let mut a = row(NOW - 3_600, 10, 1, b);
    a.agg.cost_micros = 2_000_000;
    a.agg.cache_hits = 5;
    let mut other = row(NOW - 60, 30, 0, b);
    other.model = "gpt-4o".into();
    let rows = vec![a, other, row(NOW - 90_000, 1_000, 1_000, b)];
    let r = daily_report(&rows, NOW);
    assert_eq!((r.from, r.to, r.requests), (NOW - 86_400, NOW, 40));
    assert_eq!(r.error_rate, 1.0 / 40.0);
    assert_eq!(r.cache_hit_rate, 5.0 / 40.0);
    assert!(near(r.p95_ms.map(|ms| ms as f64), 250.0), "{:?}", r.p95_ms);
    assert_eq!(r.cost_usd, 2.0);
    assert_eq!(r.by_model[0].key, "openai/gpt-4o");
    assert_eq!(r.by_model[1].requests, 10);
    let text = report_text(&r);
    assert!(text.starts_with("Requests 40, errors 2.5 %"), "{text}");
    assert!(text.contains("openai/gpt-4o-mini: 10 requests"), "{text}");
}

#[test]
fn the_daily_report_shows_savings_agreement_and_accuracy() {
    let mut a = row(NOW - 60, 10, 0, lat(&[(250, 10)]));
    a.agg.cost_micros = 1_000_000;
    a.agg.baseline_micros = 4_000_000;
    let mut r = daily_report(&[a], NOW);
    assert_eq!(r.savings.saved_usd, 3.0);
    assert_eq!(r.savings.saved_pct, Some(75.0));
    assert_eq!(r.by_model[0].saved_usd, 3.0);
    assert!(report_text(&r).contains("Saved $3.0000 against the baseline ($4.0000, 75.0 %)"));
    assert!(
        !report_text(&r).contains("feedback"),
        "no agreement without feedback"
    );
    r.feedback_agreement =
        crate::optimize::feedback::pearson(&[(6.0, 0.0), (7.0, 0.5), (8.0, 0.5), (9.0, 1.0)], 0.05);
    r.selection_accuracy = crate::optimize::selection::Accuracy {
        judged: 20,
        correct: 19,
    };
    let text = report_text(&r);
    assert!(
        text.contains("Quality score vs feedback: r = 0.95"),
        "{text}"
    );
    assert!(
        text.contains("Model selection accuracy 95.0 % (19 of 20"),
        "{text}"
    );
}

#[test]
fn alert_notifications_become_block_kit_with_buttons() {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("alertname".to_owned(), "HighErrorRate".to_owned());
    labels.insert("kill_flag".to_owned(), "new_pipeline".to_owned());
    let n = Notification {
        kind: NotificationKind::Firing,
        fingerprint: "abc".into(),
        name: "HighErrorRate".into(),
        severity: Severity::Critical,
        labels,
        value: Some(0.5),
        summary: "error rate 0.5".into(),
        at_ms: 1,
        by: None,
    };
    let m = notification_slack_message(&n).to_string();
    for needle in [
        "dol_ack",
        "dol_resolve",
        "dol_kill_switch",
        "new_pipeline",
        "FIRING",
    ] {
        assert!(m.contains(needle), "{needle} in {m}");
    }
    let body = webhook_body("alert", 42, &serde_json::to_value(&n).unwrap());
    assert_eq!(body["type"], "alert");
    assert_eq!(body["delivery"], "dol-outbox-42");
    assert_eq!(body["delivery"], delivery_id(42));
    assert_eq!(body["payload"]["fingerprint"], "abc");
    let s = scan_slack_message(&ScanMessage {
        scan: "report".into(),
        title: "DOL daily report".into(),
        text: "a < b".into(),
        data: Value::Null,
    });
    assert_eq!(s["blocks"][1]["text"]["text"], "a &lt; b");
}
