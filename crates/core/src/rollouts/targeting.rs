//! A rollout as flagd targeting: the flag's definition at a percentage.
//!
//! The rollout is a flagd `fractional` rule that lists the rolled-out
//! variant first: `{"fractional": [["enhanced", 25], ["comprehensive", 75]]}`.
//! `fractional` hashes `flagKey + targetingKey` into a bucket and walks the
//! weights in order, so the variant owns the buckets below its percentage;
//! raising the percentage only adds buckets, and a targeting key that had
//! the variant keeps it. OFREP clients and in-process evaluations see the
//! same rule, since it is part of the flag document.
//!
//! A flag that already has targeting keeps it: the rollout splits only the
//! targeting keys the existing rules send to control (or to no decision,
//! which means the default variant).

use serde_json::{Map, Value, json};

use super::plan::RolloutPlan;

/// Flag metadata key naming the variant being rolled out.
pub const METADATA_VARIANT: &str = "dolRolloutVariant";
/// Flag metadata key holding the rollout percentage.
pub const METADATA_PERCENT: &str = "dolRolloutPercent";

/// The targeting that serves `plan.variant` to `percent` % of the targeting
/// keys that `original` (the flag's targeting before the rollout) sends to
/// control. At 0 % that is `original` itself.
pub fn rollout_targeting(
    original: Option<&Value>,
    plan: &RolloutPlan,
    percent: u8,
) -> Option<Value> {
    if percent == 0 {
        return original.cloned();
    }
    let split = json!({
        "fractional": [
            [plan.variant, u64::from(percent)],
            [plan.control, 100 - u64::from(percent)],
        ]
    });
    Some(match original {
        None => split,
        Some(rules) => json!({
            "if": [
                {"or": [{"==": [rules, null]}, {"==": [rules, plan.control]}]},
                split,
                rules,
            ]
        }),
    })
}

/// The flag definition `flag` (as stored before the rollout, whose targeting
/// is `original`) with the rollout at `percent`. `completed` makes the
/// variant the default variant and restores the original targeting.
pub fn flag_at(
    flag: &Value,
    original: Option<&Value>,
    plan: &RolloutPlan,
    percent: u8,
    completed: bool,
) -> Value {
    let mut def = flag.as_object().cloned().unwrap_or_default();
    let targeting = if completed {
        def.insert(
            "defaultVariant".to_owned(),
            Value::String(plan.variant.clone()),
        );
        original.cloned()
    } else {
        rollout_targeting(original, plan, percent)
    };
    match targeting {
        Some(t) => def.insert("targeting".to_owned(), t),
        None => def.remove("targeting"),
    };
    let mut meta = def
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(Map::new);
    if percent > 0 && !completed {
        meta.insert(
            METADATA_VARIANT.to_owned(),
            Value::String(plan.variant.clone()),
        );
        meta.insert(METADATA_PERCENT.to_owned(), Value::from(percent));
    } else {
        meta.remove(METADATA_VARIANT);
        meta.remove(METADATA_PERCENT);
    }
    if meta.is_empty() {
        def.remove("metadata");
    } else {
        def.insert("metadata".to_owned(), Value::Object(meta));
    }
    Value::Object(def)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::{EvaluationContext, FlagSet};
    use crate::rollouts::plan::{OnBreach, Step};

    fn plan() -> RolloutPlan {
        RolloutPlan {
            variant: "new".to_owned(),
            control: "old".to_owned(),
            steps: vec![Step {
                percent: 100,
                hold_secs: 0,
            }],
            min_samples: 0,
            guards: vec![],
            on_breach: OnBreach::Rollback,
        }
    }

    fn flag(targeting: Option<Value>) -> Value {
        let mut f = json!({
            "state": "ENABLED",
            "variants": {"old": "old", "new": "new", "vip": "vip"},
            "defaultVariant": "old"
        });
        if let Some(t) = targeting {
            f["targeting"] = t;
        }
        f
    }

    fn share_new(def: &Value, keys: u32) -> (u32, FlagSet) {
        let set = FlagSet::from_value(&json!({"flags": {"f": def}})).unwrap();
        let n = (0..keys)
            .filter(|i| {
                let ctx = EvaluationContext::new().with_targeting_key(format!("user-{i}"));
                set.evaluate("f", &ctx, 0).variant.as_deref() == Some("new")
            })
            .count();
        (u32::try_from(n).unwrap(), set)
    }

    #[test]
    fn percentages_split_targeting_keys() {
        for (percent, low, high) in [(5u8, 30u32, 75u32), (50, 440, 560), (100, 1000, 1000)] {
            let def = flag_at(&flag(None), None, &plan(), percent, false);
            let (n, _) = share_new(&def, 1000);
            assert!((low..=high).contains(&n), "{percent} %: {n} of 1000");
            assert_eq!(def["metadata"][METADATA_PERCENT], json!(percent));
        }
    }

    #[test]
    fn zero_percent_and_completion_restore_the_original_rules() {
        let rules = json!({"if": [{"==": [{"var": "tier"}, "gold"]}, "vip", null]});
        let original = flag(Some(rules.clone()));
        let back = flag_at(&original, Some(&rules), &plan(), 0, false);
        assert_eq!(back, original);
        let done = flag_at(&original, Some(&rules), &plan(), 100, true);
        assert_eq!(done["defaultVariant"], "new");
        assert_eq!(done["targeting"], rules);
        assert!(done.get("metadata").is_none());
        let none = flag_at(&flag(None), None, &plan(), 0, false);
        assert!(none.get("targeting").is_none());
    }

    #[test]
    fn existing_rules_keep_their_own_variants() {
        let rules = json!({"if": [{"==": [{"var": "tier"}, "gold"]}, "vip", null]});
        let def = flag_at(
            &flag(Some(rules.clone())),
            Some(&rules),
            &plan(),
            100,
            false,
        );
        let set = FlagSet::from_value(&json!({"flags": {"f": def}})).unwrap();
        let gold = EvaluationContext::new()
            .with_targeting_key("u1")
            .with("tier", "gold");
        assert_eq!(set.evaluate("f", &gold, 0).variant.as_deref(), Some("vip"));
        let plain = EvaluationContext::new().with_targeting_key("u1");
        assert_eq!(set.evaluate("f", &plain, 0).variant.as_deref(), Some("new"));
    }
}
