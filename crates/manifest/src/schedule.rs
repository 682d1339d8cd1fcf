//! Cron schedules for `[[trigger.cron]]`.
//!
//! The Spin cron trigger plugin (fermyon/spin-trigger-cron) reads `cron_expression` and hands it
//! to a scheduler built on the `cron` crate, whose expressions have a seconds field first:
//! `sec min hour day-of-month month day-of-week [year]`, e.g. every 5 minutes is
//! `0 */5 * * * *`. dol parses with the same crate; a five-field (Unix crontab) expression is
//! refused with a hint instead of being misread. Times are UTC and come in as arguments.

use std::str::FromStr;

use chrono::{DateTime, Utc};

/// Why a cron expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A five-field Unix crontab expression, which lacks the seconds field.
    #[error(
        "cron expression {expression:?} has 5 fields; Spin's cron trigger expects seconds first (6 or 7 fields), e.g. every 5 minutes is \"0 */5 * * * *\""
    )]
    MissingSeconds {
        /// The expression as written.
        expression: String,
    },
    /// The `cron` crate could not parse the expression.
    #[error("cron expression {expression:?} is invalid: {reason}")]
    Invalid {
        /// The expression as written.
        expression: String,
        /// The parser's explanation.
        reason: String,
    },
}

/// A parsed cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    schedule: cron::Schedule,
}

impl Schedule {
    /// Parses a six- or seven-field cron expression (seconds first).
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expression.trim();
        // Checked before parsing because the `cron` crate's own error for five fields does not
        // say that the seconds field is what is missing.
        if !trimmed.starts_with('@') && trimmed.split_whitespace().count() == 5 {
            return Err(ScheduleError::MissingSeconds {
                expression: expression.to_owned(),
            });
        }
        let schedule =
            cron::Schedule::from_str(trimmed).map_err(|error| ScheduleError::Invalid {
                expression: expression.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Schedule {
            expression: expression.to_owned(),
            schedule,
        })
    }

    /// The expression as written in the manifest.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first time strictly after `after` at which the schedule fires, or `None` if it
    /// never fires again (e.g. a past year).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&after).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap()
    }

    #[test]
    fn every_five_minutes() {
        let schedule = Schedule::parse("0 */5 * * * *").unwrap();
        assert_eq!(schedule.next_after(at(10, 0, 0)), Some(at(10, 5, 0)));
        assert_eq!(schedule.next_after(at(10, 3, 17)), Some(at(10, 5, 0)));
        assert_eq!(schedule.expression(), "0 */5 * * * *");
    }

    #[test]
    fn every_six_hours_and_every_two_seconds() {
        let schedule = Schedule::parse("0 0 */6 * * *").unwrap();
        assert_eq!(schedule.next_after(at(1, 0, 0)), Some(at(6, 0, 0)));
        let schedule = Schedule::parse("1/2 * * * * *").unwrap();
        assert_eq!(schedule.next_after(at(1, 0, 0)), Some(at(1, 0, 1)));
    }

    #[test]
    fn seven_fields_with_a_past_year_never_fire() {
        let schedule = Schedule::parse("0 0 0 1 1 * 2020").unwrap();
        assert_eq!(schedule.next_after(at(0, 0, 0)), None);
    }

    #[test]
    fn five_fields_are_refused_with_a_hint() {
        let error = Schedule::parse("*/5 * * * *").unwrap_err().to_string();
        assert!(error.contains("*/5 * * * *"), "{error}");
        assert!(
            error.contains("seconds first") && error.contains("0 */5 * * * *"),
            "{error}"
        );
    }

    #[test]
    fn garbage_is_refused_naming_the_expression() {
        let error = Schedule::parse("every minute please")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("every minute please") && error.contains("invalid"),
            "{error}"
        );
        assert!(Schedule::parse("").is_err());
        assert!(Schedule::parse("61 * * * * *").is_err());
    }
}
