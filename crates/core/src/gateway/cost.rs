//! Request cost: tokens × catalog price, in integer micro-dollars.
//!
//! Prices are micro-dollars per one million tokens (`$2.50 / 1M` is
//! `2_500_000`). A model without a known price yields [`Cost::Unknown`] —
//! never zero — so unknown spend is visible rather than silently free.

use serde::{Deserialize, Serialize};

/// A price in micro-dollars per one million tokens.
pub type MicrosPerMillion = u64;

/// The highest price the catalog takes, in US dollars per million tokens
/// (or per image): 10,000, far above any model priced today (the dearest
/// charge a few hundred dollars per million tokens). A mistyped price above
/// it is refused when it is set rather than charged to every request.
pub const MAX_PRICE_USD: f64 = 10_000.0;

/// Converts a catalog price in US dollars per million tokens to micro-dollars
/// per million tokens; `None` for negative or non-finite input and above
/// [`MAX_PRICE_USD`].
pub fn usd_per_million(usd: f64) -> Option<MicrosPerMillion> {
    if !usd.is_finite() || !(0.0..=MAX_PRICE_USD).contains(&usd) {
        return None;
    }
    // Rounded to the nearest micro-dollar: catalog prices have at most a few decimals.
    Some((usd * 1_000_000.0).round() as u64)
}

/// The cost of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "micros", rename_all = "lowercase")]
pub enum Cost {
    /// Known cost in micro-dollars.
    Known(u64),
    /// The model has no price (or only part of one): the cost is unknown.
    Unknown,
}

impl Cost {
    /// The micro-dollars, if known.
    pub fn micros(self) -> Option<u64> {
        match self {
            Self::Known(m) => Some(m),
            Self::Unknown => None,
        }
    }

    /// Whether the cost is unknown.
    pub fn is_unknown(self) -> bool {
        self == Self::Unknown
    }

    /// Sum of two costs; unknown if either is.
    pub fn plus(self, other: Cost) -> Cost {
        match (self, other) {
            (Self::Known(a), Self::Known(b)) => Self::Known(a.saturating_add(b)),
            _ => Self::Unknown,
        }
    }
}

/// `tokens × price / 1_000_000`, rounded up so a non-zero charge never shows as 0.
pub fn token_cost(tokens: u64, price: MicrosPerMillion) -> u64 {
    let micros = (u128::from(tokens) * u128::from(price)).div_ceil(1_000_000);
    u64::try_from(micros).unwrap_or(u64::MAX)
}

/// The cost of a request from its token counts and the model's prices.
///
/// Any token count meeting an unknown price makes the whole cost unknown. A
/// zero count needs no price (an unknown output price does not matter for a
/// request that produced no output).
pub fn request_cost(
    input_tokens: u64,
    output_tokens: u64,
    input_price: Option<MicrosPerMillion>,
    output_price: Option<MicrosPerMillion>,
) -> Cost {
    let part = |tokens: u64, price: Option<MicrosPerMillion>| match (tokens, price) {
        (0, _) => Cost::Known(0),
        (t, Some(p)) => Cost::Known(token_cost(t, p)),
        (_, None) => Cost::Unknown,
    };
    part(input_tokens, input_price).plus(part(output_tokens, output_price))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_usd_prices() {
        assert_eq!(usd_per_million(2.5), Some(2_500_000));
        assert_eq!(usd_per_million(0.15), Some(150_000));
        assert_eq!(usd_per_million(0.0), Some(0));
        assert_eq!(usd_per_million(-1.0), None);
        assert_eq!(usd_per_million(f64::NAN), None);
        assert_eq!(usd_per_million(MAX_PRICE_USD), Some(10_000_000_000));
        assert_eq!(usd_per_million(10_000.01), None);
        assert_eq!(usd_per_million(1e308), None);
    }

    #[test]
    fn computes_known_cost() {
        // 1000 input tokens at $2.50/1M = $0.0025 = 2500 µ$; 500 output at $10/1M = 5000 µ$.
        assert_eq!(
            request_cost(1000, 500, Some(2_500_000), Some(10_000_000)),
            Cost::Known(7_500)
        );
    }

    #[test]
    fn rounds_up_tiny_charges() {
        // 1 token at $0.15/1M is 0.15 µ$, charged as 1 µ$.
        assert_eq!(token_cost(1, 150_000), 1);
        assert_eq!(token_cost(0, 150_000), 0);
    }

    #[test]
    fn unknown_price_is_never_zero() {
        assert_eq!(request_cost(10, 10, None, Some(1)), Cost::Unknown);
        assert_eq!(request_cost(10, 10, Some(1), None), Cost::Unknown);
        assert!(request_cost(10, 10, None, None).is_unknown());
        assert_eq!(request_cost(10, 0, Some(1_000_000), None), Cost::Known(10));
        assert_eq!(Cost::Unknown.micros(), None);
    }

    #[test]
    fn free_models_cost_zero() {
        assert_eq!(
            request_cost(10_000, 10_000, Some(0), Some(0)),
            Cost::Known(0)
        );
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(token_cost(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(
            Cost::Known(u64::MAX).plus(Cost::Known(1)),
            Cost::Known(u64::MAX)
        );
    }

    #[test]
    fn serializes_with_kind() {
        assert_eq!(
            serde_json::to_string(&Cost::Known(5)).unwrap(),
            r#"{"kind":"known","micros":5}"#
        );
        assert_eq!(
            serde_json::to_string(&Cost::Unknown).unwrap(),
            r#"{"kind":"unknown"}"#
        );
    }
}
