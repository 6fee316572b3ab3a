//! The object of one entry: a small header (what the entry is), then the value.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "CCS3"
//! 4       1     format version (FORMAT_VERSION)
//! 5       1     flags: bit 0 = completed (a value follows the header)
//! 6       8     time: when the value was stored, ms since the Unix epoch, server clock (i64 BE)
//! 14      8     lease: until when the claim is live, same unit; 0 = no claim (i64 BE)
//! 22      1     n = length of the claim's token (0 = no claim)
//! 23      n     the claim's token (UTF-8)
//! 23 + n  ...   the encoded value, to the end of the object (empty in a placeholder)
//! ```
//!
//! The header comes first so that listings read it with a short ranged GET, without the
//! value.

use bytes::{BufMut, Bytes, BytesMut};

use crate::FORMAT_VERSION;

const MAGIC: &[u8; 4] = b"CCS3";
const FIXED: usize = 23;
/// The longest header: enough bytes for a ranged read to see every field.
pub(crate) const MAX_HEADER: usize = FIXED + u8::MAX as usize;
const COMPLETED: u8 = 1;

/// The claim recorded in an object (live or not: its lease decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredClaim {
    pub(crate) token: String,
    pub(crate) lease_until_ms: i64,
}

/// An entry's object, decoded. The value is a slice of the object's bytes (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) value: Option<Bytes>,
    pub(crate) time_ms: i64,
    pub(crate) claim: Option<StoredClaim>,
}

/// What the header says, without the value: enough for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) completed: bool,
    pub(crate) time_ms: i64,
    pub(crate) claim: Option<StoredClaim>,
    pub(crate) len: usize,
}

/// Why bytes are not an entry of this format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Not written by this backend (or damaged).
    Garbage,
    /// Written by a later format of this backend.
    Version(u8),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Garbage => f.write_str("not an entry of this backend"),
            Unreadable::Version(v) => write!(
                f,
                "entry format {v}, this build reads format {FORMAT_VERSION}"
            ),
        }
    }
}

impl Record {
    /// The object's bytes.
    pub(crate) fn encode(&self) -> Bytes {
        let token = self.claim.as_ref().map_or("", |c| c.token.as_str());
        // Tokens are ours ("<pid>-<hex>"); a longer one cannot be written and reads as none.
        let token = if token.len() > usize::from(u8::MAX) {
            ""
        } else {
            token
        };
        let value = self.value.as_deref().unwrap_or_default();
        let mut out = BytesMut::with_capacity(FIXED + token.len() + value.len());
        out.put_slice(MAGIC);
        out.put_u8(FORMAT_VERSION);
        out.put_u8(if self.value.is_some() { COMPLETED } else { 0 });
        out.put_i64(self.time_ms);
        out.put_i64(if token.is_empty() {
            0
        } else {
            self.claim.as_ref().map_or(0, |c| c.lease_until_ms)
        });
        out.put_u8(token.len() as u8);
        out.put_slice(token.as_bytes());
        out.put_slice(value);
        out.freeze()
    }

    /// Decodes a whole object.
    pub(crate) fn decode(bytes: Bytes) -> Result<Record, Unreadable> {
        let header = Header::decode(&bytes)?;
        let value = header.completed.then(|| bytes.slice(header.len..));
        if !header.completed && bytes.len() > header.len {
            return Err(Unreadable::Garbage);
        }
        Ok(Record {
            value,
            time_ms: header.time_ms,
            claim: header.claim,
        })
    }
}

impl Header {
    /// Decodes the header at the start of `bytes` (the whole object, or its first
    /// [`MAX_HEADER`] bytes).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, Unreadable> {
        if bytes.len() < FIXED || &bytes[..4] != MAGIC {
            return Err(Unreadable::Garbage);
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(Unreadable::Version(bytes[4]));
        }
        let flags = bytes[5];
        if flags & !COMPLETED != 0 {
            return Err(Unreadable::Garbage);
        }
        let int = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let (time_ms, lease_until_ms) = (int(6), int(14));
        let n = usize::from(bytes[22]);
        let token = bytes.get(FIXED..FIXED + n).ok_or(Unreadable::Garbage)?;
        let token = std::str::from_utf8(token).map_err(|_| Unreadable::Garbage)?;
        let claim = (n > 0).then(|| StoredClaim {
            token: token.to_owned(),
            lease_until_ms,
        });
        Ok(Header {
            completed: flags & COMPLETED != 0,
            time_ms,
            claim,
            len: FIXED + n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Option<&'static [u8]>, claim: Option<(&str, i64)>) -> Record {
        Record {
            value: value.map(Bytes::from_static),
            time_ms: 1_700_000_000_123,
            claim: claim.map(|(token, lease_until_ms)| StoredClaim {
                token: token.to_owned(),
                lease_until_ms,
            }),
        }
    }

    #[test]
    fn records_round_trip() {
        for r in [
            record(Some(b"value"), None),
            record(Some(b""), None),
            record(Some(b"v"), Some(("123-00ff", 42))),
            record(None, Some(("123-00ff", 42))),
            record(None, None),
        ] {
            let bytes = r.encode();
            assert_eq!(Record::decode(bytes.clone()), Ok(r.clone()));
            let header = Header::decode(&bytes[..bytes.len().min(MAX_HEADER)]).unwrap();
            assert_eq!(header.completed, r.value.is_some());
            assert_eq!(header.claim, r.claim);
            assert_eq!(bytes.len() - header.len, r.value.map_or(0, |v| v.len()));
        }
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        for bytes in [&b""[..], b"garbage", b"CCS3\x01", &[0u8; 40]] {
            assert_eq!(
                Record::decode(Bytes::copy_from_slice(bytes)),
                Err(Unreadable::Garbage)
            );
        }
        let mut bytes = record(Some(b"v"), None).encode().to_vec();
        bytes[4] = 9;
        assert_eq!(
            Record::decode(Bytes::from(bytes.clone())),
            Err(Unreadable::Version(9))
        );
        // A token running past the end.
        bytes[4] = FORMAT_VERSION;
        bytes[22] = 200;
        assert!(Record::decode(Bytes::from(bytes)).is_err());
    }
}
