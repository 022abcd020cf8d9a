//! Parses one JSONL record, visiting only the configured fields: strings
//! without escapes stay borrowed from the map, other fields are skipped
//! without being built.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::JsonFields;
use crate::error::{Error, Location};

/// The fields of one record.
pub(super) struct RawDoc<'a> {
    pub id: Option<Cow<'a, str>>,
    pub title: Option<Cow<'a, str>>,
    pub text: Cow<'a, str>,
}

/// A parse failure before its location is known.
pub(super) enum ParseError {
    Json(String),
    Field(String),
}

impl ParseError {
    pub(super) fn at(self, at: Location, unterminated_last: bool) -> Error {
        match self {
            ParseError::Json(mut message) => {
                if unterminated_last {
                    message.push_str(" (last line has no newline: is the file truncated?)");
                }
                Error::MalformedJson { at, message }
            }
            ParseError::Field(message) => Error::BadField { at, message },
        }
    }
}

pub(super) fn parse<'a>(line: &'a str, fields: &JsonFields) -> Result<RawDoc<'a>, ParseError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let found = RecordSeed { fields }
        .deserialize(&mut de)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ParseError::Field(e.to_string()),
            _ => ParseError::Json(e.to_string()),
        })?;
    de.end().map_err(|e| ParseError::Json(e.to_string()))?;
    let text = found
        .text
        .ok_or_else(|| ParseError::Field(format!("missing field `{}`", fields.text)))?;
    Ok(RawDoc {
        id: found.id,
        title: found.title,
        text,
    })
}

#[derive(Default)]
struct Found<'a> {
    id: Option<Cow<'a, str>>,
    title: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
}

struct RecordSeed<'f> {
    fields: &'f JsonFields,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Found<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            let key = key.0;
            if key == self.fields.text {
                let v = map.next_value::<Field<'de>>()?;
                found.text = Some(v.string(&key, false)?);
            } else if key == self.fields.id {
                let v = map.next_value::<Field<'de>>()?;
                found.id = Some(v.string(&key, true)?);
            } else if self.fields.title.as_deref() == Some(&*key) {
                match map.next_value::<Field<'de>>()? {
                    Field::Null => {}
                    v => found.title = Some(v.string(&key, false)?),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A string that borrows from the input when JSON needed no unescaping.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field value of the kinds a document field may hold.
enum Field<'a> {
    Str(Cow<'a, str>),
    Num(String),
    Null,
    Other(&'static str),
}

impl<'a> Field<'a> {
    fn string<E: de::Error>(self, key: &str, numbers_ok: bool) -> Result<Cow<'a, str>, E> {
        match self {
            Field::Str(s) => Ok(s),
            Field::Num(n) if numbers_ok => Ok(Cow::Owned(n)),
            Field::Num(_) => Err(E::custom(format!(
                "field `{key}` is a number, not a string"
            ))),
            Field::Null => Err(E::custom(format!("field `{key}` is null"))),
            Field::Other(kind) => Err(E::custom(format!("field `{key}` is {kind}, not a string"))),
        }
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(Field::Num(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Num(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
                Ok(Field::Num(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other("a boolean"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Field<'de>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Field<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}
