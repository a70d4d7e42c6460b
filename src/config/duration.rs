//! Human durations in config files: `500ms`, `2s`, `5m`, `2h`, `1d`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A `std::time::Duration` written as `2s` in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
}

/// The longest duration a config may give: 100 years.
const MAX_SECS: f64 = 100.0 * 365.0 * 86400.0;

/// Parses `10ms`, `2s`, `5m`, `2h`, `1d` (also `1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration `{s}` needs a unit: ms, s, m, h or d"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("duration `{s}` does not start with a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("unknown duration unit `{unit}` (use ms, s, m, h or d)")),
    };
    // Bounded well below what Duration holds: a settle window or a lease is
    // added to `Instant::now()`, which panics on overflow (fuzzing found
    // `settle = "99999999999999999999s"` panicking at load).
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("duration `{s}` is out of range (at most 100 years)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"2s\", \"5m\" or \"2h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        for s in ["99999999999999999999s", "1e400s", "4000000000d", "101d"] {
            let r = std::panic::catch_unwind(|| parse_duration(s));
            assert!(r.is_ok(), "{s} panicked");
        }
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("36500d").is_ok());
        assert!(parse_duration("36501d").is_err());
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
