//! Human-readable byte sizes (`"10MB"`), as cachier's `parse_bytes`.

use crate::Error;

/// A size given as a number of bytes or as text such as `"10MB"`, `"1.5 kb"` or `"512"`.
///
/// Units are B, KB, MB, GB, TB (powers of 1024, case-insensitive, default B), as in cachier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSpec {
    /// A number of bytes.
    Bytes(u64),
    /// Text to parse.
    Text(String),
}

impl From<u64> for SizeSpec {
    fn from(bytes: u64) -> Self {
        SizeSpec::Bytes(bytes)
    }
}
impl From<usize> for SizeSpec {
    fn from(bytes: usize) -> Self {
        SizeSpec::Bytes(bytes as u64)
    }
}
impl From<&str> for SizeSpec {
    fn from(text: &str) -> Self {
        SizeSpec::Text(text.to_owned())
    }
}
impl From<String> for SizeSpec {
    fn from(text: String) -> Self {
        SizeSpec::Text(text)
    }
}

impl SizeSpec {
    /// The size in bytes; `param` names the parameter in the error.
    pub fn to_bytes(&self, param: &'static str) -> Result<u64, Error> {
        match self {
            SizeSpec::Bytes(n) => Ok(*n),
            SizeSpec::Text(text) => {
                parse_bytes(text).map_err(|message| Error::config(param, message))
            }
        }
    }
}

/// Parses `"10MB"`-style sizes; the error message quotes the input.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!("invalid size value {text:?}: expected a number with an optional unit B, KB, MB, GB or TB, such as \"10MB\"")
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty()
        || number.starts_with('.')
        || number.ends_with('.')
        || number.matches('.').count() > 1
    {
        return Err(invalid());
    }
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return Err(invalid()),
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn parses_cachier_sizes() {
        assert_eq!(parse_bytes("10B"), Ok(10));
        assert_eq!(parse_bytes("1KB"), Ok(1024));
        assert_eq!(parse_bytes(" 10 mb "), Ok(10 << 20));
        assert_eq!(parse_bytes("1.5KB"), Ok(1536));
        assert_eq!(parse_bytes("2gb"), Ok(2 << 30));
        assert_eq!(parse_bytes("1TB"), Ok(1 << 40));
        assert_eq!(parse_bytes("512"), Ok(512));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "invalid", "123XB", "abc123", "", "MB", ".5MB", "1..2KB", "10XB", "-1KB",
        ] {
            let err = parse_bytes(bad).unwrap_err();
            assert!(err.contains("invalid size value"), "{bad}: {err}");
        }
    }
}
