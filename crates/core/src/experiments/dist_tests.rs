//! Distribution functions against reference values.
//!
//! Reference values were computed with SciPy 1.17.1 (NumPy 2.4.6, Python 3)
//! in a throwaway virtualenv; each table names the exact call. Textbook
//! values are marked as such.

use proptest::prelude::*;

use super::dist::*;

/// Relative closeness for values of any magnitude.
fn rel(got: f64, want: f64, tol: f64) {
    let scale = want.abs().max(f64::MIN_POSITIVE);
    assert!(
        ((got - want) / scale).abs() <= tol,
        "got {got:e}, want {want:e} (relative tol {tol:e})"
    );
}

#[test]
fn normal_cdf_matches_scipy() {
    // scipy.stats.norm.cdf(x)
    let cases = [
        (-8.0, 6.22096057427174e-16),
        (-3.0, 0.0013498980316300933),
        (-1.959963984540054, 0.025),
        (-1.0, 0.15865525393145707),
        (0.0, 0.5),
        (0.5, 0.6914624612740131),
        (1.0, 0.8413447460685429),
        (2.5, 0.9937903346742238),
        (6.0, 0.9999999990134123),
    ];
    for (x, want) in cases {
        rel(normal_cdf(x), want, 1e-12);
    }
    // Textbook: Φ(1.96) ≈ 0.9750021048517795 (the "97.5 %" point).
    rel(normal_cdf(1.96), 0.975_002_104_851_779_5, 1e-12);
}

#[test]
fn normal_quantile_matches_scipy() {
    // scipy.stats.norm.ppf(p)
    let cases = [
        (1e-10, -6.361340902404056),
        (0.001, -3.090232306167813),
        (0.025, -1.9599639845400545),
        (0.05, -1.6448536269514729),
        (0.3, -0.5244005127080409),
        (0.5, 0.0),
        (0.8, 0.8416212335729143),
        (0.975, 1.959963984540054),
        (0.999, 3.090232306167813),
        (1.0 - 1e-10, 6.361340889697422),
    ];
    for (p, want) in cases {
        if want == 0.0 {
            assert!(normal_quantile(p).abs() < 1e-15);
        } else {
            rel(normal_quantile(p), want, 1e-12);
        }
    }
    assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
    assert_eq!(normal_quantile(1.0), f64::INFINITY);
    assert!(normal_quantile(-0.1).is_nan());
    assert!(normal_quantile(1.1).is_nan());
    assert!(normal_quantile(f64::NAN).is_nan());
}

#[test]
fn t_cdf_matches_scipy() {
    // scipy.stats.t.cdf(t, df)
    let cases = [
        (2.0, 3.0, 0.9303370157205785),
        (-1.5, 10.0, 0.08225366322272007),
        (0.3, 1.0, 0.5927735790777423),
        (2.228, 10.0, 0.9749941140914443),
        (4.0, 57.3, 0.9999081382073873),
        (1.2, 2.5, 0.8342805811670612),
    ];
    for (t, df, want) in cases {
        rel(t_cdf(t, df), want, 1e-12);
    }
    // Cauchy (df = 1) has a closed form: F(t) = 1/2 + atan(t)/π.
    let t = 0.3_f64;
    rel(t_cdf(t, 1.0), 0.5 + t.atan() / std::f64::consts::PI, 1e-13);
}

#[test]
fn t_quantile_matches_scipy_and_tables() {
    // scipy.stats.t.ppf(p, df)
    let cases = [
        (0.975, 10.0, 2.228138851986274),
        (0.975, 1.0, 12.706204736174694),
        (0.995, 57.3, 2.6643894364923972),
        (0.025, 4.5, -2.658912347204404),
        (0.9, 2.0, 1.8856180831641272),
    ];
    for (p, df, want) in cases {
        rel(t_quantile(p, df), want, 1e-10);
    }
    // Printed t tables: t(0.975, 10) = 2.228, t(0.975, 30) = 2.042.
    assert!((t_quantile(0.975, 30.0) - 2.042).abs() < 5e-4);
    // df = 2 has a closed form: t = (2p − 1) / sqrt(2p(1 − p)).
    let p = 0.9_f64;
    rel(
        t_quantile(p, 2.0),
        (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt(),
        1e-12,
    );
    assert_eq!(t_quantile(0.5, 7.0), 0.0);
    assert!(t_quantile(0.5, 0.0).is_nan());
}

#[test]
fn chi2_sf_matches_scipy() {
    // scipy.stats.chi2.sf(x, k)
    let cases = [
        (3.84, 1.0, 0.05004352124870519),
        (10.0, 3.0, 0.01856613546304325),
        (0.5, 2.0, 0.7788007830714049),
        (25.0, 10.0, 0.005345505487134069),
        (100.0, 4.0, 9.836624224615988e-21),
        (11.07, 5.0, 0.050009618622405425),
    ];
    for (x, k, want) in cases {
        rel(chi2_sf(x, k), want, 1e-11);
    }
    // df = 2 is exponential: sf(x) = exp(−x/2).
    rel(chi2_sf(0.5, 2.0), (-0.25_f64).exp(), 1e-14);
    assert_eq!(chi2_sf(0.0, 3.0), 1.0);
    assert!(chi2_sf(1.0, 0.0).is_nan());
}

#[test]
fn special_functions_match_scipy() {
    // scipy.special.betainc(a, b, x)
    rel(beta_inc(2.0, 3.0, 0.4), 0.5247999999999999, 1e-13);
    rel(beta_inc(0.5, 0.5, 0.1), 0.20483276469913345, 1e-13);
    rel(beta_inc(10.0, 20.0, 0.3), 0.3640040810719437, 1e-12);
    // scipy.special.gammaincc(a, x)
    rel(gamma_q(0.5, 2.0), 0.04550026389635857, 1e-13);
    rel(gamma_q(3.0, 1.0), 0.9196986029286058, 1e-13);
    rel(gamma_q(10.0, 12.0), 0.24239216167051245, 1e-12);
    // scipy.special.gammaln(x)
    rel(ln_gamma(0.5), 0.5723649429247, 1e-13);
    assert!(ln_gamma(1.0).abs() < 1e-14);
    rel(ln_gamma(3.7), 1.428072326665388, 1e-13);
    rel(ln_gamma(10.5), 13.940625219403763, 1e-13);
    rel(ln_gamma(100.0), 359.1342053695754, 1e-13);
    assert!((gamma_p(3.0, 1.0) + gamma_q(3.0, 1.0) - 1.0).abs() < 1e-15);
}

proptest! {
    #[test]
    fn normal_cdf_is_a_probability_symmetric_and_monotone(x in -40.0f64..40.0, d in 0.0f64..5.0) {
        let p = normal_cdf(x);
        prop_assert!((0.0..=1.0).contains(&p));
        prop_assert!((p + normal_cdf(-x) - 1.0).abs() < 1e-14);
        prop_assert!(normal_cdf(x + d) >= p);
    }

    #[test]
    fn normal_quantile_inverts_the_cdf(p in 1e-12f64..(1.0 - 1e-12)) {
        let x = normal_quantile(p);
        prop_assert!(x.is_finite());
        let back = if p > 0.5 { 1.0 - normal_sf(x) } else { normal_cdf(x) };
        prop_assert!((back - p).abs() <= 1e-13 * p.max(1e-3), "p {p} x {x} back {back}");
    }

    #[test]
    fn t_cdf_is_symmetric_monotone_and_inverted_by_the_quantile(
        t in -50.0f64..50.0, d in 0.0f64..3.0, df in 0.5f64..500.0
    ) {
        let p = t_cdf(t, df);
        prop_assert!((0.0..=1.0).contains(&p));
        prop_assert!((p + t_cdf(-t, df) - 1.0).abs() < 1e-12);
        prop_assert!(t_cdf(t + d, df) >= p - 1e-15);
        if p > 1e-9 && p < 1.0 - 1e-9 {
            let back = t_quantile(p, df);
            prop_assert!((back - t).abs() <= 1e-7 * t.abs().max(1.0), "t {t} df {df} back {back}");
        }
    }

    #[test]
    fn t_approaches_the_normal_for_large_df(t in -5.0f64..5.0) {
        prop_assert!((t_cdf(t, 1e7) - normal_cdf(t)).abs() < 1e-6);
    }

    #[test]
    fn chi2_sf_is_a_decreasing_probability(x in 0.0f64..200.0, d in 0.0f64..10.0, k in 1u32..50) {
        let k = f64::from(k);
        let p = chi2_sf(x, k);
        prop_assert!((0.0..=1.0).contains(&p));
        prop_assert!(chi2_sf(x + d, k) <= p + 1e-15);
    }
}
