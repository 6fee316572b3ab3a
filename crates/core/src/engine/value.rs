//! What of a function's result is stored, and how it is rebuilt: every value, or the `Ok`
//! values of a fallible function.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{codec, Error};

/// How a function's result is cached: which part is stored, and how it is rebuilt.
/// The bytes to store for a result, `None` when it must not be cached.
pub(super) type Encoded = Option<Result<Vec<u8>, Error>>;

pub(super) struct ValueCodec<R> {
    /// `None` when the result must not be cached (an `Err`).
    /// Encodes a result with the preview of its arguments, if any.
    pub(super) encode: fn(&R, Option<&str>) -> Encoded,
    pub(super) decode: fn(&[u8]) -> Result<R, Error>,
    /// A copy of a result that is stored (for the near cache); `None` for one that is not.
    pub(super) clone_stored: fn(&R) -> Option<R>,
}

impl<R> Clone for ValueCodec<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for ValueCodec<R> {}

impl<V: Serialize + DeserializeOwned + Clone> ValueCodec<V> {
    /// Every value is cached.
    pub(super) fn plain() -> Self {
        ValueCodec {
            encode: encode_plain::<V>,
            decode: decode_plain::<V>,
            clone_stored: |value| Some(value.clone()),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Clone, E> ValueCodec<Result<T, E>> {
    /// `Ok` values are cached, errors never.
    pub(super) fn fallible() -> Self {
        ValueCodec {
            encode: encode_ok::<T, E>,
            decode: decode_ok::<T, E>,
            clone_stored: |result| result.as_ref().ok().map(|value| Ok(value.clone())),
        }
    }
}

pub(super) fn encode_plain<V: Serialize>(value: &V, preview: Option<&str>) -> Encoded {
    Some(codec::encode_with_preview(value, preview))
}
pub(super) fn decode_plain<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, Error> {
    codec::decode(bytes)
}
pub(super) fn encode_ok<T: Serialize, E>(result: &Result<T, E>, preview: Option<&str>) -> Encoded {
    result
        .as_ref()
        .ok()
        .map(|value| codec::encode_with_preview(value, preview))
}
pub(super) fn decode_ok<T: DeserializeOwned, E>(bytes: &[u8]) -> Result<Result<T, E>, Error> {
    codec::decode(bytes).map(Ok)
}
