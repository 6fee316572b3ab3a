//! The value codec: postcard inside a small versioned envelope.
//!
//! Envelope: `[format version][flags][postcard payload]`. The flags record whether the value
//! is a `None`, so that cachier's `allow_none` rule (a stored `None` is served only when
//! allowed) can be applied without decoding.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

/// Bumped whenever the envelope or payload encoding changes; other versions read as misses.
pub const VALUE_FORMAT_VERSION: u8 = 1;
const FLAG_NONE: u8 = 1;
const HEADER_LEN: usize = 2;

/// Encodes `value` into an envelope.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let flags = if is_none(value) { FLAG_NONE } else { 0 };
    let out = vec![VALUE_FORMAT_VERSION, flags];
    postcard::to_extend(value, out).map_err(|e| Error::encode("value", e))
}

/// Decodes an envelope written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let payload = payload(bytes)?;
    let (value, rest) = postcard::take_from_bytes(payload)
        .map_err(|e| Error::decode(e.to_string(), Some(Box::new(e))))?;
    if !rest.is_empty() {
        return Err(Error::decode(
            format_args!("{} trailing bytes", rest.len()),
            None,
        ));
    }
    Ok(value)
}

/// Whether an envelope holds a `None` (false for bytes that are not an envelope).
pub fn encodes_none(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] == VALUE_FORMAT_VERSION && bytes[1] & FLAG_NONE != 0
}

fn payload(bytes: &[u8]) -> Result<&[u8], Error> {
    match bytes {
        [VALUE_FORMAT_VERSION, _, payload @ ..] => Ok(payload),
        [] | [_] => Err(Error::decode("truncated value", None)),
        [version, ..] => Err(Error::decode(
            format_args!(
                "unknown value format version {version} (this build reads {VALUE_FORMAT_VERSION})"
            ),
            None,
        )),
    }
}

/// True when `value` serializes as a bare `None` (an `Option::None` at the top level).
fn is_none<T: Serialize + ?Sized>(value: &T) -> bool {
    matches!(value.serialize(NoneProbe), Ok(true))
}

/// A serializer that only answers "is this a top-level `None`?" and stops at the first call.
struct NoneProbe;

#[derive(Debug)]
struct NotNone;
impl std::fmt::Display for NotNone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not none")
    }
}
impl std::error::Error for NotNone {}
impl serde::ser::Error for NotNone {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotNone
    }
}

macro_rules! not_none {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $( fn $method(self, $(_: $ty),*) -> Result<bool, NotNone> { Ok(false) } )*
    };
}

impl serde::Serializer for NoneProbe {
    type Ok = bool;
    type Error = NotNone;
    type SerializeSeq = serde::ser::Impossible<bool, NotNone>;
    type SerializeTuple = serde::ser::Impossible<bool, NotNone>;
    type SerializeTupleStruct = serde::ser::Impossible<bool, NotNone>;
    type SerializeTupleVariant = serde::ser::Impossible<bool, NotNone>;
    type SerializeMap = serde::ser::Impossible<bool, NotNone>;
    type SerializeStruct = serde::ser::Impossible<bool, NotNone>;
    type SerializeStructVariant = serde::ser::Impossible<bool, NotNone>;

    fn serialize_none(self) -> Result<bool, NotNone> {
        Ok(true)
    }
    not_none!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<bool, NotNone> {
        Ok(false)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<bool, NotNone> {
        // Transparent wrappers around an Option count as what they wrap.
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, NotNone> {
        Ok(false)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNone> {
        Err(NotNone)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNone> {
        Err(NotNone)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotNone> {
        Err(NotNone)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotNone> {
        Err(NotNone)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNone> {
        Err(NotNone)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotNone> {
        Err(NotNone)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotNone> {
        Err(NotNone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_flags_none() {
        let bytes = encode(&Some(5u32)).unwrap();
        assert!(!encodes_none(&bytes));
        assert_eq!(decode::<Option<u32>>(&bytes).unwrap(), Some(5));
        let none = encode(&None::<u32>).unwrap();
        assert!(encodes_none(&none));
        assert_eq!(decode::<Option<u32>>(&none).unwrap(), None);
        assert!(!encodes_none(&encode(&0u8).unwrap()));
        assert!(!encodes_none(&encode(&vec![None::<u8>]).unwrap()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<String>(&[]).is_err());
        assert!(decode::<String>(&[9, 0, 1]).is_err());
        assert!(decode::<String>(&[VALUE_FORMAT_VERSION, 0, 200]).is_err());
        assert!(decode::<u8>(&[VALUE_FORMAT_VERSION, 0, 1, 2]).is_err());
    }
}
