use super::synthetic::{Kind, series};
use super::*;

fn flat(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

#[test]
fn median_and_mad_by_hand() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(&mut []), None);
    // |x − 3| of 1,2,3,4,100 = 2,1,0,1,97 → median 1.
    assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 100.0]), Some(1.0));
}

#[test]
fn the_band_of_a_hand_checked_series() {
    // 30 minutes alternating 9 and 11 (too short for a trend, no history):
    // median 10, MAD 1 → σ̂ 1.4826, half-width 5 × 1.4826 = 7.413 (above 5 %
    // of 10).
    let values: Vec<f64> = (0..30)
        .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
        .collect();
    let c = AnomalyConfig::default();
    let (expected, half, seasonal) = band(&flat(&values), 30, &c).unwrap();
    assert_eq!(expected, 10.0);
    assert!((half - 7.413).abs() < 1e-9, "{half}");
    assert!(!seasonal);
    // Too little data: nothing is judged.
    assert_eq!(band(&flat(&values[..29]), 29, &c), None);
    // A flat series gets the relative floor: 5 % of 10.
    let (_, half, _) = band(&flat(&[10.0; 30]), 30, &c).unwrap();
    assert!((half - 0.5).abs() < 1e-12);
    let floor = AnomalyConfig {
        min_absolute: 2.0,
        ..c
    };
    assert_eq!(band(&flat(&[10.0; 30]), 30, &floor).unwrap().1, 2.0);
}

#[test]
fn a_spike_is_anomalous_only_after_min_minutes() {
    let mut values = vec![10.0; 40];
    values.extend([30.0, 30.0, 30.0, 10.0]);
    let judged = detect(&flat(&values), &AnomalyConfig::default());
    let at = |i: usize| judged.iter().find(|j| j.index == i).unwrap();
    assert!(at(40).breach && !at(40).anomalous);
    assert!(at(41).breach && !at(41).anomalous);
    assert!(at(42).anomalous, "third breaching minute");
    assert!(!at(43).breach);
    assert_eq!(episodes(&judged), vec![(42, 42)]);
    assert!(
        judge_last(&flat(&values[..43]), &AnomalyConfig::default())
            .unwrap()
            .anomalous
    );
    assert!(
        !judge_last(&flat(&values), &AnomalyConfig::default())
            .unwrap()
            .anomalous
    );
}

#[test]
fn direction_and_missing_minutes() {
    let mut values: Vec<Option<f64>> = vec![Some(10.0); 40];
    values.extend([Some(0.0), None, Some(0.0), Some(0.0)]);
    let below = detect(&values, &AnomalyConfig::default());
    assert!(
        below.last().unwrap().anomalous,
        "a gap does not break the run"
    );
    let above_only = AnomalyConfig {
        direction: Direction::Above,
        ..AnomalyConfig::default()
    };
    assert!(detect(&values, &above_only).iter().all(|j| !j.breach));
}

#[test]
fn a_daily_cycle_is_not_an_anomaly_once_there_is_history() {
    // Three quiet days of a ±40 % daily swing with 2 % noise: with the
    // seasonal lags the third day raises nothing.
    let quiet = series(7, 3, 100.0, 0.4, 0.02, 0);
    let judged = detect(&quiet.values, &AnomalyConfig::default());
    let third_day: Vec<&Judged> = judged
        .iter()
        .filter(|j| j.index >= 2 * DAY_MINUTES)
        .collect();
    assert!(third_day.iter().all(|j| j.seasonal));
    assert_eq!(third_day.iter().filter(|j| j.anomalous).count(), 0);
}

#[test]
fn the_generator_is_deterministic_and_labels_what_it_injects() {
    let a = series(1, 2, 50.0, 0.3, 0.03, 4);
    let b = series(1, 2, 50.0, 0.3, 0.03, 4);
    assert_eq!(a.values, b.values);
    assert_eq!(a.events, b.events);
    assert!(a.events.iter().any(|e| e.0 == Kind::Spike));
    assert_eq!(a.values.len(), 2 * DAY_MINUTES);
}

#[test]
fn event_scoring_by_hand() {
    let s = evaluate_events(&[(10, 15), (100, 130)], &[(12, 14), (200, 201)], 5);
    assert_eq!(
        (s.events, s.detected, s.episodes, s.true_episodes),
        (2, 1, 2, 1)
    );
    assert_eq!(s.recall(), 0.5);
    assert_eq!(s.precision(), 0.5);
}

/// Precision and recall on the generated set (printed; run with
/// `--nocapture`). Goal ≥ 0.9 each.
#[test]
fn precision_and_recall_on_synthetic_series() {
    let c = AnomalyConfig::default();
    let mut total = Score {
        events: 0,
        detected: 0,
        episodes: 0,
        true_episodes: 0,
    };
    for seed in 0..4u64 {
        let level = [20.0, 100.0, 800.0, 5.0][seed as usize % 4];
        let s = series(seed, 8, level, 0.3, 0.03 + 0.01 * (seed % 3) as f64, 4);
        let found = episodes(&detect(&s.values, &c));
        let events: Vec<(usize, usize)> = s.events.iter().map(|e| (e.1, e.2)).collect();
        total.add(&evaluate_events(&events, &found, 5));
    }
    println!(
        "anomaly detection on 4 synthetic series × 8 days: {} events, {} detected, {} episodes, {} true → precision {:.3}, recall {:.3}",
        total.events,
        total.detected,
        total.episodes,
        total.true_episodes,
        total.precision(),
        total.recall()
    );
    assert!(
        total.precision() >= 0.9,
        "precision {:.3}",
        total.precision()
    );
    assert!(total.recall() >= 0.9, "recall {:.3}", total.recall());
}
