//! Strict JSON for token segments and key sets: a JSON object whose members are all
//! distinct, at every depth.
//!
//! serde's derive (and `serde_json::Value`) keep the last of two equal member names, so a
//! token such as `{"sub":"a","sub":"b"}` would mean different things to different
//! parsers (RFC 8725 §3.1, RFC 7515 §5.2). This visitor builds a `serde_json::Value` in
//! one pass and refuses a repeated name instead.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON, or not an object at the top level.
    Malformed,
    /// Some object repeats a member name.
    DuplicateMember,
}

/// Parses `bytes` as one JSON object with distinct member names at every depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let duplicate = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JsonError::Malformed),
        Err(_) if duplicate.get() => Err(JsonError::DuplicateMember),
        Err(_) => Err(JsonError::Malformed),
    }
}

/// A seed that deserializes any JSON value, flagging repeated member names.
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
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
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let value = access.next_value_seed(self)?;
            if map.insert(name, value).is_some() {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_member_names_are_refused_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":1}}"#),
            Err(JsonError::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"a":[{"b":1,"b":1}]}"#),
            Err(JsonError::DuplicateMember)
        );
        // An escaped spelling is the same name once decoded.
        assert_eq!(
            parse_object(br#"{"sub":1,"s\u0075b":2}"#),
            Err(JsonError::DuplicateMember)
        );
    }

    #[test]
    fn only_a_single_object_is_accepted() {
        assert!(parse_object(br#"{"a":1,"b":[1,2.5,null,true,"x"]}"#).is_ok());
        assert_eq!(parse_object(b"[1]"), Err(JsonError::Malformed));
        assert_eq!(parse_object(b"{} {}"), Err(JsonError::Malformed));
        assert_eq!(parse_object(b"{\"a\":1"), Err(JsonError::Malformed));
        assert_eq!(parse_object(b""), Err(JsonError::Malformed));
    }
}
