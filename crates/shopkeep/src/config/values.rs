//! Parsers for configuration values that arrive either as TOML values or as environment strings.

use std::time::Duration;

/// A raw configuration value and where it came from.
#[derive(Debug, Clone)]
pub enum Raw {
    /// From `shopkeep.toml`.
    Toml(toml::Value),
    /// From a `SHOPKEEP_*` variable.
    Env(String),
}

impl Raw {
    /// The value as the user wrote it, for error messages.
    pub fn shown(&self) -> String {
        match self {
            Raw::Toml(toml::Value::String(s)) | Raw::Env(s) => format!("{s:?}"),
            Raw::Toml(v) => v.to_string(),
        }
    }

    /// A string value (TOML string or any environment value).
    pub fn string(&self) -> Option<String> {
        match self {
            Raw::Toml(toml::Value::String(s)) | Raw::Env(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// An unsigned integer (TOML integer or a decimal environment value).
    pub fn uint(&self) -> Option<u64> {
        match self {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
            Raw::Toml(toml::Value::String(s)) | Raw::Env(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A boolean (TOML bool, or `true/false/1/0/yes/no/on/off` from the environment).
    pub fn bool(&self) -> Option<bool> {
        match self {
            Raw::Toml(toml::Value::Boolean(b)) => Some(*b),
            Raw::Env(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A list of strings: a TOML array, or a comma-separated environment value.
    pub fn list(&self) -> Option<Vec<String>> {
        match self {
            Raw::Toml(toml::Value::Array(a)) => {
                a.iter().map(|v| v.as_str().map(str::to_string)).collect()
            }
            Raw::Toml(toml::Value::String(s)) | Raw::Env(s) => Some(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            _ => None,
        }
    }

    /// A duration: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"30d"`, or a whole number of seconds.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok().map(Duration::from_secs),
            _ => parse_duration(&self.string()?),
        }
    }

    /// A byte size: `"512KiB"`, `"1MiB"`, `"2MB"`, or a whole number of bytes.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
            _ => parse_bytes(&self.string()?),
        }
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "d" => n.checked_mul(86_400).map(Duration::from_secs),
        _ => None,
    }
}

/// Parses `1024`, `512KiB`, `1MiB`, `1GiB`, `2KB`, `2MB`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Shows a duration the way the parser reads it back.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(86_400_000) && ms > 0 {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Edit distance, for "did you mean" hints on unknown keys.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back_as_written() {
        for s in ["250ms", "30s", "5m", "2h", "0s"] {
            assert_eq!(show_duration(parse_duration(s).unwrap()), s);
        }
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5 years"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn byte_sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1MiB"), Some(1 << 20));
        assert_eq!(parse_bytes("512kib"), Some(512 << 10));
        assert_eq!(parse_bytes("2MB"), Some(2_000_000));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("1 parsec"), None);
        assert_eq!(parse_bytes("99999999999999999999GiB"), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("listen", "listne"), 2);
        assert_eq!(distance("data_dir", "data_dir"), 0);
        assert_eq!(distance("", "abc"), 3);
    }
}
