//! Anomaly detection on per-minute series (volume, error rate, p95 latency,
//! cost per request, quality — per provider/model).
//!
//! # Method
//!
//! For minute `t` the detector predicts an expected value and a band from
//! data before `t` only:
//!
//! * **Local prediction:** the median of the last half-window of observed
//!   minutes, extrapolated by half the step from the half-window before it
//!   (a robust local trend, so a smooth daily swing is followed even without
//!   history); the plain median of the last [`AnomalyConfig::window`] minutes
//!   while there is too little data for two halves.
//! * **Seasonal predictions** (when history exists): for each of the same
//!   minute yesterday, two days ago and last week that was observed, the
//!   median of the minutes `t − L ± seasonal_halfwidth`, moved by how much the
//!   recent level differs from the level then (median of the last window now
//!   minus median of the window before `t − L`).
//! * **Expected value:** the median of the local and the seasonal
//!   predictions, so one disturbed day in the history (a spike or a level
//!   shift at that hour) cannot move it alone.
//! * **Spread:** `σ̂ = 1.4826 · MAD` (median absolute deviation, scaled to a
//!   normal standard deviation) of the recent minutes' residuals against
//!   their own prediction: the noise around the cycle, not the cycle.
//! * The band is `expected ± max(k · σ̂, min_relative · |expected|, min_absolute)`.
//! * A minute outside the band is a **breach**; a series is **anomalous**
//!   once it has breached for [`AnomalyConfig::min_minutes`] consecutive
//!   observed minutes (the configurable "for"), and stays so while it keeps
//!   breaching. Minutes without data neither breach nor break a run.
//!
//! This is the robust detector Grafana's and Datadog's "robust"/"agile"
//! modes describe: medians and MAD ignore the spikes they are looking for,
//! and the seasonal lags keep a daily cycle from reading as an anomaly.
//!
//! [`synthetic`] generates labelled series (spikes, level shifts, daily
//! seasonality) and [`evaluate_events`] scores a detector against them.

use serde::Serialize;

/// Minutes in a day (the daily lag).
pub const DAY_MINUTES: usize = 1_440;
/// Minutes in a week (the weekly lag).
pub const WEEK_MINUTES: usize = 7 * DAY_MINUTES;
/// Scales a MAD to the standard deviation of a normal distribution.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Which side of the band counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Above or below.
    Both,
    /// Only above (errors, latency, cost).
    Above,
    /// Only below (quality).
    Below,
}

/// Detector tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyConfig {
    /// Recent minutes the rolling median and MAD are taken over.
    pub window: usize,
    /// Minutes either side of `t − lag` in the seasonal median.
    pub seasonal_halfwidth: usize,
    /// Band half-width in robust standard deviations.
    pub k: f64,
    /// Least band half-width relative to the expected value.
    pub min_relative: f64,
    /// Least band half-width in the series' unit.
    pub min_absolute: f64,
    /// Consecutive breaching minutes before the series is anomalous.
    pub min_minutes: usize,
    /// Observed minutes the rolling window needs before anything is judged.
    pub min_samples: usize,
    /// Which side of the band counts.
    pub direction: Direction,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            window: 60,
            seasonal_halfwidth: 10,
            k: 5.0,
            min_relative: 0.05,
            min_absolute: 0.0,
            min_minutes: 3,
            min_samples: 30,
            direction: Direction::Both,
        }
    }
}

/// The judgement of one minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Judged {
    /// Index of the minute in the series.
    pub index: usize,
    /// The observed value.
    pub value: f64,
    /// The expected value.
    pub expected: f64,
    /// Lower edge of the band.
    pub low: f64,
    /// Upper edge of the band.
    pub high: f64,
    /// Whether the expectation used the same time yesterday or last week.
    pub seasonal: bool,
    /// Outside the band.
    pub breach: bool,
    /// Breaching for at least `min_minutes` in a row.
    pub anomalous: bool,
}

/// The median of `values` (sorted in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The median absolute deviation of `values` from their median.
pub fn mad(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    let m = median(&mut v)?;
    let mut dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    median(&mut dev)
}

fn observed(series: &[Option<f64>], from: usize, to: usize) -> Vec<f64> {
    series
        .get(from.min(series.len())..to.min(series.len()))
        .unwrap_or(&[])
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect()
}

/// Memoized per-minute statistics of one series, so judging every minute
/// of a week costs a few small sorts per minute rather than thousands.
struct Model<'a> {
    series: &'a [Option<f64>],
    c: &'a AnomalyConfig,
    level: Vec<Option<Option<f64>>>,
    prediction: Vec<Option<Option<(f64, bool)>>>,
}

impl<'a> Model<'a> {
    fn new(series: &'a [Option<f64>], c: &'a AnomalyConfig) -> Self {
        Self {
            series,
            c,
            level: vec![None; series.len() + 1],
            prediction: vec![None; series.len() + 1],
        }
    }

    fn value(&self, t: usize) -> Option<f64> {
        self.series
            .get(t)
            .copied()
            .flatten()
            .filter(|v| v.is_finite())
    }

    /// Median of the last `window` observed minutes before `t`, when there
    /// are at least `min_samples` of them.
    fn level(&mut self, t: usize) -> Option<f64> {
        if let Some(known) = self.level.get(t).copied().flatten() {
            return known;
        }
        let mut recent = observed(self.series, t.saturating_sub(self.c.window), t);
        let level = if recent.len() < self.c.min_samples.max(1) {
            None
        } else {
            median(&mut recent)
        };
        if let Some(slot) = self.level.get_mut(t) {
            *slot = Some(level);
        }
        level
    }

    /// The seasonal prediction for `t` from `lag`, if that time and the
    /// windows before both ends were observed.
    fn seasonal_at(&mut self, t: usize, lag: usize) -> Option<f64> {
        let then = t.checked_sub(lag)?;
        let h = self.c.seasonal_halfwidth;
        let mut around = observed(self.series, then.saturating_sub(h), then + h + 1);
        if around.len() < h.max(1) {
            return None;
        }
        let level_then = self.level(then)?;
        let level_now = self.level(t)?;
        Some(median(&mut around)? + level_now - level_then)
    }

    /// The local prediction for `t`: the trailing level extrapolated by its
    /// own recent trend (median of the last half-window, plus half the step
    /// from the half-window before), so a smooth daily swing is followed
    /// without history; the plain trailing median when the halves are thin.
    fn local(&mut self, t: usize) -> Option<f64> {
        let half = (self.c.window / 2).max(1);
        let need = (self.c.min_samples / 2).max(1);
        let mut late = observed(self.series, t.saturating_sub(half), t);
        let early_end = t.saturating_sub(half);
        let mut early = observed(self.series, early_end.saturating_sub(half), early_end);
        if late.len() < need || early.len() < need || t < 2 * half {
            return self.level(t);
        }
        let (m1, m2) = (median(&mut early)?, median(&mut late)?);
        // m1 and m2 sit half a window apart; `t` is about half of that
        // beyond m2's middle.
        Some(m2 + (m2 - m1) / 2.0)
    }

    /// The expected value of `t` and whether a seasonal lag contributed:
    /// the median of the local prediction and the predictions from the same
    /// time yesterday, two days ago and last week (those with data), so one
    /// disturbed day in the history cannot move it alone.
    fn prediction(&mut self, t: usize) -> Option<(f64, bool)> {
        if let Some(known) = self.prediction.get(t).copied().flatten() {
            return known;
        }
        let mut predictions: Vec<f64> = [DAY_MINUTES, 2 * DAY_MINUTES, WEEK_MINUTES]
            .iter()
            .filter_map(|&lag| self.seasonal_at(t, lag))
            .collect();
        let seasonal = !predictions.is_empty();
        predictions.extend(self.local(t));
        let p = median(&mut predictions).map(|p| (p, seasonal));
        if let Some(slot) = self.prediction.get_mut(t) {
            *slot = Some(p);
        }
        p
    }

    /// `(expected, half_width, seasonal)` for minute `t`.
    fn band(&mut self, t: usize) -> Option<(f64, f64, bool)> {
        self.level(t)?;
        let (expected, seasonal) = self.prediction(t)?;
        let from = t.saturating_sub(self.c.window);
        // Residuals of the recent minutes against their own prediction: the
        // noise around the cycle and the trend, not the cycle itself.
        let residuals: Vec<f64> = (from..t)
            .filter_map(|s| Some(self.value(s)? - self.prediction(s)?.0))
            .collect();
        let spread = if residuals.len() >= self.c.min_samples.max(1) {
            mad(&residuals)?
        } else {
            mad(&observed(self.series, from, t))?
        };
        let half = (self.c.k * MAD_TO_SIGMA * spread)
            .max(self.c.min_relative * expected.abs())
            .max(self.c.min_absolute);
        Some((expected, half, seasonal))
    }

    fn judge(&mut self, t: usize, run: &mut usize) -> Option<Judged> {
        let value = self.value(t)?;
        let Some((expected, half, seasonal)) = self.band(t) else {
            *run = 0;
            return None;
        };
        let (low, high) = (expected - half, expected + half);
        let breach = match self.c.direction {
            Direction::Both => value < low || value > high,
            Direction::Above => value > high,
            Direction::Below => value < low,
        };
        *run = if breach { *run + 1 } else { 0 };
        Some(Judged {
            index: t,
            value,
            expected,
            low,
            high,
            seasonal,
            breach,
            anomalous: *run >= self.c.min_minutes.max(1),
        })
    }
}

/// The expected value and band half-width of minute `t` from the minutes
/// before it: `(expected, half_width, seasonal)`; `None` before
/// `min_samples` observed minutes.
pub fn band(series: &[Option<f64>], t: usize, c: &AnomalyConfig) -> Option<(f64, f64, bool)> {
    Model::new(series, c).band(t)
}

/// Judges every observed minute of `series` (index = minute; `None` = no
/// data) that has enough data before it.
pub fn detect(series: &[Option<f64>], c: &AnomalyConfig) -> Vec<Judged> {
    let mut model = Model::new(series, c);
    let mut run = 0usize;
    (0..series.len())
        .filter_map(|t| model.judge(t, &mut run))
        .collect()
}

/// The judgement of the last observed minute only (what a per-minute scan
/// needs): the run is counted over the last `min_minutes` minutes.
pub fn judge_last(series: &[Option<f64>], c: &AnomalyConfig) -> Option<Judged> {
    let mut model = Model::new(series, c);
    let mut run = 0usize;
    let start = series.len().saturating_sub(c.min_minutes.max(1));
    (start..series.len())
        .filter_map(|t| model.judge(t, &mut run))
        .last()
}

/// Maximal runs of anomalous minutes as `(first, last)` minute indexes.
pub fn episodes(judged: &[Judged]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    for j in judged {
        match (j.anomalous, open) {
            (true, Some((s, e))) if j.index <= e + 2 => open = Some((s, j.index)),
            (true, Some(done)) => {
                out.push(done);
                open = Some((j.index, j.index));
            }
            (true, None) => open = Some((j.index, j.index)),
            (false, Some(done)) if !j.breach => {
                out.push(done);
                open = None;
            }
            (false, _) => {}
        }
    }
    out.extend(open);
    out
}

/// Precision and recall of detected episodes against labelled events.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Labelled events.
    pub events: usize,
    /// Events with an episode starting inside them (or within the tolerance after).
    pub detected: usize,
    /// Episodes.
    pub episodes: usize,
    /// Episodes overlapping an event (within the tolerance).
    pub true_episodes: usize,
}

impl Score {
    /// Detected / events (1 without events).
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.events)
    }

    /// True episodes / episodes (1 without episodes).
    pub fn precision(&self) -> f64 {
        ratio(self.true_episodes, self.episodes)
    }

    /// Adds another score's counts.
    pub fn add(&mut self, o: &Score) {
        self.events += o.events;
        self.detected += o.detected;
        self.episodes += o.episodes;
        self.true_episodes += o.true_episodes;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Event-level scoring: an event `[start, end)` is detected when an episode
/// starts in `[start, end + tolerance)`; an episode is true when it overlaps
/// some `[start, end + tolerance)`.
pub fn evaluate_events(
    events: &[(usize, usize)],
    found: &[(usize, usize)],
    tolerance: usize,
) -> Score {
    let within = |(s, e): (usize, usize), (fs, fe): (usize, usize)| fs < e + tolerance && fe >= s;
    Score {
        events: events.len(),
        detected: events
            .iter()
            .filter(|&&(s, e)| found.iter().any(|&(fs, _)| fs >= s && fs < e + tolerance))
            .count(),
        episodes: found.len(),
        true_episodes: found
            .iter()
            .filter(|&&f| events.iter().any(|&ev| within(ev, f)))
            .count(),
    }
}

/// Labelled synthetic series: a level with daily seasonality and Gaussian
/// noise, with injected spikes and level shifts. Deterministic per seed.
pub mod synthetic {
    /// A small deterministic generator (SplitMix64), so the core needs no
    /// randomness crate and a seed always gives the same series.
    #[derive(Debug, Clone)]
    pub struct Rng(u64);

    impl Rng {
        /// A generator from a seed.
        pub fn new(seed: u64) -> Self {
            Self(seed)
        }

        /// The next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `[0, 1)`.
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform in `[lo, hi)`.
        pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }

        /// A standard normal draw (Box–Muller).
        pub fn normal(&mut self) -> f64 {
            let u1 = self.unit().max(f64::MIN_POSITIVE);
            let u2 = self.unit();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    /// What was injected.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// A few minutes far from the level.
        Spike,
        /// The level moves and stays.
        LevelShift,
    }

    /// A labelled series.
    #[derive(Debug, Clone)]
    pub struct Labelled {
        /// One value per minute.
        pub values: Vec<Option<f64>>,
        /// Injected events: kind and `[start, end)` minutes (a level shift's
        /// event is its first 30 minutes: after that it is the new normal).
        pub events: Vec<(Kind, usize, usize)>,
    }

    /// `days` of minutes at `level` with a daily swing of `amplitude`
    /// (fraction of the level), noise of `noise` (fraction of the level),
    /// and about `events_per_day` injected spikes and level shifts.
    pub fn series(
        seed: u64,
        days: usize,
        level: f64,
        amplitude: f64,
        noise: f64,
        events_per_day: usize,
    ) -> Labelled {
        let mut rng = Rng::new(seed);
        let n = days * super::DAY_MINUTES;
        let phase = rng.range(0.0, std::f64::consts::TAU);
        let sigma = noise * level;
        let mut shift = 0.0;
        let mut events = Vec::new();
        // Event starts: spaced at least 3 hours apart, none in the first two hours.
        let mut next = if events_per_day == 0 {
            usize::MAX
        } else {
            120 + (rng.unit() * 180.0) as usize
        };
        let gap = (super::DAY_MINUTES / events_per_day.max(1)).max(180);
        let mut values = Vec::with_capacity(n);
        let mut spike_until = 0usize;
        let mut spike_size = 0.0;
        for t in 0..n {
            if t == next {
                if rng.unit() < 0.6 {
                    let len = 3 + (rng.unit() * 8.0) as usize;
                    let sign = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
                    spike_size = sign * rng.range(0.3, 0.8) * level;
                    spike_until = t + len;
                    events.push((Kind::Spike, t, t + len));
                } else {
                    // Shifts wander but keep the level well above zero.
                    let sign = if shift < -0.2 * level || (shift < 0.5 * level && rng.unit() < 0.5)
                    {
                        1.0
                    } else {
                        -1.0
                    };
                    shift += sign * rng.range(0.25, 0.5) * level;
                    events.push((Kind::LevelShift, t, t + 30));
                }
                next = t + gap + (rng.unit() * gap as f64 * 0.5) as usize;
            }
            let season = amplitude
                * level
                * (std::f64::consts::TAU * t as f64 / super::DAY_MINUTES as f64 + phase).sin();
            let spike = if t < spike_until { spike_size } else { 0.0 };
            let v = level + shift + season + spike + sigma * rng.normal();
            // A minute without data now and then, as on a quiet model.
            values.push((rng.unit() >= 0.01).then_some(v.max(0.0)));
        }
        Labelled { values, events }
    }
}

#[cfg(test)]
#[path = "anomaly_tests.rs"]
mod tests;
