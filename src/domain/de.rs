//! How request fields are read where serde's defaults and the published
//! contract disagree.
//!
//! JSON has one number type: to JSON Schema (and so to every client
//! generated from `/openapi.json`), `1065.0` and `1e3` are integers. serde
//! reads a `usize` only from a number written without a fraction or an
//! exponent. [`integer`] and [`optional_integer`] read any number that has
//! an integral value in the field's range, and refuse the rest as a wrong
//! value (a 422 `invalid_body`, like any other field of the wrong type).
//!
//! serde's derived structs read an array too, field by field in order:
//! `"hnsw": [16, 64, 32]` would pass for `{"m": 16, …}`. The document says
//! an object; [`Object`] (for a body) and [`object`], [`optional_object`]
//! and [`objects`] (for fields) read only an object.
//!
//! ```ignore
//! #[serde(deserialize_with = "crate::domain::de::integer")]
//! pub k: usize,
//! #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
//! pub limit: Option<usize>,
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// An integer field: any JSON number with an integral value that fits `T`.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(IntegerVisitor(PhantomData))
}

/// An optional integer field: absent or `null` is `None` (pair it with
/// `#[serde(default)]`).
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_option(OptionalVisitor(PhantomData))
}

struct IntegerVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> IntegerVisitor<T> {
    fn fit<E: de::Error>(value: u64) -> Result<T, E> {
        T::try_from(value)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &"an integer in range"))
    }
}

impl<'de, T: TryFrom<u64>> Visitor<'de> for IntegerVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Self::fit(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        u64::try_from(value)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            .and_then(Self::fit)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        // 2^64 is the first f64 above u64::MAX.
        if value.is_finite()
            && value.fract() == 0.0
            && (0.0..18_446_744_073_709_551_616.0).contains(&value)
        {
            Self::fit(value as u64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }
}

struct OptionalVisitor<T>(PhantomData<T>);

impl<'de, T: TryFrom<u64>> Visitor<'de> for OptionalVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        integer(deserializer).map(Some)
    }
}

/// A value read only from a JSON object (see the module's comment); it
/// derefs to the value.
#[derive(Debug, Clone)]
pub struct Object<T>(pub T);

impl<T> std::ops::Deref for Object<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// A field holding an object.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    Object::deserialize(deserializer).map(|o| o.0)
}

/// An optional field holding an object (pair it with `#[serde(default)]`).
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(deserializer).map(|o| o.map(|o| o.0))
}

/// A field holding an array of objects.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(deserializer).map(|all| all.into_iter().map(|o| o.0).collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Request {
        #[serde(deserialize_with = "super::integer")]
        k: u32,
        #[serde(default, deserialize_with = "super::optional_integer")]
        limit: Option<usize>,
    }

    fn read(json: &str) -> Result<Request, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default, deserialize_with = "super::optional_object")]
        one: Option<Inner>,
        #[serde(default, deserialize_with = "super::objects")]
        many: Vec<Inner>,
    }

    #[test]
    fn objects_are_read_from_objects_only() {
        let read = |json: &str| serde_json::from_str::<super::Object<Outer>>(json);
        let outer = read(r#"{"one": {"a": 1}, "many": [{"a": 2, "b": "x"}]}"#).unwrap();
        assert_eq!(outer.one.as_ref().unwrap().a, 1);
        assert_eq!(outer.many[0].b.as_deref(), Some("x"));
        assert!(read(r#"{"one": null}"#).unwrap().one.is_none());
        for json in [
            r#"[null, []]"#,
            r#"{"one": [1, null]}"#,
            r#"{"many": [[2, "x"]]}"#,
            r#"{"one": {"a": 1, "c": 2}}"#,
            r#""text""#,
        ] {
            let error = read(json).unwrap_err();
            assert!(error.is_data(), "{json}: {error}");
        }
    }

    #[test]
    fn integral_numbers_are_integers_in_any_notation() {
        for json in [
            r#"{"k": 7}"#,
            r#"{"k": 7.0}"#,
            r#"{"k": 0.7e1}"#,
            r#"{"k": 7, "limit": null}"#,
        ] {
            let request = read(json).unwrap();
            assert_eq!(request.k, 7, "{json}");
            assert_eq!(request.limit, None);
        }
        assert_eq!(read(r#"{"k": 1, "limit": 1e3}"#).unwrap().limit, Some(1000));
        assert_eq!(read(r#"{"k": 4294967295.0}"#).unwrap().k, u32::MAX);
    }

    #[test]
    fn fractions_negatives_and_out_of_range_values_are_data_errors() {
        for json in [
            r#"{"k": 7.5}"#,
            r#"{"k": -1}"#,
            r#"{"k": -0.5}"#,
            r#"{"k": 4294967296}"#,
            r#"{"k": 1e300}"#,
            r#"{"k": "7"}"#,
            r#"{"k": 1, "limit": 2.5}"#,
            r#"{"k": 1, "limit": 18446744073709551616}"#,
        ] {
            let error = read(json).unwrap_err();
            assert!(error.is_data(), "{json}: {error}");
        }
    }
}
