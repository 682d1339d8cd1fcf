//! Hypothesis tests and intervals for experiments, over sufficient
//! statistics (counts and sums), so storage does the aggregation:
//!
//! - [`two_proportion_z_test`]: the z statistic uses the *pooled* standard
//!   error (the null hypothesis says both rates are equal); the interval for
//!   the difference uses the *unpooled* Wald standard error;
//! - [`welch_t_test`]: Welch's unequal-variance t-test with
//!   Welch–Satterthwaite degrees of freedom and the matching t interval for
//!   the difference of means;
//! - relative lift `treatment / control − 1` with a delta-method interval;
//! - [`srm_check`]: a chi-square goodness-of-fit test of observed units per
//!   variant against the expected allocation; [`SRM_P_THRESHOLD`] flags a
//!   sample-ratio mismatch.
//!
//! All p-values are two-sided. Differences and lifts are always
//! *treatment minus control* (`treatment / control`).

use serde::Serialize;
use thiserror::Error;

use super::dist::{chi2_sf, normal_quantile, normal_sf, t_quantile, t_sf};

/// p-value below which [`srm_check`] reports a sample-ratio mismatch.
///
/// 0.001 is the conventional, deliberately strict SRM threshold (Fabijan et
/// al., "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments",
/// KDD 2019; Kohavi, Tang & Xu, *Trustworthy Online Controlled Experiments*,
/// 2020): the check runs on every report refresh, and a looser level would
/// raise false alarms on healthy experiments that are looked at often.
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// Why a test could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// A group has fewer observations than the test needs.
    #[error("{group}: needs at least {needed} observations, has {n}")]
    TooFewSamples {
        /// `control` or `treatment` (or the variant's position for SRM).
        group: &'static str,
        /// Observations needed.
        needed: u64,
        /// Observations present.
        n: u64,
    },
    /// More successes than trials.
    #[error("{group}: {successes} successes out of {n} trials")]
    SuccessesExceedTrials {
        /// `control` or `treatment`.
        group: &'static str,
        /// Successes given.
        successes: u64,
        /// Trials given.
        n: u64,
    },
    /// `alpha` is not strictly between 0 and 1.
    #[error("alpha must be strictly between 0 and 1, got {0}")]
    Alpha(f64),
    /// A sum or sum of squares is not a finite number.
    #[error("{0}: sums must be finite numbers")]
    NotFinite(&'static str),
    /// The observed counts and the expected weights do not line up (length,
    /// a negative / non-finite weight, or all weights zero).
    #[error("allocation: {0}")]
    Allocation(String),
}

/// Trials and successes of one group (a conversion-style metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProportionSample {
    /// Trials (units).
    pub n: u64,
    /// Successes (units that converted).
    pub successes: u64,
}

impl ProportionSample {
    /// The success rate (0 when `n` is 0).
    pub fn rate(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.successes as f64 / self.n as f64
        }
    }

    /// Wilson score interval for the rate at confidence `1 − alpha`
    /// (Wilson 1927; unlike the Wald interval it stays inside [0, 1] and is
    /// not degenerate at 0 or n successes). `(0, 1)` when `n` is 0.
    pub fn wilson_interval(&self, alpha: f64) -> (f64, f64) {
        if self.n == 0 {
            return (0.0, 1.0);
        }
        let z = normal_quantile(1.0 - alpha / 2.0);
        let n = self.n as f64;
        let p = self.rate();
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        ((centre - half).max(0.0), (centre + half).min(1.0))
    }
}

/// Count, sum and sum of squares of one group (a mean metric).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MeanSample {
    /// Observations.
    pub n: u64,
    /// Sum of the values.
    pub sum: f64,
    /// Sum of the squared values.
    pub sum_sq: f64,
}

impl MeanSample {
    /// The sample built from individual values (for tests and callers
    /// holding raw data).
    pub fn from_values(values: &[f64]) -> Self {
        Self {
            n: values.len() as u64,
            sum: values.iter().sum(),
            sum_sq: values.iter().map(|v| v * v).sum(),
        }
    }

    /// The mean (0 when `n` is 0).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }

    /// The unbiased sample variance (n − 1 denominator; 0 when `n < 2`).
    /// Clamped at 0: `sum_sq − sum²/n` can come out slightly negative from
    /// rounding when all values are equal.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }

    /// t interval for the mean at confidence `1 − alpha` (`(mean, mean)`
    /// when `n < 2`: no spread can be estimated).
    pub fn t_interval(&self, alpha: f64) -> (f64, f64) {
        let m = self.mean();
        if self.n < 2 {
            return (m, m);
        }
        let se = (self.variance() / self.n as f64).sqrt();
        let q = t_quantile(1.0 - alpha / 2.0, self.n as f64 - 1.0);
        (m - q * se, m + q * se)
    }
}

/// The outcome of comparing a treatment group with the control group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Control estimate (rate or mean).
    pub control: f64,
    /// Treatment estimate (rate or mean).
    pub treatment: f64,
    /// `treatment − control`.
    pub difference: f64,
    /// Interval for the difference at confidence `1 − alpha`.
    pub difference_ci: (f64, f64),
    /// The test statistic (z or t).
    pub statistic: f64,
    /// Degrees of freedom (Welch); `None` for the z-test.
    pub df: Option<f64>,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `treatment / control − 1`; `None` when the control estimate is 0.
    pub relative_lift: Option<f64>,
    /// Delta-method interval for the relative lift at confidence `1 − alpha`.
    pub relative_lift_ci: Option<(f64, f64)>,
}

fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::Alpha(alpha))
    }
}

/// Relative lift `t / c − 1` and its delta-method interval, given the two
/// estimates and their standard errors (independent groups):
/// `Var(t/c) ≈ se_t²/c² + t²·se_c²/c⁴` (first-order Taylor expansion of the
/// ratio; Kohavi, Tang & Xu 2020, ch. 18). `None` when `c` is 0.
fn lift(c: f64, t: f64, se_c: f64, se_t: f64, z: f64) -> (Option<f64>, Option<(f64, f64)>) {
    if c == 0.0 {
        return (None, None);
    }
    let ratio = t / c;
    let se = (se_t * se_t / (c * c) + t * t * se_c * se_c / (c * c * c * c)).sqrt();
    (
        Some(ratio - 1.0),
        Some((ratio - 1.0 - z * se, ratio - 1.0 + z * se)),
    )
}

/// Two-proportion z-test of `treatment` against `control`.
///
/// `z = (p_t − p_c) / sqrt(p̂(1 − p̂)(1/n_c + 1/n_t))` with the pooled rate
/// `p̂`; the difference's interval is `±z_{1−α/2}·sqrt(p_c(1−p_c)/n_c +
/// p_t(1−p_t)/n_t)`. When the pooled rate is 0 or 1 (no variation at all)
/// the statistic is 0 and the p-value 1: there is no evidence of a difference.
pub fn two_proportion_z_test(
    control: ProportionSample,
    treatment: ProportionSample,
    alpha: f64,
) -> Result<Comparison, StatsError> {
    check_alpha(alpha)?;
    for (group, s) in [("control", control), ("treatment", treatment)] {
        if s.n == 0 {
            return Err(StatsError::TooFewSamples {
                group,
                needed: 1,
                n: 0,
            });
        }
        if s.successes > s.n {
            return Err(StatsError::SuccessesExceedTrials {
                group,
                successes: s.successes,
                n: s.n,
            });
        }
    }
    let (nc, nt) = (control.n as f64, treatment.n as f64);
    let (pc, pt) = (control.rate(), treatment.rate());
    let pooled = (control.successes + treatment.successes) as f64 / (nc + nt);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    let diff = pt - pc;
    let (z_stat, p_value) = if se_pooled > 0.0 {
        let z = diff / se_pooled;
        (z, (2.0 * normal_sf(z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    let se_c = (pc * (1.0 - pc) / nc).sqrt();
    let se_t = (pt * (1.0 - pt) / nt).sqrt();
    let se_wald = (se_c * se_c + se_t * se_t).sqrt();
    let q = normal_quantile(1.0 - alpha / 2.0);
    let (relative_lift, relative_lift_ci) = lift(pc, pt, se_c, se_t, q);
    Ok(Comparison {
        control: pc,
        treatment: pt,
        difference: diff,
        difference_ci: (diff - q * se_wald, diff + q * se_wald),
        statistic: z_stat,
        df: None,
        p_value,
        relative_lift,
        relative_lift_ci,
    })
}

/// Welch's t-test of `treatment` against `control` (unequal variances).
///
/// `t = (m_t − m_c) / sqrt(s_c²/n_c + s_t²/n_t)`, degrees of freedom by
/// Welch–Satterthwaite `(v_c + v_t)² / (v_c²/(n_c−1) + v_t²/(n_t−1))` with
/// `v = s²/n`; the difference's interval is `±t_{1−α/2, df}·se`. Each group
/// needs 2 observations. When both groups have zero variance the statistic
/// is 0 (equal means, p = 1) or ±∞ (p = 0), with `n_c + n_t − 2` df.
pub fn welch_t_test(
    control: MeanSample,
    treatment: MeanSample,
    alpha: f64,
) -> Result<Comparison, StatsError> {
    check_alpha(alpha)?;
    for (group, s) in [("control", control), ("treatment", treatment)] {
        if !s.sum.is_finite() || !s.sum_sq.is_finite() {
            return Err(StatsError::NotFinite(group));
        }
        if s.n < 2 {
            return Err(StatsError::TooFewSamples {
                group,
                needed: 2,
                n: s.n,
            });
        }
    }
    let (nc, nt) = (control.n as f64, treatment.n as f64);
    let (mc, mt) = (control.mean(), treatment.mean());
    let vc = control.variance() / nc;
    let vt = treatment.variance() / nt;
    let se = (vc + vt).sqrt();
    let diff = mt - mc;
    let (stat, df, p_value) = if se > 0.0 {
        let df = (vc + vt) * (vc + vt) / (vc * vc / (nc - 1.0) + vt * vt / (nt - 1.0));
        let t = diff / se;
        (t, df, (2.0 * t_sf(t.abs(), df)).min(1.0))
    } else if diff == 0.0 {
        (0.0, nc + nt - 2.0, 1.0)
    } else {
        (diff.signum() * f64::INFINITY, nc + nt - 2.0, 0.0)
    };
    let q = t_quantile(1.0 - alpha / 2.0, df);
    let zq = normal_quantile(1.0 - alpha / 2.0);
    let (relative_lift, relative_lift_ci) = lift(mc, mt, vc.sqrt(), vt.sqrt(), zq);
    Ok(Comparison {
        control: mc,
        treatment: mt,
        difference: diff,
        difference_ci: (diff - q * se, diff + q * se),
        statistic: stat,
        df: Some(df),
        p_value,
        relative_lift,
        relative_lift_ci,
    })
}

/// The sample-ratio-mismatch check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Srm {
    /// Pearson's chi-square statistic.
    pub chi_square: f64,
    /// Degrees of freedom (variants − 1).
    pub df: u64,
    /// p-value of the goodness-of-fit test.
    pub p_value: f64,
    /// Expected units per variant under the configured allocation.
    pub expected: Vec<f64>,
    /// `p_value < SRM_P_THRESHOLD`.
    pub mismatch: bool,
}

/// Chi-square goodness of fit of `observed` units per variant against the
/// allocation `weights` (any positive scale; normalised here). Variants with
/// weight 0 must have no units, else the mismatch is certain (p = 0).
/// With no units at all there is nothing to test: p = 1, no mismatch.
pub fn srm_check(observed: &[u64], weights: &[f64]) -> Result<Srm, StatsError> {
    if observed.len() != weights.len() {
        return Err(StatsError::Allocation(format!(
            "{} counts for {} weights",
            observed.len(),
            weights.len()
        )));
    }
    if observed.len() < 2 {
        return Err(StatsError::Allocation("needs at least 2 variants".into()));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(StatsError::Allocation(
            "weights must be finite and not negative".into(),
        ));
    }
    // Weights are relative: scaled by the largest first, so weights near
    // f64::MAX (accepted by the definition, stored as written) cannot sum to
    // infinity and turn every expected count into NaN (no mismatch ever).
    let largest = weights.iter().copied().fold(0.0, f64::max);
    if largest <= 0.0 {
        return Err(StatsError::Allocation("all weights are zero".into()));
    }
    let weights: Vec<f64> = weights.iter().map(|w| w / largest).collect();
    let total_w: f64 = weights.iter().sum();
    let total: u64 = observed.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| total as f64 * w / total_w).collect();
    let df = (weights.iter().filter(|w| **w > 0.0).count() as u64).saturating_sub(1);
    if total == 0 {
        return Ok(Srm {
            chi_square: 0.0,
            df,
            p_value: 1.0,
            expected,
            mismatch: false,
        });
    }
    let mut chi = 0.0;
    let mut impossible = false;
    for (o, e) in observed.iter().zip(&expected) {
        if *e == 0.0 {
            impossible |= *o > 0;
        } else {
            let d = *o as f64 - e;
            chi += d * d / e;
        }
    }
    let p_value = if impossible {
        0.0
    } else if df == 0 {
        1.0
    } else {
        chi2_sf(chi, df as f64)
    };
    Ok(Srm {
        chi_square: if impossible { f64::INFINITY } else { chi },
        df,
        p_value,
        expected,
        mismatch: p_value < SRM_P_THRESHOLD,
    })
}
