//! Secret value types and their validation. A value is always a string (what
//! `coffer run` puts into the environment); its type says how it must parse.
//! Errors name the problem and its position, never the value itself.

use serde::{Deserialize, Serialize};

/// Largest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// The type of a secret value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// any UTF-8 text
    Text,
    /// a JSON document
    Json,
    /// a YAML document
    Yaml,
    /// `true` or `false`
    Boolean,
    /// a signed 64-bit integer
    Integer,
    /// text that UIs mask by default
    Password,
}

impl ValueType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Text => "text",
            ValueType::Json => "json",
            ValueType::Yaml => "yaml",
            ValueType::Boolean => "boolean",
            ValueType::Integer => "integer",
            ValueType::Password => "password",
        }
    }

    /// Parse a type name.
    pub fn parse(name: &str) -> Option<ValueType> {
        Some(match name {
            "text" => ValueType::Text,
            "json" => ValueType::Json,
            "yaml" => ValueType::Yaml,
            "boolean" => ValueType::Boolean,
            "integer" => ValueType::Integer,
            "password" => ValueType::Password,
            _ => return None,
        })
    }

    /// Check that `value` is a valid value of this type. The error message
    /// describes the problem without quoting the value.
    pub fn validate(self, value: &str) -> Result<(), String> {
        if value.len() > MAX_VALUE_LEN {
            return Err(format!("value is {} bytes; the limit is {MAX_VALUE_LEN}", value.len()));
        }
        match self {
            ValueType::Text | ValueType::Password => Ok(()),
            ValueType::Boolean => match value {
                "true" | "false" => Ok(()),
                _ => Err("a boolean value must be exactly `true` or `false`".to_owned()),
            },
            ValueType::Integer => value.parse::<i64>().map(|_| ()).map_err(|_| {
                "an integer value must be a whole number between -2^63 and 2^63-1, digits only".to_owned()
            }),
            ValueType::Json => serde_json::from_str::<serde::de::IgnoredAny>(value)
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "value is not valid JSON ({:?} error at line {} column {})",
                        e.classify(),
                        e.line(),
                        e.column()
                    )
                }),
            ValueType::Yaml => serde_saphyr::from_str::<serde::de::IgnoredAny>(value)
                .map(|_| ())
                .map_err(|_| "value is not valid YAML".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ValueType::*;

    #[test]
    fn each_type_accepts_its_values_and_rejects_others() {
        assert!(Boolean.validate("true").is_ok() && Boolean.validate("false").is_ok());
        assert!(Boolean.validate("yes").is_err() && Boolean.validate("True").is_err());
        assert!(Integer.validate("-42").is_ok() && Integer.validate("42.0").is_err());
        assert!(Integer.validate("99999999999999999999").is_err());
        assert!(Json.validate(r#"{"a":[1,2]}"#).is_ok());
        let err = Json.validate(r#"{"a":"#).expect_err("truncated JSON");
        assert!(err.contains("line 1"), "{err}");
        assert!(Yaml.validate("a: 1\nb: [x, y]\n").is_ok());
        assert!(Yaml.validate("a: [unclosed").is_err());
        assert!(Text.validate("anything at all").is_ok());
        assert!(Password.validate(&"x".repeat(super::MAX_VALUE_LEN + 1)).is_err());
    }

    #[test]
    fn errors_never_quote_the_value() {
        let secret = "hunter2: [not closed";
        for t in [Json, Yaml, Boolean, Integer] {
            let err = t.validate(secret).expect_err("invalid");
            assert!(!err.contains("hunter2"), "{t:?}: {err}");
        }
    }
}
