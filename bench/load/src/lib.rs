//! A load generator for shopkeep's HTTP API.
//!
//! Two scenarios: [`journey`] runs N virtual users at once through register, sign-in, orders,
//! their list and an admin's approval of each order; [`endpoint`] puts closed-loop load on one
//! endpoint with users made beforehand. Every request is checked against the status (and, where
//! it matters, the body) a correct server gives; anything else is counted as an error of its
//! step, never dropped. Results are a [`Report`]: per step count, errors by kind, latency
//! percentiles and throughput, printable as a table or serialisable as JSON.

pub mod client;
pub mod endpoint;
pub mod journey;
pub mod report;
pub mod stats;

pub use report::{Report, StepReport};

/// Parses a duration such as `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 500ms, 10s or 2m"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" | "min" => n * 60_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// A short random tag (6 hex characters) that keeps usernames of separate runs apart.
pub fn run_tag() -> String {
    let s = uuid::Uuid::now_v7().simple().to_string();
    s[s.len() - 6..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn run_tags_are_six_hex_characters() {
        let t = run_tag();
        assert_eq!(t.len(), 6);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
