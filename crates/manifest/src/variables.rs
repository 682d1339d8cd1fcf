//! Application variables: resolution from the environment and rendering of component
//! variable templates.
//!
//! As Spin's environment provider does, the value of variable `api_token` is read from
//! `SPIN_VARIABLE_API_TOKEN` (prefix plus the upper-cased name); a set but empty variable counts
//! as set. Otherwise the declared default applies; a required variable without a value is an
//! error. Values of `secret` variables never appear in `Debug` output or errors.

use std::collections::BTreeMap;
use std::fmt;

use crate::template::{Part, parse_template};

/// The prefix of the environment variables that supply application variables.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// One `[variables]` entry of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariableDecl {
    /// The value used when the environment supplies none.
    pub default: Option<String>,
    /// Whether a value must be supplied at runtime.
    pub required: bool,
    /// Whether the value is sensitive (never logged).
    pub secret: bool,
    /// Free text from the manifest.
    pub description: Option<String>,
}

/// Why variables could not be resolved or a template not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// A required variable has no value.
    #[error(
        "required application variable {name:?} has no value: set the environment variable {env_var}"
    )]
    MissingRequired {
        /// The variable name.
        name: String,
        /// The environment variable that would supply it.
        env_var: String,
    },
    /// A template refers to a variable that is not declared.
    #[error("template {template:?} refers to undeclared application variable {name:?}")]
    Undeclared {
        /// The template text (from the manifest, never a value).
        template: String,
        /// The unknown name.
        name: String,
    },
    /// The template is malformed.
    #[error("template {template:?} is invalid: {reason}")]
    InvalidTemplate {
        /// The template text (from the manifest, never a value).
        template: String,
        /// What is wrong.
        reason: String,
    },
}

/// Resolved application variable values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedVariables {
    values: BTreeMap<String, ResolvedValue>,
}

#[derive(Clone, PartialEq, Eq)]
struct ResolvedValue {
    value: String,
    secret: bool,
}

/// The environment variable that supplies application variable `name`.
pub fn env_var_name(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// Resolves every declared variable: `lookup` is asked for `SPIN_VARIABLE_<NAME>` (the host
/// passes `|key| std::env::var(key).ok()`), then the default applies.
pub fn resolve(
    decls: &BTreeMap<String, VariableDecl>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<ResolvedVariables, VariableError> {
    let mut values = BTreeMap::new();
    for (name, decl) in decls {
        let env_var = env_var_name(name);
        let value = match lookup(&env_var).or_else(|| decl.default.clone()) {
            Some(value) => value,
            None => {
                return Err(VariableError::MissingRequired {
                    name: name.clone(),
                    env_var,
                });
            }
        };
        values.insert(
            name.clone(),
            ResolvedValue {
                value,
                secret: decl.secret,
            },
        );
    }
    Ok(ResolvedVariables { values })
}

impl ResolvedVariables {
    /// The value of an application variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|resolved| resolved.value.as_str())
    }

    /// Whether the variable is declared secret.
    pub fn is_secret(&self, name: &str) -> bool {
        self.values
            .get(name)
            .is_some_and(|resolved| resolved.secret)
    }

    /// Renders a component variable template such as `"Bearer {{ token }}"`.
    pub fn render(&self, template: &str) -> Result<String, VariableError> {
        let parts = parse_template(template).map_err(|reason| VariableError::InvalidTemplate {
            template: template.to_owned(),
            reason,
        })?;
        let mut rendered = String::new();
        for part in parts {
            match part {
                Part::Literal(text) => rendered.push_str(text),
                Part::Variable(name) => {
                    let value = self.get(name).ok_or_else(|| VariableError::Undeclared {
                        template: template.to_owned(),
                        name: name.to_owned(),
                    })?;
                    rendered.push_str(value);
                }
            }
        }
        Ok(rendered)
    }

    /// Renders all of a component's variables (`[component.X.variables]`).
    pub fn render_all(
        &self,
        templates: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, VariableError> {
        templates
            .iter()
            .map(|(name, template)| Ok((name.clone(), self.render(template)?)))
            .collect()
    }
}

impl fmt::Debug for ResolvedVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, resolved) in &self.values {
            if resolved.secret {
                map.entry(name, &"<redacted>");
            } else {
                map.entry(name, &resolved.value);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        BTreeMap::from([
            (
                "token".to_owned(),
                VariableDecl {
                    required: true,
                    secret: true,
                    ..VariableDecl::default()
                },
            ),
            (
                "region".to_owned(),
                VariableDecl {
                    default: Some("eu".to_owned()),
                    ..VariableDecl::default()
                },
            ),
        ])
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key| pairs.get(key).cloned()
    }

    #[test]
    fn env_overrides_default_and_supplies_required() {
        let resolved = resolve(
            &decls(),
            env(&[
                ("SPIN_VARIABLE_TOKEN", "s3cret"),
                ("SPIN_VARIABLE_REGION", "us"),
            ]),
        )
        .unwrap();
        assert_eq!(resolved.get("token"), Some("s3cret"));
        assert_eq!(resolved.get("region"), Some("us"));
        assert!(resolved.is_secret("token"));
        assert!(!resolved.is_secret("region"));
    }

    #[test]
    fn default_applies_and_empty_env_counts_as_set() {
        let resolved = resolve(&decls(), env(&[("SPIN_VARIABLE_TOKEN", "")])).unwrap();
        assert_eq!(resolved.get("region"), Some("eu"));
        assert_eq!(resolved.get("token"), Some(""));
    }

    #[test]
    fn missing_required_names_variable_and_env_var() {
        let error = resolve(&decls(), env(&[])).unwrap_err();
        assert_eq!(
            error,
            VariableError::MissingRequired {
                name: "token".to_owned(),
                env_var: "SPIN_VARIABLE_TOKEN".to_owned()
            }
        );
        let message = error.to_string();
        assert!(message.contains("\"token\"") && message.contains("SPIN_VARIABLE_TOKEN"));
    }

    #[test]
    fn env_var_names_are_upper_case() {
        assert_eq!(env_var_name("api_token"), "SPIN_VARIABLE_API_TOKEN");
    }

    #[test]
    fn renders_templates() {
        let resolved = resolve(&decls(), env(&[("SPIN_VARIABLE_TOKEN", "abc")])).unwrap();
        assert_eq!(resolved.render("Bearer {{ token }}").unwrap(), "Bearer abc");
        assert_eq!(resolved.render("{{token}}").unwrap(), "abc");
        assert_eq!(
            resolved.render("{{region}}-{{ token }}!").unwrap(),
            "eu-abc!"
        );
        assert_eq!(resolved.render("plain").unwrap(), "plain");
        let rendered = resolved
            .render_all(&BTreeMap::from([(
                "auth".to_owned(),
                "x {{ token }}".to_owned(),
            )]))
            .unwrap();
        assert_eq!(rendered["auth"], "x abc");
    }

    #[test]
    fn render_errors_name_the_template_but_no_value() {
        let resolved = resolve(&decls(), env(&[("SPIN_VARIABLE_TOKEN", "hunter2")])).unwrap();
        let error = resolved
            .render("{{ nope }} {{ token }}")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("nope") && !error.contains("hunter2"),
            "{error}"
        );
        let error = resolved.render("{{ token").unwrap_err().to_string();
        assert!(
            error.contains("unmatched") && !error.contains("hunter2"),
            "{error}"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let resolved = resolve(&decls(), env(&[("SPIN_VARIABLE_TOKEN", "hunter2")])).unwrap();
        let debug = format!("{resolved:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("<redacted>") && debug.contains("eu"),
            "{debug}"
        );
    }
}
