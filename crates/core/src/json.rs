//! Strict JSON: a document in which an object gives a key twice is refused.
//!
//! serde_json keeps the last of two equal keys and other parsers the first,
//! so a body that names its amount (or its status) twice means one thing to
//! paysettle and another to whoever else reads it. Every body paysettle reads
//! as authoritative (PaySys notifications, the shop API's registrations) is
//! read here; what it returns is an ordinary [`Value`].

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    /// Not a JSON document (serde_json's message, shortened).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// An object gives `path`'s last key more than once. `path` names the
    /// keys from the top level down to the repeated one.
    #[error("{} is given more than once", display_path(.path))]
    RepeatedKey { path: Vec<String> },
}

impl StrictJsonError {
    /// The top-level key under which a key was repeated (the key itself when
    /// it is at the top level).
    pub fn top_level_key(&self) -> Option<&str> {
        match self {
            StrictJsonError::RepeatedKey { path } => path.first().map(String::as_str),
            StrictJsonError::NotJson(_) => None,
        }
    }
}

fn display_path(path: &[String]) -> String {
    let joined = path.join(".");
    crate::answer::bounded(&joined)
}

/// Parses `bytes` as one JSON document, refusing a key repeated in any object
/// at any depth.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let repeated = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result = StrictValue {
        path: Vec::new(),
        repeated: &repeated,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (result, repeated.into_inner()) {
        (_, Some(path)) => Err(StrictJsonError::RepeatedKey { path }),
        (Ok(value), None) => Ok(value),
        (Err(err), None) => Err(StrictJsonError::NotJson(crate::answer::bounded(
            &err.to_string(),
        ))),
    }
}

/// A callback's JSON body: refused as malformed, naming the repeated key or
/// serde_json's reason, when [`parse`] refuses it.
pub(crate) fn parse_callback(body: &[u8]) -> Result<Value, crate::verify::VerifyError> {
    parse(body).map_err(|e| match e {
        StrictJsonError::NotJson(why) => {
            crate::verify::VerifyError::malformed(format!("body is not JSON: {why}"))
        }
        repeated => crate::verify::VerifyError::malformed(repeated.to_string()),
    })
}

/// A value being read at `path`; the first repeated key found is written to
/// `repeated` and ends the parse.
struct StrictValue<'r> {
    path: Vec<String>,
    repeated: &'r RefCell<Option<Vec<String>>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite number, so `from_f64` holds.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let mut path = self.path.clone();
            path.push(items.len().to_string());
            let seed = StrictValue {
                path,
                repeated: self.repeated,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut path = self.path.clone();
            path.push(key.clone());
            if object.contains_key(&key) {
                *self.repeated.borrow_mut() = Some(path);
                return Err(A::Error::custom("a key is given more than once"));
            }
            let value = map.next_value_seed(StrictValue {
                path,
                repeated: self.repeated,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn repeated(text: &str) -> Option<Vec<String>> {
        match parse(text.as_bytes()) {
            Err(StrictJsonError::RepeatedKey { path }) => Some(path),
            _ => None,
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        assert_eq!(
            repeated(r#"{"amount":1250,"currency":"USD","amount":1}"#),
            Some(vec!["amount".to_owned()])
        );
        assert_eq!(
            repeated(r#"{"params":{"token":"a","token":"b"}}"#),
            Some(vec!["params".to_owned(), "token".to_owned()])
        );
        assert_eq!(
            repeated(r#"{"list":[{"a":1},{"a":1,"a":2}]}"#),
            Some(vec!["list".to_owned(), "1".to_owned(), "a".to_owned()])
        );
        let err = parse(br#"{"status":2,"status":-1}"#).unwrap_err();
        assert_eq!(err.to_string(), "status is given more than once");
        assert_eq!(err.top_level_key(), Some("status"));
        // Escapes are decoded before keys are compared.
        assert_eq!(
            repeated(r#"{"status":2,"st\u0061tus":-1}"#),
            Some(vec!["status".to_owned()])
        );
    }

    #[test]
    fn documents_without_repeats_read_as_serde_json_reads_them() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"é","d":18446744073709551615}"#;
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        // The same key in two different objects is not a repeat.
        assert!(parse(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn what_is_not_json_is_refused_with_serde_jsons_reason() {
        assert!(matches!(
            parse(b"not json"),
            Err(StrictJsonError::NotJson(_))
        ));
        assert!(matches!(parse(b"{} {}"), Err(StrictJsonError::NotJson(_))));
        assert!(matches!(
            parse(b"{\"a\":"),
            Err(StrictJsonError::NotJson(_))
        ));
        let deep = "[".repeat(500) + &"]".repeat(500);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(StrictJsonError::NotJson(_))
        ));
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
