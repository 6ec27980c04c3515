//! Reading providers' JSON answers: the shared error and the small helpers
//! every provider needs (a field that is sometimes a number and sometimes a
//! string, a bounded copy of text for error messages).

use serde_json::Value;

/// Why a provider's answer could not be read. A status answer that fails here
/// is treated as a failed check (retried with backoff), never as a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the answer has no {0}")]
    Missing(&'static str),
    #[error("{field} is invalid: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("the answer is about another payment ({field} {found:?}, asked about {expected:?})")]
    OtherPayment {
        field: &'static str,
        expected: String,
        found: String,
    },
}

impl ParseError {
    pub(crate) fn invalid(field: &'static str, problem: impl ToString) -> ParseError {
        ParseError::Invalid {
            field,
            problem: bounded(&problem.to_string()),
        }
    }
}

/// Parses a JSON document, mapping serde's error to a short message.
pub(crate) fn json(bytes: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(bytes).map_err(|err| ParseError::NotJson(bounded(&err.to_string())))
}

/// A field sent as a JSON string or number, as text (`"2"` and `2` alike).
pub(crate) fn text_or_number(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An integer sent as a JSON number or a string of digits with an optional
/// minus sign (`-1`, `"-1"`, `"2"`).
pub(crate) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            text.parse().ok()
        }
        _ => None,
    }
}

/// Text from outside, cut short enough for an error message or a log field.
pub(crate) fn bounded(text: &str) -> String {
    const LIMIT: usize = 120;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_arrive_as_numbers_or_strings() {
        assert_eq!(integer(&serde_json::json!(2)), Some(2));
        assert_eq!(integer(&serde_json::json!("-1")), Some(-1));
        assert_eq!(integer(&serde_json::json!("2")), Some(2));
        assert_eq!(integer(&serde_json::json!("2.0")), None);
        assert_eq!(integer(&serde_json::json!("-")), None);
        assert_eq!(integer(&serde_json::json!(1.5)), None);
        assert_eq!(integer(&serde_json::json!(null)), None);
        assert_eq!(integer(&serde_json::json!("99999999999999999999")), None);
    }
}
