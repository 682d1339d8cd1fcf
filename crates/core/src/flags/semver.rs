//! Version parsing and comparison for the `sem_ver` operator.
//!
//! flagd's reference evaluator (flagd-core) parses versions with node-semver:
//! one leading `v`/`V` is stripped, the rest must be a strict SemVer 2.0
//! string (surrounding whitespace and one further lowercase `v` tolerated),
//! and bare `MAJOR` or `MAJOR.MINOR` are completed with zeros. Build metadata
//! is parsed but ignored when comparing.

use std::cmp::Ordering;

/// node-semver refuses version strings longer than this.
const MAX_LENGTH: usize = 256;
/// Numeric components above JavaScript's MAX_SAFE_INTEGER are rejected.
const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;
/// node-semver's `coerce` only reads components of up to 16 digits.
const MAX_COERCE_DIGITS: usize = 16;

/// A parsed version; build metadata is dropped because it never affects order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// MAJOR component.
    pub major: u64,
    /// MINOR component.
    pub minor: u64,
    /// PATCH component.
    pub patch: u64,
    pre: Vec<PreId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PreId {
    Num(u64),
    Alpha(String),
}

impl Ord for PreId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PreId::Num(a), PreId::Num(b)) => a.cmp(b),
            (PreId::Num(_), PreId::Alpha(_)) => Ordering::Less,
            (PreId::Alpha(_), PreId::Num(_)) => Ordering::Greater,
            (PreId::Alpha(a), PreId::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for PreId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Version {
    /// SemVer precedence: MAJOR.MINOR.PATCH numerically, then a pre-release
    /// sorts before the release, then identifier by identifier.
    pub fn precedence(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

/// Parse a version the way flagd does (see the module docs); `None` when it
/// is not a version.
pub fn parse_lenient(raw: &str) -> Option<Version> {
    let stripped = raw
        .strip_prefix('v')
        .or_else(|| raw.strip_prefix('V'))
        .unwrap_or(raw);
    if let Some(v) = parse_strict(stripped) {
        return Some(v);
    }
    if is_partial(stripped) {
        return coerce(stripped);
    }
    None
}

/// `^\d+(\.\d+)?$`: the only shapes flagd completes with zeros.
fn is_partial(s: &str) -> bool {
    let mut parts = s.split('.');
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), None, None) => all_digits(a),
        (Some(a), Some(b), None) => all_digits(a) && all_digits(b),
        _ => false,
    }
}

/// node-semver's `coerce` restricted to `is_partial` inputs: it scans for the
/// first run of at most 16 digits that starts the string or follows a
/// non-digit, takes an optional `.minor` run of at most 16 digits, and
/// re-parses `major.minor.0` strictly (so leading zeros still fail).
fn coerce(s: &str) -> Option<Version> {
    let (major, minor) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let text = if major.len() <= MAX_COERCE_DIGITS {
        let minor = minor
            .filter(|m| m.len() <= MAX_COERCE_DIGITS)
            .unwrap_or("0");
        format!("{major}.{minor}.0")
    } else {
        // The major run is too long to match anywhere, so the scan resumes
        // after the dot and takes the minor run as the major component.
        match minor {
            Some(m) if m.len() <= MAX_COERCE_DIGITS => format!("{m}.0.0"),
            _ => return None,
        }
    };
    parse_strict(&text)
}

/// Strict SemVer 2.0 as node-semver's `parse` accepts it.
pub fn parse_strict(raw: &str) -> Option<Version> {
    if raw.len() > MAX_LENGTH {
        return None;
    }
    let s = raw.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    if let Some(b) = build
        && !b.split('.').all(is_build_ident)
    {
        return None;
    }
    let (main, pre) = match rest.split_once('-') {
        Some((m, p)) => (m, Some(p)),
        None => (rest, None),
    };
    let mut nums = main.split('.');
    let major = numeric_ident(nums.next()?)?;
    let minor = numeric_ident(nums.next()?)?;
    let patch = numeric_ident(nums.next()?)?;
    if nums.next().is_some() {
        return None;
    }
    let pre = match pre {
        None => Vec::new(),
        Some(p) => p.split('.').map(pre_ident).collect::<Option<Vec<_>>>()?,
    };
    Some(Version {
        major,
        minor,
        patch,
        pre,
    })
}

/// `0|[1-9]\d*`, within JavaScript's safe integer range.
fn numeric_ident(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse::<u64>().ok().filter(|n| *n <= MAX_SAFE_INTEGER)
}

fn pre_ident(s: &str) -> Option<PreId> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        // A purely numeric identifier may not carry leading zeros.
        if s.len() > 1 && s.starts_with('0') {
            return None;
        }
        return Some(match s.parse::<u64>() {
            Ok(n) => PreId::Num(n),
            Err(_) => PreId::Alpha(s.to_owned()),
        });
    }
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some(PreId::Alpha(s.to_owned()))
    } else {
        None
    }
}

fn is_build_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        parse_lenient(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v("V1.2.3"), v("1.2.3"));
        assert_eq!(v("1"), v("1.0.0"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("1.0.0+build"), v("1.0.0"));
        for bad in [
            "2.0.0.0",
            "not-a-version",
            "01.2.3",
            "1.2.3-01",
            "",
            "1.2.3+",
            "01",
            "1.02",
        ] {
            assert!(parse_lenient(bad).is_none(), "{bad} should not parse");
        }
    }

    #[test]
    fn precedence() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
        ];
        for w in order.windows(2) {
            assert_eq!(v(w[0]).precedence(&v(w[1])), Ordering::Less, "{w:?}");
        }
    }
}
