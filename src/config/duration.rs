//! Durations as people write them in ccscope.toml: `500ms`, `10s`, `2m`, `1h`, `1m30s`, up to
//! [`MAX_DURATION`] (a day): every duration is something ccscope waits for, and a wait of years
//! is a typo, not a plan.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration read from the configuration; serialises back in the same notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
}

/// The longest duration ccscope accepts, in the configuration and on the command line.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Why a duration did not parse; reads well after "invalid duration".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("it is empty")]
    Empty,
    #[error("`{0}` has no unit")]
    MissingUnit(String),
    #[error("`{0}` is not a unit")]
    UnknownUnit(String),
    #[error("`{0}` is not a number")]
    BadNumber(String),
    #[error("it is longer than 24h, the longest wait ccscope accepts")]
    TooLong,
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `1.5s` and sums of them (`1m30s`). `0` alone is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(DurationError::BadNumber(rest.to_string()));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit = unit.trim();
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(number.to_string()));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| DurationError::BadNumber(number.to_string()))?;
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        let part = Duration::try_from_secs_f64(value * seconds_per_unit)
            .map_err(|_| DurationError::TooLong)?;
        total = total.checked_add(part).ok_or(DurationError::TooLong)?;
        rest = tail.trim_start();
    }
    if total > MAX_DURATION {
        return Err(DurationError::TooLong);
    }
    Ok(total)
}

/// Formats a duration the way it would be written in the configuration.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0".to_string()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"10s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(|e| {
                    let hint = match e {
                        DurationError::TooLong => "write at most \"24h\"",
                        _ => "write it like \"500ms\", \"10s\" or \"2m\"",
                    };
                    E::custom(format!("invalid duration \"{v}\": {e}; {hint}"))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{v}s\" or \"{v}ms\", not {v}"
                )))
            }
        }
        d.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("10"),
            Err(DurationError::MissingUnit("10".into()))
        );
        assert_eq!(
            parse_duration("10y"),
            Err(DurationError::UnknownUnit("y".into()))
        );
        assert_eq!(
            parse_duration("fast"),
            Err(DurationError::BadNumber("fast".into()))
        );
        assert_eq!(
            parse_duration("1..2s"),
            Err(DurationError::BadNumber("1..2".into()))
        );
    }

    #[test]
    fn a_day_is_the_longest_duration() {
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("23h59m60s"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("100000h"), Err(DurationError::TooLong));
        assert_eq!(parse_duration("24h1ms"), Err(DurationError::TooLong));
        assert_eq!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn formats_round_trip() {
        for text in ["500ms", "10s", "2m", "1h", "0"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
