//! Hypothesis tests against reference values, property tests, and seeded
//! simulations (A/A false-positive rate, power on a real effect).
//!
//! Reference values come from SciPy 1.17.1 and statsmodels 0.15.0 (NumPy
//! 2.4.6) in a throwaway virtualenv; each case names the exact call.

use proptest::prelude::*;

use super::stats::*;

fn rel(got: f64, want: f64, tol: f64) {
    let scale = want.abs().max(f64::MIN_POSITIVE);
    assert!(
        ((got - want) / scale).abs() <= tol,
        "got {got:e}, want {want:e} (relative tol {tol:e})"
    );
}

fn abs(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "got {got:e}, want {want:e} (tol {tol:e})"
    );
}

fn prop(n: u64, successes: u64) -> ProportionSample {
    ProportionSample { n, successes }
}

#[test]
fn z_test_matches_statsmodels() {
    // statsmodels.stats.proportion.proportions_ztest([x_t, x_c], [n_t, n_c])
    // (pooled SE, two-sided) and confint_proportions_2indep(x_t, n_t, x_c,
    // n_c, method='wald', compare='diff', alpha=0.05).
    let cases = [
        // (control, treatment, z, p, ci_low, ci_high)
        (
            prop(1000, 120),
            prop(1000, 150),
            1.963049807622355,
            0.04964038686536878,
            7.60288212977786e-05,
            0.05992397117870222,
        ),
        (
            prop(9000, 200),
            prop(1000, 40),
            3.484722489928778,
            0.0004926476955015127,
            0.005256343251772676,
            0.03029921230378288,
        ),
        (
            prop(500, 30),
            prop(500, 30),
            0.0,
            1.0,
            -0.02943863294972433,
            0.02943863294972433,
        ),
    ];
    for (c, t, z, p, lo, hi) in cases {
        let r = two_proportion_z_test(c, t, 0.05).unwrap();
        abs(r.statistic, z, 1e-12);
        rel(r.p_value, p, 1e-10);
        abs(r.difference_ci.0, lo, 1e-12);
        abs(r.difference_ci.1, hi, 1e-12);
        assert_eq!(r.df, None);
    }
}

#[test]
fn relative_lift_uses_the_delta_method() {
    // numpy, by hand: pc = .12, pt = .15, n = 1000 each;
    // se = sqrt(se_t²/pc² + pt²·se_c²/pc⁴), z = scipy.stats.norm.ppf(0.975).
    let r = two_proportion_z_test(prop(1000, 120), prop(1000, 150), 0.05).unwrap();
    abs(r.relative_lift.unwrap(), 0.25, 1e-12);
    let (lo, hi) = r.relative_lift_ci.unwrap();
    abs(lo, -0.029337846156494596, 1e-12);
    abs(hi, 0.5293378461564946, 1e-12);
    // No lift against a zero control.
    let r = two_proportion_z_test(prop(100, 0), prop(100, 5), 0.05).unwrap();
    assert_eq!(r.relative_lift, None);
}

#[test]
fn wilson_interval_matches_statsmodels() {
    // statsmodels.stats.proportion.proportion_confint(x, n, alpha=0.05, method='wilson')
    let (lo, hi) = prop(1000, 150).wilson_interval(0.05);
    abs(lo, 0.1292100725130883, 1e-12);
    abs(hi, 0.17346865842680032, 1e-12);
    let (lo, hi) = prop(50, 0).wilson_interval(0.05);
    abs(lo, 0.0, 1e-12);
    abs(hi, 0.07134759913335874, 1e-12);
}

const A: [f64; 8] = [5.1, 4.9, 6.2, 5.8, 6.0, 5.5, 5.3, 6.1];
const B: [f64; 10] = [6.3, 6.9, 5.9, 7.1, 6.6, 6.8, 7.4, 6.2, 6.0, 7.2];

#[test]
fn welch_matches_scipy() {
    // r = scipy.stats.ttest_ind(B, A, equal_var=False); r.confidence_interval(0.95)
    let r = welch_t_test(
        MeanSample::from_values(&A),
        MeanSample::from_values(&B),
        0.05,
    )
    .unwrap();
    rel(r.statistic, 4.310545181916065, 1e-11);
    rel(r.p_value, 0.0005695066571325937, 1e-9);
    rel(r.df.unwrap(), 15.587855985832302, 1e-11);
    rel(r.difference_ci.0, 0.5210924263871809, 1e-10);
    rel(r.difference_ci.1, 1.5339075736128205, 1e-10);
    // r.confidence_interval(0.90)
    let r = welch_t_test(
        MeanSample::from_values(&A),
        MeanSample::from_values(&B),
        0.10,
    )
    .unwrap();
    rel(r.difference_ci.0, 0.6106596804552483, 1e-10);
    rel(r.difference_ci.1, 1.4443403195447528, 1e-10);
}

#[test]
fn welch_from_summary_statistics_matches_scipy() {
    // scipy.stats.ttest_ind_from_stats(mean1=10.4, std1=2.1, nobs1=40,
    //   mean2=9.5, std2=3.5, nobs2=55, equal_var=False): t = 1.5596789597360028,
    //   p = 0.12234085121689936 (sample 1 minus sample 2, so sample 2 is our control).
    let sample = |mean: f64, sd: f64, n: u64| {
        let nf = n as f64;
        MeanSample {
            n,
            sum: mean * nf,
            sum_sq: sd * sd * (nf - 1.0) + mean * mean * nf,
        }
    };
    let r = welch_t_test(sample(9.5, 3.5, 55), sample(10.4, 2.1, 40), 0.05).unwrap();
    rel(r.statistic, 1.5596789597360028, 1e-10);
    rel(r.p_value, 0.12234085121689936, 1e-9);
}

#[test]
fn mean_interval_matches_scipy() {
    // scipy.stats.t.interval(0.95, len(A) - 1, loc=mean(A), scale=scipy.stats.sem(A))
    let (lo, hi) = MeanSample::from_values(&A).t_interval(0.05);
    rel(lo, 5.206762143815647, 1e-12);
    rel(hi, 6.018237856184353, 1e-12);
}

#[test]
fn srm_matches_scipy_chisquare() {
    // scipy.stats.chisquare(observed, expected)
    let r = srm_check(&[5120, 4880], &[1.0, 1.0]).unwrap();
    rel(r.chi_square, 5.76, 1e-12);
    rel(r.p_value, 0.01639507184919225, 1e-10);
    assert!(!r.mismatch, "p = 0.016 is not below 0.001");
    let r = srm_check(&[9100, 900], &[90.0, 10.0]).unwrap();
    rel(r.chi_square, 11.11111111111111, 1e-12);
    rel(r.p_value, 0.0008581206663936758, 1e-10);
    assert!(r.mismatch);
    let r = srm_check(&[830, 170], &[0.9, 0.1]).unwrap();
    rel(r.chi_square, 54.44444444444444, 1e-12);
    rel(r.p_value, 1.599051242400399e-13, 1e-8);
    assert!(r.mismatch);
    assert_eq!(r.df, 1);
    // Textbook: the 5 % critical value of chi-square with 1 df is 3.841.
    let r = srm_check(&[10_000 + 98, 10_000 - 98], &[1.0, 1.0]).unwrap();
    assert!((r.chi_square - 1.9208).abs() < 1e-9);
}

#[test]
fn srm_edge_cases() {
    assert!(!srm_check(&[0, 0], &[1.0, 1.0]).unwrap().mismatch);
    let r = srm_check(&[10, 1], &[1.0, 0.0]).unwrap();
    assert!(r.mismatch && r.p_value == 0.0);
    assert!(matches!(
        srm_check(&[1, 2, 3], &[1.0, 1.0]),
        Err(StatsError::Allocation(_))
    ));
    assert!(srm_check(&[1, 2], &[0.0, 0.0]).is_err());
    assert!(srm_check(&[1, 2], &[-1.0, 2.0]).is_err());
    assert!(srm_check(&[1], &[1.0]).is_err());
    // Weights near f64::MAX are as good as 1 and 1: the mismatch is found.
    let huge = srm_check(&[73, 2], &[1e308, 1e308]).unwrap();
    let unit = srm_check(&[73, 2], &[1.0, 1.0]).unwrap();
    assert!(huge.mismatch && huge.p_value.is_finite(), "{huge:?}");
    assert_eq!(
        (huge.chi_square, huge.expected.clone()),
        (unit.chi_square, unit.expected)
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    assert!(matches!(
        two_proportion_z_test(prop(0, 0), prop(10, 1), 0.05),
        Err(StatsError::TooFewSamples {
            group: "control",
            ..
        })
    ));
    assert!(matches!(
        two_proportion_z_test(prop(10, 11), prop(10, 1), 0.05),
        Err(StatsError::SuccessesExceedTrials { .. })
    ));
    assert!(matches!(
        two_proportion_z_test(prop(10, 1), prop(10, 1), 1.0),
        Err(StatsError::Alpha(_))
    ));
    let one = MeanSample::from_values(&[1.0]);
    let two = MeanSample::from_values(&[1.0, 2.0]);
    assert!(matches!(
        welch_t_test(two, one, 0.05),
        Err(StatsError::TooFewSamples {
            group: "treatment",
            needed: 2,
            n: 1
        })
    ));
    let inf = MeanSample {
        n: 3,
        sum: f64::INFINITY,
        sum_sq: 1.0,
    };
    assert!(matches!(
        welch_t_test(inf, two, 0.05),
        Err(StatsError::NotFinite("control"))
    ));
    // No variation anywhere: no evidence.
    let r = two_proportion_z_test(prop(10, 0), prop(10, 0), 0.05).unwrap();
    assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
    let same = MeanSample::from_values(&[2.0, 2.0, 2.0]);
    assert_eq!(welch_t_test(same, same, 0.05).unwrap().p_value, 1.0);
    let other = MeanSample::from_values(&[3.0, 3.0]);
    assert_eq!(welch_t_test(same, other, 0.05).unwrap().p_value, 0.0);
}

/// SplitMix64: a tiny, well-mixed deterministic generator for simulations.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn bernoulli_count(&mut self, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| self.uniform() < p).count() as u64
    }
    /// Standard normal by Box–Muller.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Over 2000 A/A runs at alpha = 0.05 the expected number of false
/// positives is 100 with SD sqrt(2000·0.05·0.95) ≈ 9.7; the band [70, 130]
/// is about ±3 SD, so a correct test fails it with probability < 0.3 %
/// (and the seed makes it deterministic anyway).
const AA_RUNS: u64 = 2000;
const AA_BAND: std::ops::RangeInclusive<u64> = 70..=130;

#[test]
fn a_a_z_test_false_positive_rate_is_near_alpha() {
    let mut rng = Rng(0x00D0_1A0A);
    let mut rejections = 0;
    for _ in 0..AA_RUNS {
        let c = prop(1000, rng.bernoulli_count(1000, 0.1));
        let t = prop(1000, rng.bernoulli_count(1000, 0.1));
        if two_proportion_z_test(c, t, 0.05).unwrap().p_value < 0.05 {
            rejections += 1;
        }
    }
    eprintln!("A/A z-test: {rejections} of {AA_RUNS} significant at 0.05");
    assert!(AA_BAND.contains(&rejections), "{rejections} of {AA_RUNS}");
}

#[test]
fn a_a_welch_false_positive_rate_is_near_alpha() {
    let mut rng = Rng(0x0BAD_5EED);
    let mut rejections = 0;
    for _ in 0..AA_RUNS {
        // Unequal sizes and a skewed (log-normal) metric, like latency.
        let c: Vec<f64> = (0..60)
            .map(|_| (rng.normal() * 0.5).exp() * 800.0)
            .collect();
        let t: Vec<f64> = (0..40)
            .map(|_| (rng.normal() * 0.5).exp() * 800.0)
            .collect();
        let r = welch_t_test(
            MeanSample::from_values(&c),
            MeanSample::from_values(&t),
            0.05,
        );
        if r.unwrap().p_value < 0.05 {
            rejections += 1;
        }
    }
    eprintln!("A/A Welch: {rejections} of {AA_RUNS} significant at 0.05");
    assert!(AA_BAND.contains(&rejections), "{rejections} of {AA_RUNS}");
}

#[test]
fn a_real_effect_reaches_significance() {
    // 10 % → 12 % conversion (20 % relative lift), 4000 units per arm:
    // power ≈ 0.8 at alpha 0.05; 5000 per arm ≈ 0.88.
    let mut rng = Rng(42);
    let mut hits = 0;
    let runs = 200;
    for _ in 0..runs {
        let c = prop(5000, rng.bernoulli_count(5000, 0.10));
        let t = prop(5000, rng.bernoulli_count(5000, 0.12));
        let r = two_proportion_z_test(c, t, 0.05).unwrap();
        if r.p_value < 0.05 && r.difference > 0.0 {
            hits += 1;
        }
    }
    eprintln!("power at 10 % → 12 %, n = 5000: {hits} of {runs}");
    assert!(hits >= 160, "power {hits} of {runs}");
    // A larger effect in means: 1.0 → 1.5, SD 1, 200 per arm (power ≈ 0.999).
    let c: Vec<f64> = (0..200).map(|_| 1.0 + rng.normal()).collect();
    let t: Vec<f64> = (0..200).map(|_| 1.5 + rng.normal()).collect();
    let r = welch_t_test(
        MeanSample::from_values(&c),
        MeanSample::from_values(&t),
        0.05,
    )
    .unwrap();
    assert!(r.p_value < 0.05 && r.difference > 0.0, "{r:?}");
}

proptest! {
    #[test]
    fn z_test_p_is_a_probability_and_symmetric(
        nc in 1u64..5000, nt in 1u64..5000, fc in 0.0f64..=1.0, ft in 0.0f64..=1.0
    ) {
        let c = prop(nc, (nc as f64 * fc) as u64);
        let t = prop(nt, (nt as f64 * ft) as u64);
        let ab = two_proportion_z_test(c, t, 0.05).unwrap();
        let ba = two_proportion_z_test(t, c, 0.05).unwrap();
        prop_assert!((0.0..=1.0).contains(&ab.p_value));
        prop_assert!((ab.p_value - ba.p_value).abs() < 1e-12);
        prop_assert!((ab.statistic + ba.statistic).abs() < 1e-12);
        prop_assert!(ab.difference_ci.0 <= ab.difference && ab.difference <= ab.difference_ci.1);
    }

    #[test]
    fn z_test_p_falls_as_the_gap_grows(n in 50u64..5000, base in 0u64..40, extra in 0u64..20) {
        let c = prop(n, n * base / 100);
        let t1 = prop(n, n * (base + extra) / 100);
        let t2 = prop(n, n * (base + extra + 1) / 100);
        let p1 = two_proportion_z_test(c, t1, 0.05).unwrap().p_value;
        let p2 = two_proportion_z_test(c, t2, 0.05).unwrap().p_value;
        prop_assert!(p2 <= p1 + 1e-12, "p1 {p1} p2 {p2}");
    }

    #[test]
    fn welch_p_is_a_probability_symmetric_and_shift_monotone(
        c in prop::collection::vec(-100.0f64..100.0, 2..40),
        t in prop::collection::vec(-100.0f64..100.0, 2..40),
        shift in 0.0f64..50.0,
    ) {
        let (mc, mt) = (MeanSample::from_values(&c), MeanSample::from_values(&t));
        let ab = welch_t_test(mc, mt, 0.05).unwrap();
        let ba = welch_t_test(mt, mc, 0.05).unwrap();
        prop_assert!((0.0..=1.0).contains(&ab.p_value));
        prop_assert!((ab.p_value - ba.p_value).abs() < 1e-9);
        // Moving the treatment further from the control never raises p.
        let dir = if ab.difference >= 0.0 { 1.0 } else { -1.0 };
        let moved: Vec<f64> = t.iter().map(|x| x + dir * shift).collect();
        let further = welch_t_test(mc, MeanSample::from_values(&moved), 0.05).unwrap();
        prop_assert!(further.p_value <= ab.p_value + 1e-9);
    }

    #[test]
    fn srm_p_is_a_probability(counts in prop::collection::vec(0u64..100_000, 2..6), w in 1u32..10) {
        let weights: Vec<f64> = counts.iter().enumerate().map(|(i, _)| f64::from(w) + i as f64).collect();
        let r = srm_check(&counts, &weights).unwrap();
        prop_assert!((0.0..=1.0).contains(&r.p_value));
        prop_assert_eq!(r.mismatch, r.p_value < SRM_P_THRESHOLD);
    }
}
