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

/// Parses durations such as `"1h"`, `"30s"`, `"500ms"`, `"7d"`, `"1h30m"` or `"2.5s"` (units
/// `ms`, `s`, `m`, `h`, `d`, `w`; a bare number is seconds). The error message quotes the
/// input.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let invalid = || {
        format!("invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d, w), such as \"30s\", \"1h30m\" or \"7d\"")
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(seconds).map_err(|_| invalid());
    }
    let mut total = 0f64;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let seconds = match unit.trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            _ => return Err(invalid()),
        };
        total += value * seconds;
        rest = tail.trim_start();
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "abc", "10x", "h", "-1s", "1.2.3s", "5 parsecs"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }
}
