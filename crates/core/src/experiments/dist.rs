//! Probability distributions the experiment statistics need: the standard
//! normal (CDF and quantile), Student's t (CDF, survival and quantile) and
//! the chi-square survival function, built on the regularized incomplete
//! gamma and beta functions.
//!
//! Methods (formulas from the literature, implemented here):
//! - `ln Γ`: Lanczos approximation, g = 7, nine coefficients (relative error
//!   below 1e-15 for positive arguments);
//! - regularized incomplete gamma `P(a, x)` / `Q(a, x)`: power series for
//!   `x < a + 1`, Legendre's continued fraction (modified Lentz) otherwise
//!   (Press et al., *Numerical Recipes*, 3rd ed., §6.2);
//! - regularized incomplete beta `I_x(a, b)`: its continued fraction with the
//!   symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` (Numerical Recipes §6.4);
//! - normal CDF through `erfc(z) = Q(1/2, z²)`, so both tails keep full
//!   relative precision (no `1 − Φ` cancellation);
//! - normal quantile: Acklam's rational approximation refined by one Halley
//!   step on the CDF (≈ 1e-15);
//! - t quantile: bisection-safeguarded Newton iteration on the t CDF.
//!
//! Invalid arguments (NaN, a non-positive shape or degrees of freedom, a
//! probability outside [0, 1]) give NaN rather than a panic: callers check
//! their inputs, and NaN never silently turns into a significant result.

use std::f64::consts::PI;

/// Iteration cap of the series and continued fractions (they converge in
/// well under 200 steps for the arguments experiments produce).
const MAX_ITER: usize = 10_000;
/// Relative convergence threshold of the series and continued fractions.
const EPS: f64 = 1e-16;
/// Smallest magnitude kept in Lentz's method, to avoid division by zero.
const TINY: f64 = 1e-300;

/// Lanczos coefficients for g = 7, n = 9 (the widely published set).
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `x > 0`, false for NaN (so `!positive(x)` also rejects NaN).
fn positive(x: f64) -> bool {
    x > 0.0
}

/// `x ≥ 0`, false for NaN.
fn non_negative(x: f64) -> bool {
    x >= 0.0
}

/// Natural logarithm of the gamma function for `x > 0` (NaN otherwise).
pub fn ln_gamma(x: f64) -> f64 {
    if !positive(x) {
        return f64::NAN;
    }
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Regularized lower incomplete gamma `P(a, x)` for `a > 0`, `x ≥ 0`.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if !positive(a) || !non_negative(x) {
        return f64::NAN;
    }
    if x == 0.0 {
        return 0.0;
    }
    if x < a + 1.0 {
        gamma_series(a, x)
    } else {
        1.0 - gamma_cf(a, x)
    }
}

/// Regularized upper incomplete gamma `Q(a, x) = 1 − P(a, x)`, computed
/// directly in the upper tail so small values keep their precision.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if !positive(a) || !non_negative(x) {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    if x < a + 1.0 {
        1.0 - gamma_series(a, x)
    } else {
        gamma_cf(a, x)
    }
}

/// `P(a, x)` by its power series (converges fast for `x < a + 1`).
fn gamma_series(a: f64, x: f64) -> f64 {
    let mut ap = a;
    let mut term = 1.0 / a;
    let mut sum = term;
    for _ in 0..MAX_ITER {
        ap += 1.0;
        term *= x / ap;
        sum += term;
        if term.abs() < sum.abs() * EPS {
            break;
        }
    }
    (sum.ln() - x + a * x.ln() - ln_gamma(a)).exp()
}

/// `Q(a, x)` by Legendre's continued fraction (modified Lentz; `x ≥ a + 1`).
fn gamma_cf(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..MAX_ITER {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    (-x + a * x.ln() - ln_gamma(a)).exp() * h
}

/// Regularized incomplete beta `I_x(a, b)` for `a, b > 0`, `0 ≤ x ≤ 1`.
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    beta_inc_split(a, b, x, 1.0 - x)
}

/// [`beta_inc`] with `y = 1 − x` given by the caller, who can often compute
/// it without the cancellation of `1.0 - x` (for `x` within 1e-15 of 1 that
/// subtraction keeps one significant digit, and `y` enters the result as
/// `b·ln y`).
fn beta_inc_split(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if !positive(a) || !positive(b) || !(0.0..=1.0).contains(&x) || !(0.0..=1.0).contains(&y) {
        return f64::NAN;
    }
    if x == 0.0 || y == 0.0 {
        return if x == 0.0 { 0.0 } else { 1.0 };
    }
    // ln of the larger of x and y through ln_1p of the smaller, which is exact.
    let (ln_x, ln_y) = if x < y {
        (x.ln(), (-x).ln_1p())
    } else {
        ((-y).ln_1p(), y.ln())
    };
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * ln_x + b * ln_y;
    let front = ln_front.exp();
    // The continued fraction converges quickly only below this point; use
    // the symmetry relation above it.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, y) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step.
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        // Odd step.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Complementary error function, through `erfc(z) = Q(1/2, z²)` for `z ≥ 0`.
pub fn erfc(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z >= 0.0 {
        gamma_q(0.5, z * z)
    } else {
        2.0 - gamma_q(0.5, z * z)
    }
}

/// Standard normal cumulative distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal survival function `1 − Φ(x)`, without cancellation.
pub fn normal_sf(x: f64) -> f64 {
    normal_cdf(-x)
}

/// Standard normal density.
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Acklam's rational approximation, numerator and denominator coefficients.
const ACK_A: [f64; 6] = [
    -3.969_683_028_665_376e1,
    2.209_460_984_245_205e2,
    -2.759_285_104_469_687e2,
    1.383_577_518_672_69e2,
    -3.066_479_806_614_716e1,
    2.506_628_277_459_239,
];
const ACK_B: [f64; 5] = [
    -5.447_609_879_822_406e1,
    1.615_858_368_580_409e2,
    -1.556_989_798_598_866e2,
    6.680_131_188_771_972e1,
    -1.328_068_155_288_572e1,
];
const ACK_C: [f64; 6] = [
    -7.784_894_002_430_293e-3,
    -3.223_964_580_411_365e-1,
    -2.400_758_277_161_838,
    -2.549_732_539_343_734,
    4.374_664_141_464_968,
    2.938_163_982_698_783,
];
const ACK_D: [f64; 4] = [
    7.784_695_709_041_462e-3,
    3.224_671_290_700_398e-1,
    2.445_134_137_142_996,
    3.754_408_661_907_416,
];

/// Standard normal quantile Φ⁻¹(p): `-inf` at 0, `+inf` at 1, NaN outside.
pub fn normal_quantile(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const P_LOW: f64 = 0.024_25;
    let x = if p < P_LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((ACK_C[0] * q + ACK_C[1]) * q + ACK_C[2]) * q + ACK_C[3]) * q + ACK_C[4]) * q
            + ACK_C[5])
            / ((((ACK_D[0] * q + ACK_D[1]) * q + ACK_D[2]) * q + ACK_D[3]) * q + 1.0)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((ACK_A[0] * r + ACK_A[1]) * r + ACK_A[2]) * r + ACK_A[3]) * r + ACK_A[4]) * r
            + ACK_A[5])
            * q
            / (((((ACK_B[0] * r + ACK_B[1]) * r + ACK_B[2]) * r + ACK_B[3]) * r + ACK_B[4]) * r
                + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((ACK_C[0] * q + ACK_C[1]) * q + ACK_C[2]) * q + ACK_C[3]) * q + ACK_C[4]) * q
            + ACK_C[5])
            / ((((ACK_D[0] * q + ACK_D[1]) * q + ACK_D[2]) * q + ACK_D[3]) * q + 1.0)
    };
    // One Halley step on the accurate CDF takes the ~1e-9 approximation to
    // full precision. In the upper half `Φ(x) − p` is computed as
    // `(1 − p) − sf(x)` so the error term keeps its digits.
    let e = if p > 0.5 {
        (1.0 - p) - normal_sf(x)
    } else {
        normal_cdf(x) - p
    };
    let u = e / normal_pdf(x);
    x - u / (1.0 + x * u / 2.0)
}

/// Student's t survival function `P(T > t)` with `df > 0` degrees of freedom
/// (`df` may be fractional, as Welch's test produces).
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || !positive(df) {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2); 1 − x = t²/(df+t²) is
    // computed as such, not as 1 − x (for a small t and a large df, x is
    // within 1e-15 of 1).
    let x = df / (df + t * t);
    let y = t * t / (df + t * t);
    let two_tail = beta_inc_split(df / 2.0, 0.5, x, y);
    if t > 0.0 {
        0.5 * two_tail
    } else {
        1.0 - 0.5 * two_tail
    }
}

/// Student's t cumulative distribution function `P(T ≤ t)`.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    t_sf(-t, df)
}

/// Student's t density.
pub fn t_pdf(t: f64, df: f64) -> f64 {
    let ln = ln_gamma((df + 1.0) / 2.0)
        - ln_gamma(df / 2.0)
        - 0.5 * (df * PI).ln()
        - (df + 1.0) / 2.0 * (1.0 + t * t / df).ln();
    ln.exp()
}

/// Student's t quantile: the `t` with `t_cdf(t, df) = p`.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || !positive(df) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    // Solve in the lower half and mirror, so the target tail is small and
    // compared as a CDF value with full relative precision.
    let (target, sign) = if p < 0.5 { (p, -1.0) } else { (1.0 - p, 1.0) };
    // f(t) = t_sf(t) − target is decreasing in t ≥ 0; bracket the root.
    let mut lo = 0.0_f64;
    let mut hi = normal_quantile(1.0 - target).max(1.0);
    while t_sf(hi, df) > target && hi < 1e300 {
        lo = hi;
        hi *= 2.0;
    }
    let mut t = 0.5 * (lo + hi);
    for _ in 0..200 {
        let f = t_sf(t, df) - target;
        if f > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        // Newton step (d/dt sf = −pdf), kept only if it stays in the bracket.
        let step = f / t_pdf(t, df);
        let tol = 1e-15 * t.abs().max(1.0);
        if step.is_finite() && step.abs() <= tol {
            // Converged: the step is below the resolution of `t`.
            break;
        }
        let next = t + step;
        t = if step.is_finite() && next >= lo && next <= hi {
            next
        } else {
            0.5 * (lo + hi)
        };
        if hi - lo <= tol {
            break;
        }
    }
    sign * t
}

/// Chi-square survival function `P(X > x)` with `k > 0` degrees of freedom.
pub fn chi2_sf(x: f64, k: f64) -> f64 {
    if x.is_nan() || !positive(k) {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    gamma_q(k / 2.0, x / 2.0)
}
