//! Spin's `{{ name }}` string templates (component variables, allowed hosts).
//!
//! Verified against Spin's `spin-expressions` crate (`crates/expressions/src/template.rs`):
//! text outside `{{ ... }}` is literal, the expression is trimmed, an unclosed `{{` is an error.
//! Spin's expressions are variable names, so dol additionally requires each expression to be a
//! valid variable name.

use crate::ids::check_variable_name;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    /// Text copied as is.
    Literal(&'a str),
    /// The name of an application variable whose value is substituted.
    Variable(&'a str),
}

/// Splits a template into literal text and variable references.
pub(crate) fn parse_template(template: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut remainder = template;
    while !remainder.is_empty() {
        if let Some(after_open) = remainder.strip_prefix("{{") {
            let Some((expression, rest)) = after_open.split_once("}}") else {
                return Err("unmatched '{{' in template".to_owned());
            };
            let name = expression.trim();
            check_variable_name(name)
                .map_err(|reason| format!("{{{{ {name} }}}} is not a variable name: {reason}"))?;
            parts.push(Part::Variable(name));
            remainder = rest;
        } else {
            let literal_end = remainder.find("{{").unwrap_or(remainder.len());
            let (literal, rest) = remainder.split_at(literal_end);
            parts.push(Part::Literal(literal));
            remainder = rest;
        }
    }
    Ok(parts)
}

/// True when the string contains a `{{` that would make it a template.
pub(crate) fn is_template(text: &str) -> bool {
    text.contains("{{")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_and_variables() {
        assert_eq!(parse_template("").unwrap(), vec![]);
        assert_eq!(parse_template("a").unwrap(), vec![Part::Literal("a")]);
        assert_eq!(
            parse_template("Bearer {{ token }}!").unwrap(),
            vec![
                Part::Literal("Bearer "),
                Part::Variable("token"),
                Part::Literal("!")
            ]
        );
        assert_eq!(
            parse_template("{{a}}{{ b }}").unwrap(),
            vec![Part::Variable("a"), Part::Variable("b")]
        );
    }

    #[test]
    fn unmatched_braces_are_an_error() {
        let error = parse_template("{{ ok }} {{ open").unwrap_err();
        assert!(error.contains("unmatched"), "{error}");
    }

    #[test]
    fn expressions_must_be_variable_names() {
        let error = parse_template("{{ Not-A-Name }}").unwrap_err();
        assert!(error.contains("Not-A-Name"), "{error}");
    }
}
