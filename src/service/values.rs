//! Secret value types and their validation. A value is always a string (what
//! `coffer run` puts into the environment); its type says how it must parse.
//! Errors name the problem and its position, never the value itself.

use serde::{Deserialize, Serialize};

/// Largest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Deepest nesting of arrays and objects a `json` value may have (`{}` is
/// depth 1). Well under serde_json's recursion limit of 128, so the KV API
/// (which parses the stored JSON into a tree, inside a 2-level response
/// envelope) always shows the object it was given; it is also the depth
/// limit serde-saphyr applies to YAML values by default.
pub const MAX_JSON_DEPTH: usize = 64;

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
            // serde_json skips an `IgnoredAny` without recursion, so a
            // deep value is parsed safely before its depth is measured.
            ValueType::Json => {
                serde_json::from_str::<serde::de::IgnoredAny>(value).map_err(|e| {
                    format!(
                        "value is not valid JSON ({:?} error at line {} column {})",
                        e.classify(),
                        e.line(),
                        e.column()
                    )
                })?;
                match json_depth(value) {
                    d if d > MAX_JSON_DEPTH => Err(format!(
                        "value nests arrays and objects {d} levels deep; the limit is {MAX_JSON_DEPTH}"
                    )),
                    _ => Ok(()),
                }
            }
            // serde-saphyr's default budget stops at 64 levels, the same
            // limit as JSON; its message would quote the value, so it is
            // rebuilt here.
            ValueType::Yaml => serde_saphyr::from_str::<serde::de::IgnoredAny>(value)
                .map(|_| ())
                .map_err(|e| match e.without_snippet() {
                    serde_saphyr::Error::Budget {
                        breach: serde_saphyr::budget::BudgetBreach::Depth { depth },
                        ..
                    } => {
                        format!("value nests sequences and mappings {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
                    }
                    _ => "value is not valid YAML".to_owned(),
                }),
        }
    }
}

/// The deepest nesting of arrays and objects in a JSON text, counted in one
/// pass without recursion (brackets inside strings do not count).
fn json_depth(json: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
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

    /// `levels` arrays and objects alternating around a scalar.
    fn nested(levels: usize) -> String {
        let mut s = String::from("1");
        for i in 0..levels {
            s = if i % 2 == 0 {
                format!("[{s}]")
            } else {
                format!("{{\"k\":{s}}}")
            };
        }
        s
    }

    #[test]
    fn json_depth_counts_arrays_and_objects_but_not_strings() {
        use super::json_depth;
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth("{}"), 1);
        assert_eq!(json_depth(r#"{"a":[1,{"b":[]}],"c":{}}"#), 4);
        assert_eq!(json_depth(r#"["[[[[", "\\", "\"{{{", {"]]]]": [[]]}]"#), 4);
        assert_eq!(json_depth(&nested(65)), 65);
        // 100,000 levels: one pass, no recursion, no stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(json_depth(&deep), 100_000);
    }

    #[test]
    fn json_deeper_than_the_limit_is_refused_naming_limit_and_depth() {
        use super::MAX_JSON_DEPTH;
        assert!(Json.validate(&nested(MAX_JSON_DEPTH)).is_ok());
        let err = Json.validate(&nested(MAX_JSON_DEPTH + 1)).expect_err("too deep");
        assert!(err.contains(&format!("{} levels", MAX_JSON_DEPTH + 1)), "{err}");
        assert!(err.contains(&format!("the limit is {MAX_JSON_DEPTH}")), "{err}");
        // As deep as fits in the size limit (~32,000 levels): refused, no overflow.
        let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        let err = Json.validate(&deep).expect_err("too deep");
        assert!(err.contains("30000 levels"), "{err}");
        // YAML stops at the same depth.
        let yaml = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(Yaml.validate(&yaml(MAX_JSON_DEPTH)).is_ok());
        let err = Yaml.validate(&yaml(MAX_JSON_DEPTH + 1)).expect_err("too deep");
        assert!(err.contains(&format!("the limit is {MAX_JSON_DEPTH}")), "{err}");
        assert!(
            err.contains("65 levels") && !err.contains("[["),
            "names the depth, not the value: {err}"
        );
        // A deep string of brackets is a flat value.
        assert!(Json.validate(&format!("[\"{}\"]", "[".repeat(1000))).is_ok());
    }
}
