//! Function namespaces and cache keys.

mod canonical;

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Error;

/// Bumped whenever the key derivation changes, so old and new keys never collide.
const KEY_FORMAT_VERSION: u8 = 1;

/// A cache key: a SHA-256 hash of a format byte and the canonical (postcard) encoding of
/// the arguments (or of a custom key function's result).
///
/// The encoding is fixed, so keys are identical across processes, machines, builds and Rust
/// versions. Maps are encoded with their entries in one order (their keys' natural order), so
/// a `HashMap` argument, whose iteration order differs in every process, has one key
/// everywhere, and a `BTreeMap` keeps the key it always had. Sets cannot be told from
/// sequences in serde's data model: a `HashSet` argument still encodes in its random order
/// (use a `BTreeSet` or a key function; `#[cachier]` refuses one it can see).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of `value`'s canonical encoding.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Key, Error> {
        ArgBytes::of(value).map(|bytes| bytes.key())
    }

    /// A key from its 32 raw bytes (as stored by a backend).
    pub const fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut text = String::with_capacity(64);
        self.push_hex(&mut text);
        text
    }

    /// Appends the 64 lowercase hex digits to `out` (no formatter: stores build keys with it
    /// on every call).
    pub fn push_hex(&self, out: &mut String) {
        push_hex(out, &self.0);
    }

    /// Parses 64 hex digits back into a key.
    pub fn from_hex(hex: &str) -> Option<Key> {
        // `from_str_radix` alone would take a sign (`"+f"`).
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Key(out))
    }
}

/// The canonical encoding of a function's arguments (or of a key function's result), after
/// the key format byte: what a [`Key`] hashes, and what the near cache looks values up by.
/// Small encodings stay on the stack (no allocation on a hit).
pub(crate) struct ArgBytes {
    stack: [u8; 128],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl ArgBytes {
    /// Nothing encoded yet.
    #[inline(always)]
    pub(crate) const fn new() -> ArgBytes {
        ArgBytes {
            stack: [0; 128],
            len: 0,
            heap: None,
        }
    }

    /// The encoding of `value`.
    pub(crate) fn of<T: Serialize + ?Sized>(value: &T) -> Result<ArgBytes, Error> {
        let mut bytes = ArgBytes::new();
        bytes.encode(value)?;
        Ok(bytes)
    }

    /// Encodes `value` here, replacing what was encoded before. Where the hit path encodes:
    /// in place, so the buffer is never moved.
    #[inline(always)]
    pub(crate) fn encode<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.stack[0] = KEY_FORMAT_VERSION;
        let value = canonical::Canonical(value);
        let onto_stack = OntoStack {
            buffer: &mut self.stack,
            len: 1,
        };
        match postcard::serialize_with_flavor(&value, onto_stack) {
            Ok(len) => {
                self.len = len;
                self.heap = None;
                Ok(())
            }
            Err(postcard::Error::SerializeBufferFull) => {
                let bytes = postcard::to_extend(&value, vec![KEY_FORMAT_VERSION])
                    .map_err(|e| encode_error(&e))?;
                self.heap = Some(bytes);
                Ok(())
            }
            Err(e) => Err(encode_error(&e)),
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(bytes) => bytes,
            None => &self.stack[..self.len],
        }
    }

    pub(crate) fn key(&self) -> Key {
        Key(Sha256::digest(self.as_bytes()).into())
    }
}

/// A hasher for maps keyed by [`Key`]: keys are already uniform hashes, so their first eight
/// bytes are used as they are instead of hashing them again.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_usize(&mut self, _length_prefix: usize) {}
}

/// [`std::hash::BuildHasher`] of [`KeyHasher`], for `HashMap<Key, _, KeyHasherBuilder>`.
pub type KeyHasherBuilder = std::hash::BuildHasherDefault<KeyHasher>;

/// postcard's output into [`ArgBytes`]'s stack buffer. postcard writes a number through a
/// slice of 1 to 10 bytes; a slice's usual copy calls `memcpy`, which costs more than the
/// rest of encoding a number, so short slices are copied inline.
struct OntoStack<'a> {
    buffer: &'a mut [u8; 128],
    len: usize,
}

impl postcard::ser_flavors::Flavor for OntoStack<'_> {
    type Output = usize;

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        let slot = self
            .buffer
            .get_mut(self.len)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = byte;
        self.len += 1;
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        let end = self.len + bytes.len();
        let target = self
            .buffer
            .get_mut(self.len..end)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        copy_short(target, bytes);
        self.len = end;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// `target.copy_from_slice(source)` (same lengths), without a `memcpy` call for up to 16
/// bytes: two overlapping words, first and last, or single bytes.
#[inline(always)]
fn copy_short(target: &mut [u8], source: &[u8]) {
    let n = source.len();
    match n {
        0 => {}
        // First, middle and last: every byte of 1 to 3 (a loop would become a `memcpy`).
        1..4 => {
            for at in [0, n / 2, n - 1] {
                target[at] = source[at];
            }
        }
        4..8 => {
            let (first, last) = (word::<4>(source, 0), word::<4>(source, n - 4));
            target[..4].copy_from_slice(&first);
            target[n - 4..].copy_from_slice(&last);
        }
        8..=16 => {
            let (first, last) = (word::<8>(source, 0), word::<8>(source, n - 8));
            target[..8].copy_from_slice(&first);
            target[n - 8..].copy_from_slice(&last);
        }
        _ => target.copy_from_slice(source),
    }
}

#[inline(always)]
fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().expect("in bounds")
}

fn encode_error(e: &postcard::Error) -> Error {
    Error::encode("arguments", e.clone())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Appends `bytes` to `out` as lowercase hex digits.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// The identity of one memoized function in a store: its name (module path + function name)
/// and an optional user version that invalidates old entries when the code changes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// `name` (for example `"my_crate::pricing::quote"`), and `version` if any, as
    /// `"name@version"`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty name or one with control characters.
    pub fn new(name: &str, version: Option<&str>) -> Result<Namespace, Error> {
        let check = |param: &'static str, text: &str| {
            if text.is_empty() {
                return Err(Error::config(param, "must not be empty"));
            }
            if text.chars().any(char::is_control) {
                return Err(Error::config(
                    param,
                    format!("{text:?} contains control characters"),
                ));
            }
            Ok(())
        };
        check("name", name)?;
        match version {
            None => Ok(Namespace(name.to_owned())),
            Some(v) => {
                check("version", v)?;
                Ok(Namespace(format!("{name}@{v}")))
            }
        }
    }

    /// The namespace as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        let a = Key::of(&(1u32, "x")).unwrap();
        assert_eq!(a, Key::of(&(1u32, "x")).unwrap());
        assert_ne!(a, Key::of(&(2u32, "x")).unwrap());
        // Pinned: the derivation must never change silently (bump KEY_FORMAT_VERSION instead).
        // SHA-256 of [1, 1, 2] (format version 1, then postcard's varints 1 and 2).
        use sha2::{Digest, Sha256};
        let expected: [u8; 32] = Sha256::digest([1u8, 1, 2]).into();
        assert_eq!(Key::of(&(1u64, 2u64)).unwrap(), Key::from_bytes(expected));
        assert_eq!(
            Key::of(&(1u64, 2u64)).unwrap().to_hex(),
            "5e98aaa886032724db1ffd795b2f63b93a1d90f236e77eabfcc2913e4dd6e1d6"
        );
        assert_eq!(Key::from_hex(&a.to_hex()), Some(a));
        assert_eq!(Key::from_hex("zz"), None);
        let signed = format!("+{}", &a.to_hex()[1..]);
        assert_eq!(Key::from_hex(&signed), None, "a sign is not a hex digit");
        assert_eq!(Key::from_hex(&"+f".repeat(32)), None);
    }

    /// The stack encoding is postcard's, byte for byte, at every length of every piece
    /// (numbers of each varint width, strings across the inline-copy sizes, the spill to
    /// the heap).
    #[test]
    fn stack_encoding_is_postcards() {
        let check = |value: &(u64, i32, String, Vec<u8>)| {
            let mut expected = vec![KEY_FORMAT_VERSION];
            expected.extend(postcard::to_stdvec(value).unwrap());
            assert_eq!(
                ArgBytes::of(value).unwrap().as_bytes(),
                expected,
                "{value:?}"
            );
        };
        for shift in 0..64 {
            for len in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 40, 200] {
                let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
                let bytes = vec![shift as u8; len];
                check(&(1u64 << shift, -(1i32 << (shift % 31)), text, bytes));
            }
        }
    }

    #[test]
    fn large_arguments_hash_like_small_ones() {
        let big = vec![7u8; 10_000];
        assert_eq!(Key::of(&big).unwrap(), Key::of(&big.clone()).unwrap());
    }

    #[test]
    fn namespaces_validate() {
        assert_eq!(
            Namespace::new("m::f", Some("2")).unwrap().as_str(),
            "m::f@2"
        );
        assert!(Namespace::new("", None).is_err());
        assert!(Namespace::new("a\nb", None).is_err());
    }
}
