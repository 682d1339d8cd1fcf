//! Attributing a `POST /v1/events` batch to variants.
//!
//! When an event has no `variant`, the flag is evaluated for its targeting
//! key (and `context`) exactly as OFREP would, and the served variant is
//! stored. When it has one, that variant is stored as sent — it is what the
//! user saw, even if the flag has changed since — but it must be one of the
//! variants the flag declares, so a typo cannot create a phantom variant.
//! Either way the flag must exist. The batch is all or nothing: the first
//! bad event refuses it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::events::{self, EventError, EventRecord};

/// What evaluating a flag for one unit gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The variant served to this targeting key.
    Variant(String),
    /// The flag does not exist.
    NotFound,
    /// The flag exists but served no variant (disabled, no default, or a
    /// rule error); the text says why.
    NoVariant(String),
}

/// The flags events are attributed to (the in-process evaluator and the
/// stored flag set, in the component).
pub trait FlagLookup {
    /// The variant `flag` serves to `targeting_key` with the extra `context`
    /// attributes (the same answer OFREP gives).
    fn served(&mut self, flag: &str, targeting_key: &str, context: &Map<String, Value>) -> Served;
    /// The variants `flag` declares in the current flag set (empty when it
    /// declares none); `Err` is a storage failure, for the log.
    fn declared_variants(&mut self, flag: &str) -> Result<Vec<String>, String>;
}

/// A batch ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributed {
    /// One record per event, in the order sent.
    pub records: Vec<EventRecord>,
    /// How many variants were found by evaluating the flag.
    pub variants_resolved: usize,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttributionError {
    /// The body or one event is invalid (the field names which); nothing
    /// is stored.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// Reading the flag set failed; the text is for the log.
    #[error("reading the flag set: {0}")]
    Lookup(String),
}

/// Parses `body` and resolves every event's variant for the API key
/// `key_id`, received at `now` (Unix ms).
pub fn attribute(
    body: &[u8],
    flags: &mut impl FlagLookup,
    key_id: &str,
    now: i64,
) -> Result<Attributed, AttributionError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| EventError::new("body", format!("is not valid JSON: {e}")))?;
    let inputs = events::parse(&body)?;
    let batch = body.get("events").is_some();
    let path = |i: usize, field: &str| {
        if batch {
            format!("events[{i}].{field}")
        } else {
            format!("event.{field}")
        }
    };
    let mut exists: BTreeMap<String, bool> = BTreeMap::new();
    let mut variants_resolved = 0usize;
    let mut records = Vec::with_capacity(inputs.len());
    for (i, e) in inputs.into_iter().enumerate() {
        let no_flag = || EventError::new(path(i, "flag"), format!("no flag {:?}", e.flag));
        let variant = match &e.variant {
            None => match flags.served(&e.flag, &e.targeting_key, &e.context) {
                Served::Variant(v) => {
                    variants_resolved += 1;
                    v
                }
                Served::NotFound => return Err(no_flag().into()),
                Served::NoVariant(why) => {
                    return Err(EventError::new(
                        path(i, "variant"),
                        format!(
                            "flag {:?} served no variant for this targeting key ({why}); send the variant the user saw",
                            e.flag
                        ),
                    )
                    .into());
                }
            },
            Some(v) => {
                // Evaluating once per flag tells whether it exists (and, in
                // the component, seeds the flag set on a fresh database).
                let found = *exists.entry(e.flag.clone()).or_insert_with(|| {
                    flags.served(&e.flag, &e.targeting_key, &e.context) != Served::NotFound
                });
                if !found {
                    return Err(no_flag().into());
                }
                let declared = flags
                    .declared_variants(&e.flag)
                    .map_err(AttributionError::Lookup)?;
                if !declared.contains(v) {
                    return Err(EventError::new(
                        path(i, "variant"),
                        format!(
                            "flag {:?} has no variant {v:?} (variants: {})",
                            e.flag,
                            declared.join(", ")
                        ),
                    )
                    .into());
                }
                v.clone()
            }
        };
        records.push(EventRecord {
            at: now,
            key_id: key_id.to_owned(),
            targeting_key: e.targeting_key,
            flag: e.flag,
            variant,
            name: e.name,
            value: e.value,
        });
    }
    Ok(Attributed {
        records,
        variants_resolved,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Flag `f` with variants on/off, serving `on` (or what `serves` says);
    /// `broken` serves no variant; anything else does not exist.
    struct Flags {
        serves: Served,
        evaluations: usize,
        fail_reads: bool,
    }

    impl Flags {
        fn new() -> Self {
            Self {
                serves: Served::Variant("on".into()),
                evaluations: 0,
                fail_reads: false,
            }
        }
    }

    impl FlagLookup for Flags {
        fn served(&mut self, flag: &str, _: &str, _: &Map<String, Value>) -> Served {
            self.evaluations += 1;
            match flag {
                "f" => self.serves.clone(),
                "broken" => Served::NoVariant("reason DISABLED".into()),
                _ => Served::NotFound,
            }
        }

        fn declared_variants(&mut self, flag: &str) -> Result<Vec<String>, String> {
            if self.fail_reads {
                return Err("disk on fire".into());
            }
            Ok(if flag == "f" {
                vec!["off".into(), "on".into()]
            } else {
                Vec::new()
            })
        }
    }

    fn attribute_json(body: &Value, flags: &mut Flags) -> Result<Attributed, AttributionError> {
        attribute(body.to_string().as_bytes(), flags, "key1", 42)
    }

    fn field(err: &AttributionError) -> &str {
        match err {
            AttributionError::Invalid(e) => e.field(),
            AttributionError::Lookup(_) => "(lookup)",
        }
    }

    #[test]
    fn a_missing_variant_is_the_one_served() {
        let mut flags = Flags::new();
        let got = attribute_json(
            &json!({"targetingKey": "u1", "flag": "f", "name": "exposure"}),
            &mut flags,
        )
        .unwrap();
        assert_eq!(got.variants_resolved, 1);
        let r = &got.records[0];
        assert_eq!(
            (r.variant.as_str(), r.key_id.as_str(), r.at),
            ("on", "key1", 42)
        );
    }

    #[test]
    fn a_sent_variant_is_kept_when_the_flag_declares_it() {
        let mut flags = Flags::new();
        let got = attribute_json(
            &json!({"events": [
                {"targetingKey": "u1", "flag": "f", "name": "buy", "variant": "off", "value": 3.5},
                {"targetingKey": "u2", "flag": "f", "name": "buy", "variant": "off"}
            ]}),
            &mut flags,
        )
        .unwrap();
        assert_eq!(got.variants_resolved, 0);
        assert!(got.records.iter().all(|r| r.variant == "off"));
        assert_eq!(got.records[0].value, Some(3.5));
        // The flag's existence is checked once per flag, not per event.
        assert_eq!(flags.evaluations, 1);
    }

    #[test]
    fn each_refusal_names_its_field() {
        let mut flags = Flags::new();
        let cases = [
            (
                json!({"targetingKey": "u", "flag": "nope", "name": "x"}),
                "event.flag",
            ),
            (
                json!({"events": [{"targetingKey": "u", "flag": "f", "name": "x"},
                                   {"targetingKey": "u", "flag": "f", "name": "x", "variant": "typo"}]}),
                "events[1].variant",
            ),
            (
                json!({"targetingKey": "u", "flag": "broken", "name": "x"}),
                "event.variant",
            ),
            (
                json!({"targetingKey": "u", "flag": "nope", "name": "x", "variant": "on"}),
                "event.flag",
            ),
        ];
        for (body, expected) in cases {
            let err = attribute_json(&body, &mut flags).unwrap_err();
            assert_eq!(field(&err), expected, "{body}: {err}");
            assert!(err.to_string().starts_with(expected), "{err}");
        }
        let err = attribute(b"{not json", &mut flags, "k", 0).unwrap_err();
        assert_eq!(field(&err), "body");
    }

    #[test]
    fn a_typo_lists_the_declared_variants() {
        let err = attribute_json(
            &json!({"targetingKey": "u", "flag": "f", "name": "x", "variant": "of"}),
            &mut Flags::new(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.variant: flag \"f\" has no variant \"of\" (variants: off, on)"
        );
    }

    #[test]
    fn a_storage_failure_is_not_the_clients() {
        let mut flags = Flags::new();
        flags.fail_reads = true;
        let err = attribute_json(
            &json!({"targetingKey": "u", "flag": "f", "name": "x", "variant": "on"}),
            &mut flags,
        )
        .unwrap_err();
        assert_eq!(err, AttributionError::Lookup("disk on fire".into()));
    }
}
