//! Model selection by difficulty: enter at the cheapest tier that is known
//! to answer this kind of prompt above the quality threshold, and measure how
//! often that was the right model.
//!
//! * [`difficulty`] classifies a prompt as easy, medium or hard from its
//!   text alone (length, code, reasoning and multi-step cues, constraints).
//! * [`QualityTable`] keeps, per tier and difficulty, the running mean and
//!   spread of the quality the answers got (the automatic 0–10 score, and user
//!   feedback mapped onto the same scale).
//! * [`select_tier`] takes the tiers cheapest first and picks the first one
//!   whose quality is shown to meet the threshold (the lower end of a one-sided
//!   interval at `z`); a tier with fewer than `min_samples` answers for the
//!   difficulty is tried (explored) first — unless it is already **ruled
//!   out**: after `min_explore` answers the upper end of its one-sided
//!   Student-t interval is below the threshold at this difficulty or an easier
//!   one (a model that fails medium prompts is not tried on hard ones);
//!   when none qualifies, the tier with the best mean.
//! * [`cheapest_meeting`] names the right choice when the true qualities are
//!   known, so [`Accuracy`] counts how often the choice was the cheapest model
//!   that would have met the threshold (issue 16, item 5).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gateway::tiers::Tier;

/// How hard a prompt looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// Short lookups, translations, one-line answers.
    Easy,
    /// Summaries, small code, explanations.
    Medium,
    /// Proofs, multi-step reasoning, design, long constrained work.
    Hard,
}

impl Difficulty {
    /// All, easiest first.
    pub const ALL: [Difficulty; 3] = [Self::Easy, Self::Medium, Self::Hard];

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Easy => "easy",
            Self::Medium => "medium",
            Self::Hard => "hard",
        }
    }
}

const HARD_CUES: [&str; 12] = [
    "prove",
    "derive",
    "step by step",
    "design a",
    "architecture",
    "trade-off",
    "tradeoff",
    "optimi",
    "complexity",
    "formal",
    "edge cases",
    "concurren",
];
const MEDIUM_CUES: [&str; 10] = [
    "summar", "explain", "write a", "function", "compare", "rewrite", "classify", "list the",
    "outline", "draft",
];

/// The difficulty of a prompt from its text: two or more hard cues, or one
/// with a long prompt, is hard; a hard cue, a medium cue, code, or a long
/// prompt is medium; the rest is easy.
pub fn difficulty(text: &str) -> Difficulty {
    let lower = text.to_lowercase();
    let tokens = crate::gateway::text::approx_tokens(text);
    let hard = HARD_CUES.iter().filter(|c| lower.contains(*c)).count();
    let medium = MEDIUM_CUES.iter().filter(|c| lower.contains(*c)).count();
    let code = lower.contains("```") || lower.contains("fn ") || lower.contains("def ");
    if hard >= 2 || (hard == 1 && tokens > 150) {
        Difficulty::Hard
    } else if hard == 1 || medium > 0 || code || tokens > 150 {
        Difficulty::Medium
    } else {
        Difficulty::Easy
    }
}

/// Running mean and spread of quality scores (0–10).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Estimate {
    /// Scores seen.
    pub n: u64,
    /// Their sum.
    pub sum: f64,
    /// The sum of their squares.
    pub sum_sq: f64,
}

impl Estimate {
    /// Adds a score (clamped to 0–10; non-finite ignored).
    pub fn add(&mut self, q: f64) {
        if q.is_finite() {
            let q = q.clamp(0.0, 10.0);
            self.n += 1;
            self.sum += q;
            self.sum_sq += q * q;
        }
    }

    /// The mean, if any score was seen.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The standard error of the mean (sample variance, `n − 1`).
    pub fn std_error(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let var = ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
        Some((var / n).sqrt())
    }

    /// `mean − z · se` (the mean itself while the error is unknown).
    pub fn lower(&self, z: f64) -> Option<f64> {
        Some(self.mean()? - z * self.std_error().unwrap_or(0.0))
    }

    /// The upper end of the one-sided Student-t interval at level
    /// `confidence`: `mean + t(confidence, n − 1) · se`; `None` below two
    /// scores (no spread yet). Student's t rather than z because it is read
    /// after only a few answers.
    pub fn upper_t(&self, confidence: f64) -> Option<f64> {
        let se = self.std_error()?;
        let t = crate::experiments::dist::t_quantile(confidence, self.n as f64 - 1.0);
        Some(self.mean()? + t * se).filter(|u| u.is_finite())
    }
}

/// Quality per tier and difficulty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QualityTable {
    /// The cells, keyed `tier/difficulty`.
    pub cells: BTreeMap<String, Estimate>,
}

fn cell(tier: Tier, d: Difficulty) -> String {
    format!("{}/{}", tier.as_str(), d.as_str())
}

impl QualityTable {
    /// Records a score for an answer of `tier` to a `d` prompt.
    pub fn observe(&mut self, tier: Tier, d: Difficulty, quality: f64) {
        self.cells.entry(cell(tier, d)).or_default().add(quality);
    }

    /// The estimate of a cell.
    pub fn get(&self, tier: Tier, d: Difficulty) -> Estimate {
        self.cells.get(&cell(tier, d)).copied().unwrap_or_default()
    }
}

/// Selection tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SelectionConfig {
    /// Least acceptable quality, 0–10 (the gateway's threshold).
    pub threshold: f64,
    /// Answers a cell needs before it is trusted.
    pub min_samples: u64,
    /// One-sided z of the lower bound a tier must clear.
    pub z: f64,
    /// Answers a cell needs before it can be ruled out early (its upper
    /// bound below the threshold), so a failing tier is not tried all
    /// `min_samples` times.
    pub min_explore: u64,
    /// One-sided confidence of that upper bound (Student's t).
    pub rule_out_confidence: f64,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        Self {
            threshold: crate::gateway::quality::DEFAULT_THRESHOLD,
            min_samples: 10,
            z: 1.645,
            min_explore: 3,
            rule_out_confidence: 0.95,
        }
    }
}

/// Why a tier was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Too few answers for this difficulty yet: tried to learn.
    Explore,
    /// Its quality's lower bound clears the threshold.
    Meets,
    /// None clears it: the best mean.
    Best,
}

impl Reason {
    /// The lowercase name (`explore`, `meets`, `best`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Explore => "explore",
            Self::Meets => "meets",
            Self::Best => "best",
        }
    }
}

/// Picks the entry tier for a `d` prompt among `tiers` (cheapest first).
pub fn select_tier(
    table: &QualityTable,
    d: Difficulty,
    tiers: &[Tier],
    c: &SelectionConfig,
) -> Option<(Tier, Reason)> {
    for &tier in tiers {
        let e = table.get(tier, d);
        if ruled_out(table, tier, d, c) {
            continue;
        }
        if e.n < c.min_samples {
            return Some((tier, Reason::Explore));
        }
        if e.lower(c.z).is_some_and(|lb| lb >= c.threshold) {
            return Some((tier, Reason::Meets));
        }
    }
    tiers
        .iter()
        .filter_map(|&t| Some((t, table.get(t, d).mean()?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, _)| (t, Reason::Best))
}

/// Whether `tier` is shown to fall short at `d`: at `d` or at an easier
/// difficulty (quality does not rise with difficulty), it has at least
/// `min_explore` answers and the upper end of their one-sided interval is
/// below the threshold.
pub fn ruled_out(table: &QualityTable, tier: Tier, d: Difficulty, c: &SelectionConfig) -> bool {
    Difficulty::ALL
        .iter()
        .filter(|&&easier| easier <= d)
        .map(|&easier| table.get(tier, easier))
        .any(|e| {
            e.n >= c.min_explore.max(2)
                && e.upper_t(c.rule_out_confidence)
                    .is_some_and(|u| u < c.threshold)
        })
}

/// The cheapest of `candidates` (`key`, cost, true quality) whose quality
/// meets `threshold`; `None` when none does (then no choice is wrong on
/// cost, and accuracy does not judge it).
pub fn cheapest_meeting(candidates: &[(String, f64, f64)], threshold: f64) -> Option<&str> {
    candidates
        .iter()
        .filter(|c| c.2 >= threshold)
        .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        .map(|c| c.0.as_str())
}

/// How often the chosen model was the right one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Accuracy {
    /// Requests where the right model is knowable.
    pub judged: u64,
    /// Of those, chosen right.
    pub correct: u64,
}

impl Accuracy {
    /// Counts one request: `right` is the cheapest model meeting the
    /// threshold (`None`: unknowable, not judged).
    pub fn count(&mut self, chosen: &str, right: Option<&str>) {
        if let Some(right) = right {
            self.judged += 1;
            if right == chosen {
                self.correct += 1;
            }
        }
    }

    /// Correct / judged (`None` when nothing was judged).
    pub fn rate(&self) -> Option<f64> {
        (self.judged > 0).then(|| self.correct as f64 / self.judged as f64)
    }
}

/// One answered request, as [`observed_accuracy`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// What kind of request (the route: `chat`, `generate:<template>@<v>`).
    pub kind: String,
    /// `provider/model` that answered.
    pub model: String,
    /// Its cost, micro-dollars.
    pub cost_micros: u64,
    /// Its quality, 0–10: user feedback (mapped to 0–10) where given, else
    /// the automatic score.
    pub quality: f64,
}

/// Model selection accuracy on served traffic: within each kind of request,
/// a model "would have met the threshold" when at least `min_samples` of its
/// answers average at least `threshold`; the right model is the one among
/// those with the lowest mean cost. Requests of a kind where no model is
/// known to meet it are not judged (unknowable); the rest count as correct
/// when served by the right model.
pub fn observed_accuracy(served: &[Served], threshold: f64, min_samples: u64) -> Accuracy {
    let mut by_kind: BTreeMap<&str, BTreeMap<&str, (u64, f64, f64)>> = BTreeMap::new();
    for s in served {
        let cell = by_kind
            .entry(&s.kind)
            .or_default()
            .entry(&s.model)
            .or_default();
        cell.0 += 1;
        cell.1 += s.cost_micros as f64;
        cell.2 += s.quality;
    }
    let mut accuracy = Accuracy::default();
    for (kind, models) in &by_kind {
        let candidates: Vec<(String, f64, f64)> = models
            .iter()
            .filter(|(_, c)| c.0 >= min_samples)
            .map(|(m, c)| ((*m).to_owned(), c.1 / c.0 as f64, c.2 / c.0 as f64))
            .collect();
        let right = cheapest_meeting(&candidates, threshold);
        for s in served.iter().filter(|s| s.kind == *kind) {
            accuracy.count(&s.model, right);
        }
    }
    accuracy
}

/// The scored (or fed-back) answers since `from_ms`, for
/// [`observed_accuracy`]. Cache hits (no model was chosen) and offline
/// answers (DOL's last-resort fallback, never a routing choice that could
/// be "the cheapest model meeting the threshold") are left out.
pub fn served_since(
    db: &mut impl crate::storage::SqlExecutor,
    from_ms: i64,
) -> Result<Vec<Served>, String> {
    use crate::storage::{Row, SqlValue};
    db.execute(
        "SELECT r.route, r.provider || '/' || r.model, COALESCE(r.cost_micros, 0), \
         COALESCE(f.score * 10.0, r.quality) FROM requests r \
         LEFT JOIN feedback f ON f.request_id = r.id \
         WHERE r.ts >= ? AND r.cached = 0 AND r.provider <> 'offline' \
         AND (r.quality IS NOT NULL OR f.score IS NOT NULL)",
        &[SqlValue::Integer(from_ms)],
    )?
    .iter()
    .map(|v| {
        let r = Row::new("requests", v);
        Ok(Served {
            kind: r.text(0, "route").map_err(|e| e.to_string())?.to_owned(),
            model: r.text(1, "model").map_err(|e| e.to_string())?.to_owned(),
            cost_micros: r.uint(2, "cost_micros").map_err(|e| e.to_string())?,
            quality: r.real(3, "quality").map_err(|e| e.to_string())?,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_cues() {
        assert_eq!(
            difficulty("What is the capital of France?"),
            Difficulty::Easy
        );
        assert_eq!(
            difficulty("Summarize this paragraph: cats sleep a lot."),
            Difficulty::Medium
        );
        assert_eq!(
            difficulty("Write a function that reverses a list"),
            Difficulty::Medium
        );
        assert_eq!(
            difficulty("Prove that the algorithm's complexity is O(n log n), step by step."),
            Difficulty::Hard
        );
        let long_hard = format!("Design a cache. {}", "word ".repeat(200));
        assert_eq!(difficulty(&long_hard), Difficulty::Hard);
        assert_eq!(difficulty(&"word ".repeat(200)), Difficulty::Medium);
    }

    #[test]
    fn estimates_by_hand() {
        let mut e = Estimate::default();
        assert_eq!(e.mean(), None);
        for q in [8.0, 9.0, 10.0, 11.0, f64::NAN] {
            e.add(q);
        }
        // 11 is clamped to 10, NaN ignored: 8, 9, 10, 10 → mean 9.25,
        // sample variance 0.9167, se = sqrt(0.9167 / 4) = 0.4787.
        assert_eq!(e.n, 4);
        assert_eq!(e.mean(), Some(9.25));
        assert!((e.std_error().unwrap() - 0.478_713).abs() < 1e-6);
        assert!((e.lower(2.0).unwrap() - (9.25 - 0.957_427)).abs() < 1e-6);
    }

    #[test]
    fn selection_explores_cheapest_first_then_keeps_the_cheapest_that_meets() {
        let tiers = [Tier::Basic, Tier::Enhanced, Tier::Comprehensive];
        let c = SelectionConfig::default();
        let mut t = QualityTable::default();
        assert_eq!(
            select_tier(&t, Difficulty::Hard, &tiers, &c),
            Some((Tier::Basic, Reason::Explore))
        );
        for i in 0..10 {
            t.observe(Tier::Basic, Difficulty::Hard, 4.0 + f64::from(i % 2));
            t.observe(
                Tier::Enhanced,
                Difficulty::Hard,
                8.0 + f64::from(i % 2) / 2.0,
            );
        }
        assert_eq!(
            select_tier(&t, Difficulty::Hard, &tiers, &c),
            Some((Tier::Enhanced, Reason::Meets))
        );
        assert_eq!(
            select_tier(&t, Difficulty::Easy, &tiers, &c),
            Some((Tier::Basic, Reason::Explore))
        );
        // Nothing meets 9.5: the best mean.
        let strict = SelectionConfig {
            threshold: 9.5,
            ..c
        };
        assert_eq!(
            select_tier(&t, Difficulty::Hard, &tiers[..2], &strict),
            Some((Tier::Enhanced, Reason::Best))
        );
        assert_eq!(select_tier(&t, Difficulty::Hard, &[], &c), None);
    }

    #[test]
    fn a_failing_tier_is_ruled_out_early_and_at_harder_difficulties() {
        let tiers = [Tier::Basic, Tier::Enhanced, Tier::Comprehensive];
        let c = SelectionConfig::default();
        let mut t = QualityTable::default();
        // Two answers are too few to judge: Basic is still explored.
        t.observe(Tier::Basic, Difficulty::Medium, 4.0);
        t.observe(Tier::Basic, Difficulty::Medium, 5.0);
        assert_eq!(
            select_tier(&t, Difficulty::Medium, &tiers, &c),
            Some((Tier::Basic, Reason::Explore))
        );
        // 4, 5, 6: mean 5, se = 1/sqrt(3) = 0.57735, t(0.95, 2) = 2.919986:
        // upper 5 + 1.685854 = 6.685854 < 7 → ruled out after three answers.
        t.observe(Tier::Basic, Difficulty::Medium, 6.0);
        let upper = t
            .get(Tier::Basic, Difficulty::Medium)
            .upper_t(0.95)
            .unwrap();
        assert!((upper - 6.685_854).abs() < 1e-5, "{upper}");
        assert!(ruled_out(&t, Tier::Basic, Difficulty::Medium, &c));
        assert_eq!(
            select_tier(&t, Difficulty::Medium, &tiers, &c),
            Some((Tier::Enhanced, Reason::Explore))
        );
        // Failing medium prompts rules it out for hard ones, not for easy ones.
        assert!(ruled_out(&t, Tier::Basic, Difficulty::Hard, &c));
        assert!(!ruled_out(&t, Tier::Basic, Difficulty::Easy, &c));
        assert_eq!(
            select_tier(&t, Difficulty::Hard, &tiers, &c),
            Some((Tier::Enhanced, Reason::Explore))
        );
        // 6, 7, 8: upper 7 + 1.685854 ≥ 7: not ruled out.
        for q in [6.0, 7.0, 8.0] {
            t.observe(Tier::Enhanced, Difficulty::Medium, q);
        }
        assert!(!ruled_out(&t, Tier::Enhanced, Difficulty::Medium, &c));
    }

    #[test]
    fn observed_accuracy_by_hand() {
        let s = |kind: &str, model: &str, cost: u64, q: f64| Served {
            kind: kind.into(),
            model: model.into(),
            cost_micros: cost,
            quality: q,
        };
        let mut served = Vec::new();
        // "chat": mini (cheap, 8.0) and big (dear, 9.0) both meet 7: mini is right.
        for _ in 0..5 {
            served.push(s("chat", "mini", 10, 8.0));
        }
        for _ in 0..3 {
            served.push(s("chat", "big", 100, 9.0));
        }
        // "summary": only mini served, below the threshold: unknowable.
        for _ in 0..4 {
            served.push(s("summary", "mini", 10, 5.0));
        }
        // "one-off": too few samples: unknowable.
        served.push(s("one-off", "big", 100, 9.0));
        let a = observed_accuracy(&served, 7.0, 3);
        assert_eq!((a.judged, a.correct), (8, 5));
    }

    #[test]
    fn accuracy_judges_only_what_is_knowable() {
        let candidates = vec![
            ("small".to_owned(), 1.0, 6.0),
            ("mid".to_owned(), 3.0, 8.0),
            ("large".to_owned(), 9.0, 9.0),
        ];
        assert_eq!(cheapest_meeting(&candidates, 7.0), Some("mid"));
        assert_eq!(cheapest_meeting(&candidates, 9.5), None);
        let mut a = Accuracy::default();
        a.count("mid", cheapest_meeting(&candidates, 7.0));
        a.count("large", cheapest_meeting(&candidates, 7.0));
        a.count("large", cheapest_meeting(&candidates, 9.5));
        assert_eq!((a.judged, a.correct), (2, 1));
        assert_eq!(a.rate(), Some(0.5));
        assert_eq!(Accuracy::default().rate(), None);
    }
}
