//! Property tests for `dol_core::observe`: histogram percentiles and merge
//! laws, and that an alert rule never fires before its `for` duration.

// A panic is how a test fails; the workspace denies these outside tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dol_core::observe::alerts::{
    AlertRule, AlertStatus, Comparison, MetricValues, Severity, evaluate,
};
use dol_core::observe::stats::{LatencyHistogram, Sample, WindowStats};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn hist(latencies: &[u64]) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for l in latencies {
        h.record(*l);
    }
    h
}

/// latency, ok, fallback, cache hit, quality ×10, cost.
type Row = (u64, bool, bool, bool, Option<u8>, u32);

fn stats(samples: &[Row]) -> WindowStats {
    let mut w = WindowStats::new();
    for (latency_ms, ok, fallback, cache_hit, q, cost) in samples {
        w.record(&Sample {
            latency_ms: *latency_ms,
            ok: *ok,
            fallback: *fallback,
            cache_hit: *cache_hit,
            quality: q.map(|q| f64::from(q) / 10.0),
            cost_micros: u64::from(*cost),
        });
    }
    w
}

fn latencies() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0u64..120_000, 0..60)
}

fn samples() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (
            0u64..120_000,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(10u8..=50),
            any::<u32>(),
        ),
        0..30,
    )
}

proptest! {
    #[test]
    fn percentiles_are_monotonic(l in latencies(), a in 0.0f64..=1.0, b in 0.0f64..=1.0) {
        let h = hist(&l);
        let p50 = h.percentile(0.50);
        let p95 = h.percentile(0.95);
        let p99 = h.percentile(0.99);
        prop_assert!(p50 <= p95 && p95 <= p99);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(h.percentile(lo) <= h.percentile(hi));
        if let Some(max) = l.iter().max() {
            prop_assert!(p99.is_some_and(|p| p <= *max));
        } else {
            prop_assert_eq!(p50, None);
        }
    }

    #[test]
    fn histogram_merge_is_associative_and_commutative(a in latencies(), b in latencies(), c in latencies()) {
        let (ha, hb, hc) = (hist(&a), hist(&b), hist(&c));
        let mut ab = ha.clone();
        ab.merge(&hb);
        let mut ba = hb.clone();
        ba.merge(&ha);
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&hc);
        let mut bc = hb.clone();
        bc.merge(&hc);
        let mut a_bc = ha.clone();
        a_bc.merge(&bc);
        prop_assert_eq!(&ab_c, &a_bc);
        // Merging equals recording everything into one histogram.
        let all: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
        prop_assert_eq!(ab_c, hist(&all));
    }

    #[test]
    fn histogram_compact_round_trips(l in latencies()) {
        let h = hist(&l);
        prop_assert_eq!(LatencyHistogram::from_compact(&h.to_compact()), Ok(h));
    }

    #[test]
    fn window_merge_is_associative_and_commutative(a in samples(), b in samples(), c in samples()) {
        let (wa, wb, wc) = (stats(&a), stats(&b), stats(&c));
        let mut ab = wa.clone();
        ab.merge(&wb);
        let mut ba = wb.clone();
        ba.merge(&wa);
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab;
        ab_c.merge(&wc);
        let mut bc = wb;
        bc.merge(&wc);
        let mut a_bc = wa;
        a_bc.merge(&bc);
        prop_assert_eq!(&ab_c, &a_bc);
        let all: Vec<_> = a.iter().chain(&b).chain(&c).copied().collect();
        prop_assert_eq!(ab_c, stats(&all));
    }

    /// Random evaluation times and values: whenever the rule is firing, the
    /// condition has held at every evaluation for at least `for` since it
    /// last became pending.
    #[test]
    fn never_fires_before_for(
        for_secs in 0u64..900,
        steps in prop::collection::vec((1i64..400_000, prop::option::of(0.0f64..0.3)), 1..40),
    ) {
        let rule = AlertRule {
            name: "R".into(),
            metric: "error_rate".into(),
            comparison: Comparison::Gt,
            threshold: 0.1,
            window_secs: 300,
            for_secs,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            description: None,
        };
        let for_ms = i64::try_from(for_secs * 1000).unwrap();
        let mut states = Vec::new();
        let mut now = 1_700_000_000_000i64;
        // Start of the current unbroken run of true conditions.
        let mut holding_since: Option<i64> = None;
        for (dt, v) in steps {
            now += dt;
            let mut values = MetricValues::new();
            if let Some(v) = v {
                values.insert("error_rate", 300, v);
                if v > 0.1 {
                    holding_since.get_or_insert(now);
                } else {
                    holding_since = None;
                }
            }
            let (next, notes) = evaluate(std::slice::from_ref(&rule), &values, &states, &[], now);
            states = next;
            let s = &states[0];
            if s.status == AlertStatus::Firing {
                let since = holding_since.unwrap_or(now);
                prop_assert!(now - since >= for_ms, "fired after {} ms < {for_ms}", now - since);
            }
            for n in notes {
                if n.kind == dol_core::observe::alerts::NotificationKind::Firing {
                    let since = holding_since.unwrap_or(now);
                    prop_assert!(n.at_ms - since >= for_ms);
                }
            }
        }
    }
}

proptest! {
    /// A request signed with the secret verifies within the skew limit, and
    /// flipping any body byte breaks it.
    #[test]
    fn slack_sign_then_verify(
        secret in "[a-z0-9]{1,40}",
        body in prop::collection::vec(any::<u8>(), 1..200),
        ts in 1_500_000_000i64..2_000_000_000,
        skew in -300i64..=300,
        flip in any::<prop::sample::Index>(),
    ) {
        use dol_core::observe::slack::{VerifyError, slack_signature, verify_slack};
        let t = ts.to_string();
        let sig = slack_signature(&secret, &t, &body);
        prop_assert_eq!(verify_slack(&secret, Some(&t), Some(&sig), &body, ts + skew), Ok(()));
        let mut tampered = body.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        prop_assert_eq!(
            verify_slack(&secret, Some(&t), Some(&sig), &tampered, ts),
            Err(VerifyError::Mismatch)
        );
    }
}
