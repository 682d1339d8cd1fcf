//! The fallback pipeline as a pure state machine.
//!
//! Tiers run in the order comprehensive → enhanced → basic, starting at an
//! entry tier chosen per request. Each tier holds the candidates routing
//! ranked for it (only their count matters here). After every attempt the
//! caller reports the [`AttemptOutcome`] and the elapsed time; the
//! [`Pipeline`] answers with the next [`Action`]:
//!
//! - a success at or above the quality threshold (or unscored, as when
//!   streaming) is returned;
//! - a success below the threshold is remembered as the best answer so far and
//!   the request moves to the next tier (in the last tier: the next candidate);
//! - a retryable failure is retried on the same candidate after the
//!   [`RetryPolicy`] delay, while attempts and the deadline allow;
//! - any other failure moves to the next candidate of the tier, then the next tier;
//! - a failure after streamed bytes reached the client aborts the stream;
//! - when candidates or time run out, the best below-threshold answer is
//!   returned if there is one, otherwise the pipeline gives up with the
//!   offline basic tier.
//!
//! The position never moves to a higher tier, and each step consumes an
//! attempt, a candidate or a tier, so a request ends within
//! `candidates × max_attempts + 1` steps.

use serde::{Deserialize, Serialize};

use super::retry::{FailureKind, RetryDecision, RetryPolicy};

/// A pipeline tier, in fallback order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The best models.
    Comprehensive,
    /// Cheaper, solid models.
    Enhanced,
    /// The last resort, ending with the offline provider.
    Basic,
}

impl Tier {
    /// All tiers in fallback order.
    pub const ALL: [Tier; 3] = [Tier::Comprehensive, Tier::Enhanced, Tier::Basic];

    /// Parses `comprehensive`, `enhanced` or `basic`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "comprehensive" => Some(Self::Comprehensive),
            "enhanced" => Some(Self::Enhanced),
            "basic" => Some(Self::Basic),
            _ => None,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Comprehensive => "comprehensive",
            Self::Enhanced => "enhanced",
            Self::Basic => "basic",
        }
    }

    /// Index in [`Tier::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Comprehensive => 0,
            Self::Enhanced => 1,
            Self::Basic => 2,
        }
    }

    /// The tier after this one, if any.
    pub fn next(self) -> Option<Self> {
        Self::ALL.get(self.index() + 1).copied()
    }
}

/// An entry tier as the `dol.tier` hint or the tier flag names it: a fixed
/// tier, or `auto` — DOL picks the tier per prompt difficulty
/// ([`crate::optimize::auto_entry`]). Written as the tier's name or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EntryTier {
    /// Enter at this tier.
    Fixed(Tier),
    /// Enter where the selection table says the prompt's difficulty is served well enough.
    Auto,
}

impl EntryTier {
    /// Parses a tier name or `auto`.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "auto" {
            Some(Self::Auto)
        } else {
            Tier::parse(s).map(Self::Fixed)
        }
    }

    /// The name: the tier's, or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed(t) => t.as_str(),
            Self::Auto => "auto",
        }
    }
}

impl TryFrom<String> for EntryTier {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("unknown tier \"{s}\""))
    }
}

impl From<EntryTier> for String {
    fn from(e: EntryTier) -> Self {
        e.as_str().to_owned()
    }
}

impl From<Tier> for EntryTier {
    fn from(t: Tier) -> Self {
        Self::Fixed(t)
    }
}

/// Pipeline tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// Retries and the overall deadline.
    pub retry: RetryPolicy,
    /// Minimum acceptable quality score (default 7.0).
    pub quality_threshold: f64,
    /// An attempt is not started with less time than this left before the deadline.
    pub min_attempt_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            quality_threshold: super::quality::DEFAULT_THRESHOLD,
            min_attempt_ms: 1_000,
        }
    }
}

/// Where the pipeline is: tier, candidate within the tier, attempt on the candidate (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The tier.
    pub tier: Tier,
    /// Index of the candidate in the tier's ranked list.
    pub candidate: usize,
    /// Attempt number on that candidate, from 1.
    pub attempt: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// An answer; `quality` is `None` when it was not scored (streaming).
    Success {
        /// Quality score 0–10.
        quality: Option<f64>,
    },
    /// A provider failure, classified for retrying.
    Failed {
        /// The failure.
        failure: FailureKind,
    },
    /// The attempt ran out of its own time limit.
    Timeout,
    /// A failure retrying cannot fix (e.g. an unparseable provider answer).
    Fatal,
    /// The stream broke after bytes reached the client: no invisible fallback is possible.
    StreamBroken,
}

/// The pipeline's next step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Make the first attempt here.
    Start {
        /// Where.
        at: Position,
    },
    /// Return the answer of the attempt just made.
    Return {
        /// The attempt that produced it.
        at: Position,
    },
    /// Retry the same candidate after a delay.
    Retry {
        /// The next attempt.
        at: Position,
        /// Wait first.
        delay_ms: u64,
    },
    /// Try the next candidate of the same tier.
    NextCandidate {
        /// Where.
        at: Position,
    },
    /// Move down to a lower tier.
    NextTier {
        /// Where.
        at: Position,
    },
    /// Out of candidates or time: return the best below-threshold answer seen.
    ReturnBest {
        /// The attempt that produced it.
        at: Position,
        /// Its score.
        quality: f64,
    },
    /// Out of candidates or time with no answer: serve the offline basic tier.
    GiveUp,
    /// End the stream with an error event (failure after the first byte).
    AbortStream,
}

impl Action {
    /// Whether the pipeline is finished after this action.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Return { .. } | Self::ReturnBest { .. } | Self::GiveUp | Self::AbortStream
        )
    }

    /// The position to attempt next, for non-terminal actions.
    pub fn attempt_at(&self) -> Option<Position> {
        match self {
            Self::Start { at }
            | Self::Retry { at, .. }
            | Self::NextCandidate { at }
            | Self::NextTier { at } => Some(*at),
            _ => None,
        }
    }
}

/// The fallback state machine for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    config: PipelineConfig,
    /// Candidate count per tier, indexed by [`Tier::index`].
    candidates: [usize; 3],
    pos: Option<Position>,
    best: Option<(Position, f64)>,
    attempts: u32,
    last: Option<Action>,
}

impl Pipeline {
    /// Starts a pipeline at `entry` with `candidates[i]` candidates in tier `Tier::ALL[i]`,
    /// `elapsed_ms` into the request. Returns the pipeline and its first action.
    pub fn start(
        config: PipelineConfig,
        candidates: [usize; 3],
        entry: Tier,
        elapsed_ms: u64,
    ) -> (Self, Action) {
        let mut p = Self {
            config,
            candidates,
            pos: None,
            best: None,
            attempts: 0,
            last: None,
        };
        let action = match p.first_in_tier_from(entry) {
            Some(at) if p.has_time(elapsed_ms) => Action::Start { at },
            _ => p.finish(),
        };
        p.commit(action);
        (p, action)
    }

    /// Attempts reported so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The upper bound on attempts: every candidate of every tier tried `max_attempts` times.
    pub fn max_steps(&self) -> u64 {
        let total: u64 = self.candidates.iter().map(|&c| c as u64).sum();
        total.saturating_mul(u64::from(self.config.retry.max_attempts.max(1))) + 1
    }

    /// Reports the outcome of the attempt at the current position, `elapsed_ms`
    /// into the request, with caller-supplied `jitter ∈ [0, 1)`; returns the next action.
    /// After a terminal action it keeps returning that action.
    pub fn on_outcome(&mut self, outcome: AttemptOutcome, elapsed_ms: u64, jitter: f64) -> Action {
        let (Some(pos), Some(last)) = (self.pos, self.last) else {
            return Action::GiveUp;
        };
        if last.is_terminal() {
            return last;
        }
        self.attempts = self.attempts.saturating_add(1);
        let action = if u64::from(self.attempts) >= self.max_steps() {
            // Defensive: a caller reporting more outcomes than attempts it was told to make.
            self.finish_after(pos, outcome)
        } else {
            self.decide(pos, outcome, elapsed_ms, jitter)
        };
        self.commit(action);
        action
    }

    fn decide(
        &mut self,
        pos: Position,
        outcome: AttemptOutcome,
        elapsed_ms: u64,
        jitter: f64,
    ) -> Action {
        match outcome {
            AttemptOutcome::Success { quality: None } => Action::Return { at: pos },
            AttemptOutcome::Success { quality: Some(q) } => {
                let q = if q.is_nan() { 0.0 } else { q };
                if q >= self.config.quality_threshold {
                    return Action::Return { at: pos };
                }
                self.remember(pos, q);
                // A weak answer is retried one tier down; within the last tier, on the next candidate.
                let next = self
                    .next_tier_from(pos.tier)
                    .map(|at| Action::NextTier { at })
                    .or_else(|| {
                        self.next_candidate(pos)
                            .map(|at| Action::NextCandidate { at })
                    });
                self.gate(next, elapsed_ms)
            }
            AttemptOutcome::StreamBroken => Action::AbortStream,
            AttemptOutcome::Failed { failure } => {
                match self
                    .config
                    .retry
                    .decide(pos.attempt, failure, elapsed_ms, jitter)
                {
                    RetryDecision::RetryAfter { delay_ms }
                        if self.has_time(elapsed_ms.saturating_add(delay_ms)) =>
                    {
                        Action::Retry {
                            at: Position {
                                attempt: pos.attempt + 1,
                                ..pos
                            },
                            delay_ms,
                        }
                    }
                    _ => self.move_on(pos, elapsed_ms),
                }
            }
            AttemptOutcome::Timeout | AttemptOutcome::Fatal => self.move_on(pos, elapsed_ms),
        }
    }

    /// Next candidate in the tier, else first candidate of a lower tier, else finish.
    fn move_on(&self, pos: Position, elapsed_ms: u64) -> Action {
        let next = self
            .next_candidate(pos)
            .map(|at| Action::NextCandidate { at })
            .or_else(|| {
                self.next_tier_from(pos.tier)
                    .map(|at| Action::NextTier { at })
            });
        self.gate(next, elapsed_ms)
    }

    /// Takes `next` only if there is time to run it.
    fn gate(&self, next: Option<Action>, elapsed_ms: u64) -> Action {
        match next {
            Some(a) if self.has_time(elapsed_ms) => a,
            _ => self.finish(),
        }
    }

    fn finish_after(&mut self, pos: Position, outcome: AttemptOutcome) -> Action {
        match outcome {
            AttemptOutcome::Success { quality: None } => Action::Return { at: pos },
            AttemptOutcome::Success { quality: Some(q) } if q >= self.config.quality_threshold => {
                Action::Return { at: pos }
            }
            AttemptOutcome::Success { quality: Some(q) } => {
                self.remember(pos, if q.is_nan() { 0.0 } else { q });
                self.finish()
            }
            AttemptOutcome::StreamBroken => Action::AbortStream,
            _ => self.finish(),
        }
    }

    fn finish(&self) -> Action {
        match self.best {
            Some((at, quality)) => Action::ReturnBest { at, quality },
            None => Action::GiveUp,
        }
    }

    fn remember(&mut self, pos: Position, q: f64) {
        // Strictly better only: on ties the earlier (higher-tier) answer wins.
        if self.best.is_none_or(|(_, b)| q > b) {
            self.best = Some((pos, q));
        }
    }

    fn has_time(&self, elapsed_ms: u64) -> bool {
        self.config.retry.remaining_ms(elapsed_ms) >= self.config.min_attempt_ms
    }

    fn next_candidate(&self, pos: Position) -> Option<Position> {
        (pos.candidate + 1 < self.candidates[pos.tier.index()]).then_some(Position {
            tier: pos.tier,
            candidate: pos.candidate + 1,
            attempt: 1,
        })
    }

    fn next_tier_from(&self, tier: Tier) -> Option<Position> {
        self.first_in_tier_from(tier.next()?)
    }

    /// The first candidate of `tier` or, if it has none, of the next non-empty lower tier.
    fn first_in_tier_from(&self, tier: Tier) -> Option<Position> {
        Tier::ALL[tier.index()..]
            .iter()
            .find(|t| self.candidates[t.index()] > 0)
            .map(|&t| Position {
                tier: t,
                candidate: 0,
                attempt: 1,
            })
    }

    fn commit(&mut self, action: Action) {
        if let Some(at) = action.attempt_at() {
            self.pos = Some(at);
        }
        self.last = Some(action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PipelineConfig {
        PipelineConfig::default()
    }

    fn pos(tier: Tier, candidate: usize, attempt: u32) -> Position {
        Position {
            tier,
            candidate,
            attempt,
        }
    }

    fn failed(status: u16) -> AttemptOutcome {
        AttemptOutcome::Failed {
            failure: FailureKind::Status {
                status,
                retry_after_ms: None,
            },
        }
    }

    #[test]
    fn tier_order_and_parse() {
        assert!(Tier::Comprehensive < Tier::Enhanced && Tier::Enhanced < Tier::Basic);
        assert_eq!(Tier::Comprehensive.next(), Some(Tier::Enhanced));
        assert_eq!(Tier::Basic.next(), None);
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            serde_json::to_string(&Tier::Enhanced).unwrap(),
            "\"enhanced\""
        );
    }

    #[test]
    fn starts_at_entry_tier_skipping_empty_ones() {
        let (_, a) = Pipeline::start(cfg(), [2, 0, 1], Tier::Comprehensive, 0);
        assert_eq!(
            a,
            Action::Start {
                at: pos(Tier::Comprehensive, 0, 1)
            }
        );
        let (_, a) = Pipeline::start(cfg(), [2, 0, 1], Tier::Enhanced, 0);
        assert_eq!(
            a,
            Action::Start {
                at: pos(Tier::Basic, 0, 1)
            }
        );
        let (_, a) = Pipeline::start(cfg(), [0, 0, 0], Tier::Comprehensive, 0);
        assert_eq!(a, Action::GiveUp);
    }

    #[test]
    fn good_answer_is_returned() {
        let (mut p, _) = Pipeline::start(cfg(), [1, 1, 1], Tier::Comprehensive, 0);
        let a = p.on_outcome(AttemptOutcome::Success { quality: Some(8.0) }, 10, 0.0);
        assert_eq!(
            a,
            Action::Return {
                at: pos(Tier::Comprehensive, 0, 1)
            }
        );
        // Terminal actions stick.
        assert_eq!(p.on_outcome(failed(500), 20, 0.0), a);
    }

    #[test]
    fn unscored_answer_is_returned() {
        let (mut p, _) = Pipeline::start(cfg(), [1, 1, 1], Tier::Comprehensive, 0);
        assert!(matches!(
            p.on_outcome(AttemptOutcome::Success { quality: None }, 10, 0.0),
            Action::Return { .. }
        ));
    }

    #[test]
    fn low_quality_moves_to_next_tier_and_best_is_kept() {
        let (mut p, _) = Pipeline::start(cfg(), [2, 1, 0], Tier::Comprehensive, 0);
        let a = p.on_outcome(AttemptOutcome::Success { quality: Some(5.0) }, 10, 0.0);
        assert_eq!(
            a,
            Action::NextTier {
                at: pos(Tier::Enhanced, 0, 1)
            }
        );
        let a = p.on_outcome(AttemptOutcome::Success { quality: Some(4.0) }, 20, 0.0);
        assert_eq!(
            a,
            Action::ReturnBest {
                at: pos(Tier::Comprehensive, 0, 1),
                quality: 5.0
            }
        );
    }

    #[test]
    fn low_quality_in_last_tier_tries_next_candidate() {
        let (mut p, _) = Pipeline::start(cfg(), [0, 0, 2], Tier::Basic, 0);
        let a = p.on_outcome(AttemptOutcome::Success { quality: Some(3.0) }, 10, 0.0);
        assert_eq!(
            a,
            Action::NextCandidate {
                at: pos(Tier::Basic, 1, 1)
            }
        );
    }

    #[test]
    fn retryable_error_retries_same_candidate_then_moves_on() {
        let (mut p, _) = Pipeline::start(cfg(), [2, 0, 1], Tier::Comprehensive, 0);
        let a = p.on_outcome(failed(503), 100, 0.0);
        assert_eq!(
            a,
            Action::Retry {
                at: pos(Tier::Comprehensive, 0, 2),
                delay_ms: 1_000
            }
        );
        let a = p.on_outcome(failed(429), 1_200, 0.0);
        assert_eq!(
            a,
            Action::Retry {
                at: pos(Tier::Comprehensive, 0, 3),
                delay_ms: 2_000
            }
        );
        let a = p.on_outcome(failed(500), 3_300, 0.0);
        assert_eq!(
            a,
            Action::NextCandidate {
                at: pos(Tier::Comprehensive, 1, 1)
            }
        );
        let a = p.on_outcome(AttemptOutcome::Fatal, 3_400, 0.0);
        assert_eq!(
            a,
            Action::NextTier {
                at: pos(Tier::Basic, 0, 1)
            }
        );
        assert_eq!(p.attempts(), 4);
    }

    #[test]
    fn client_error_and_timeout_move_on_without_retry() {
        let (mut p, _) = Pipeline::start(cfg(), [2, 1, 0], Tier::Comprehensive, 0);
        assert_eq!(
            p.on_outcome(failed(400), 10, 0.0),
            Action::NextCandidate {
                at: pos(Tier::Comprehensive, 1, 1)
            }
        );
        assert_eq!(
            p.on_outcome(AttemptOutcome::Timeout, 20, 0.0),
            Action::NextTier {
                at: pos(Tier::Enhanced, 0, 1)
            }
        );
        assert_eq!(
            p.on_outcome(AttemptOutcome::Timeout, 30, 0.0),
            Action::GiveUp
        );
    }

    #[test]
    fn deadline_ends_the_pipeline() {
        let (mut p, _) = Pipeline::start(cfg(), [3, 3, 3], Tier::Comprehensive, 0);
        // 119.5 s in: less than min_attempt_ms left, so no retry and no next candidate.
        assert_eq!(p.on_outcome(failed(503), 119_500, 0.0), Action::GiveUp);
        let (_, a) = Pipeline::start(cfg(), [3, 3, 3], Tier::Comprehensive, 200_000);
        assert_eq!(a, Action::GiveUp);
    }

    #[test]
    fn retry_delay_must_leave_time_for_the_attempt() {
        let (mut p, _) = Pipeline::start(cfg(), [2, 0, 0], Tier::Comprehensive, 0);
        // The 1 s backoff would end at 118.5 s, leaving 1.5 s: allowed.
        assert!(matches!(
            p.on_outcome(failed(503), 117_500, 0.0),
            Action::Retry { .. }
        ));
        let (mut p, _) = Pipeline::start(cfg(), [2, 0, 0], Tier::Comprehensive, 0);
        // Ending at 119.2 s leaves 0.8 s < min_attempt_ms: move on instead — and there is time for that.
        assert_eq!(
            p.on_outcome(failed(503), 118_200, 0.0),
            Action::NextCandidate {
                at: pos(Tier::Comprehensive, 1, 1)
            }
        );
    }

    #[test]
    fn broken_stream_aborts() {
        let (mut p, _) = Pipeline::start(cfg(), [1, 1, 1], Tier::Comprehensive, 0);
        assert_eq!(
            p.on_outcome(AttemptOutcome::StreamBroken, 10, 0.0),
            Action::AbortStream
        );
    }

    #[test]
    fn nan_quality_counts_as_zero() {
        let (mut p, _) = Pipeline::start(cfg(), [1, 0, 0], Tier::Comprehensive, 0);
        assert_eq!(
            p.on_outcome(
                AttemptOutcome::Success {
                    quality: Some(f64::NAN)
                },
                10,
                0.0
            ),
            Action::ReturnBest {
                at: pos(Tier::Comprehensive, 0, 1),
                quality: 0.0
            }
        );
    }
}
