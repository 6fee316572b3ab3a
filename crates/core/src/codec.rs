//! The value codec: postcard inside a small versioned envelope.
//!
//! Two envelopes, both read by this build:
//!
//! - version 1: `[1][flags][postcard payload]`;
//! - version 2: `[2][flags][preview length][preview, UTF-8][postcard payload]`, the same with
//!   a short, readable preview of the arguments the value was computed from (at most
//!   [`MAX_PREVIEW_LEN`] bytes), for inspection tools.
//!
//! The flags record whether the value is a `None`, so that cachier's `allow_none` rule (a
//! stored `None` is served only when allowed) can be applied without decoding. The preview
//! sits before the payload, so a listing reads it from the value's first
//! [`PREVIEW_PREFIX_LEN`] bytes without fetching the value or knowing its type, and an entry
//! written without a preview (version 1, or by an older build) still reads.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Error;

mod preview;

pub use preview::render_preview;

/// The envelope without a preview (the only one older builds read): what a function whose
/// previews are off writes.
pub const VALUE_FORMAT_VERSION: u8 = 1;
/// The envelope with a preview of the arguments. Envelopes of other versions read as misses.
pub const PREVIEW_FORMAT_VERSION: u8 = 2;
/// The longest preview stored, in bytes of UTF-8.
pub const MAX_PREVIEW_LEN: usize = 120;
/// How many leading bytes of a stored value hold its preview, whatever its length: what a
/// listing reads of each value to show its preview ([`preview`]).
pub const PREVIEW_PREFIX_LEN: usize = 3 + MAX_PREVIEW_LEN;
const FLAG_NONE: u8 = 1;

/// Encodes `value` into an envelope without a preview.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    encode_with_preview(value, None)
}

/// Encodes `value` into an envelope carrying `preview` (see [`render_preview`]), cut to
/// [`MAX_PREVIEW_LEN`] bytes on a character boundary; `None` writes the envelope without one.
pub fn encode_with_preview<T: Serialize + ?Sized>(
    value: &T,
    preview: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let flags = if is_none(value) { FLAG_NONE } else { 0 };
    let out = match preview {
        None => vec![VALUE_FORMAT_VERSION, flags],
        Some(text) => {
            let text = preview::cut(text, MAX_PREVIEW_LEN);
            let mut out = Vec::with_capacity(3 + text.len() + 8);
            out.extend_from_slice(&[PREVIEW_FORMAT_VERSION, flags, text.len() as u8]);
            out.extend_from_slice(text.as_bytes());
            out
        }
    };
    postcard::to_extend(value, out).map_err(|e| Error::encode("value", e))
}

/// Decodes an envelope written by [`encode`] or [`encode_with_preview`].
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
    matches!(bytes, [VALUE_FORMAT_VERSION | PREVIEW_FORMAT_VERSION, flags, ..] if flags & FLAG_NONE != 0)
}

/// The preview of the arguments an envelope carries, read from its first bytes (at least
/// [`PREVIEW_PREFIX_LEN`] of them, or the whole value if shorter): `None` for an envelope
/// without one, or bytes that are not an envelope. A preview that is not UTF-8 or holds
/// control characters (bytes written by something else) is not one: it is never shown.
pub fn preview(prefix: &[u8]) -> Option<&str> {
    let [PREVIEW_FORMAT_VERSION, _, len, rest @ ..] = prefix else {
        return None;
    };
    let text = std::str::from_utf8(rest.get(..usize::from(*len))?).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

fn payload(bytes: &[u8]) -> Result<&[u8], Error> {
    match bytes {
        [VALUE_FORMAT_VERSION, _, payload @ ..] => Ok(payload),
        [PREVIEW_FORMAT_VERSION, _, len, rest @ ..] => rest
            .get(usize::from(*len)..)
            .ok_or_else(|| Error::decode("truncated value preview", None)),
        [] | [_] | [PREVIEW_FORMAT_VERSION, _] => Err(Error::decode("truncated value", None)),
        [version, ..] => Err(Error::decode(
            format_args!(
                "unknown value format version {version} (this build reads {VALUE_FORMAT_VERSION} and {PREVIEW_FORMAT_VERSION})"
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
    fn previews_travel_before_the_payload_and_old_envelopes_still_read() {
        let bytes = encode_with_preview(&Some(5u32), Some("5, \"x\"")).unwrap();
        assert_eq!(bytes[0], PREVIEW_FORMAT_VERSION);
        assert_eq!(decode::<Option<u32>>(&bytes).unwrap(), Some(5));
        assert_eq!(preview(&bytes), Some("5, \"x\""));
        assert!(!encodes_none(&bytes));
        let none = encode_with_preview(&None::<u32>, Some("1")).unwrap();
        assert!(encodes_none(&none));
        // The preview is read from a prefix alone, as listings read it.
        let long = "é".repeat(200);
        let bytes = encode_with_preview(&vec![7u8; 1000], Some(&long)).unwrap();
        let shown = preview(&bytes[..PREVIEW_PREFIX_LEN]).unwrap();
        assert!(
            shown.len() <= MAX_PREVIEW_LEN && shown.ends_with('…'),
            "{shown}"
        );
        assert_eq!(decode::<Vec<u8>>(&bytes).unwrap(), vec![7u8; 1000]);
        // An envelope as written before previews existed (version 1, built by hand): it
        // still decodes, and has no preview.
        let mut old = vec![1u8, 0];
        old.extend(postcard::to_allocvec(&42u64).unwrap());
        assert_eq!(decode::<u64>(&old).unwrap(), 42);
        assert_eq!(preview(&old), None);
        assert_eq!(encode(&42u64).unwrap(), old, "no preview: the old envelope");
    }

    #[test]
    fn garbage_previews_are_not_shown() {
        assert_eq!(
            preview(&[PREVIEW_FORMAT_VERSION, 0, 5, b'a']),
            None,
            "cut short"
        );
        assert_eq!(preview(&[PREVIEW_FORMAT_VERSION, 0, 2, 0xff, 0xfe]), None);
        assert_eq!(preview(&[PREVIEW_FORMAT_VERSION, 0, 2, b'a', 0x1b]), None);
        assert_eq!(preview(&[9, 0, 0]), None);
        assert!(decode::<u8>(&[PREVIEW_FORMAT_VERSION, 0, 9, 1]).is_err());
        assert!(decode::<u8>(&[PREVIEW_FORMAT_VERSION, 0]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<String>(&[]).is_err());
        assert!(decode::<String>(&[9, 0, 1]).is_err());
        assert!(decode::<String>(&[VALUE_FORMAT_VERSION, 0, 200]).is_err());
        assert!(decode::<u8>(&[VALUE_FORMAT_VERSION, 0, 1, 2]).is_err());
    }
}
