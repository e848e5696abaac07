//! Human-readable units in the configuration: durations (`"30s"`, `"5m"`) and byte sizes
//! (`"25MiB"`, `"512KiB"`, `"1GB"`).
//!
//! What it does: newtypes that deserialize from those strings (or from plain integers: seconds
//! and bytes) and print back in the same form.
//!
//! What it does not do: no validation of ranges beyond the two below; that is the
//! configuration's job.
//!
//! Invariants: `ByteSize` is a count of octets that fits a `u64` (a size that overflows is an
//! error, not a wrap); `HumanDuration` wraps a `std::time::Duration` of at most
//! [`HumanDuration::MAX`] (100 years), so `Instant::now() + d` can never overflow.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as `"30s"`, `"5m"`, `"1h 30m"` (humantime) or an integer of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The longest duration a configuration may give: 100 years.
    pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

    /// A duration of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    /// `d`, if it is at most [`HumanDuration::MAX`].
    fn bounded(d: Duration, text: &str) -> Result<Self, String> {
        if d > Self::MAX {
            return Err(format!(
                "duration {text:?} is longer than the longest allowed, 100 years"
            ));
        }
        Ok(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("invalid duration {s:?}: {e} (write e.g. \"30s\", \"5m\", \"1h\")")
        })?;
        HumanDuration::bounded(d, s)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"5m\", or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                HumanDuration::bounded(Duration::from_secs(v), &v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A size in octets written as `"25MiB"`, `"64 KiB"`, `"1GB"`, `"512"` or an integer.
/// Binary suffixes (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (kB/KB, MB, GB, TB)
/// powers of 1000; `B` or no suffix means octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, unit) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{}", self.0 / unit, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("invalid size {s:?} (write e.g. \"25MiB\", \"64KiB\", \"1GB\")");
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"25MiB\", or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("25MiB", 25 << 20),
            ("64 KiB", 64 << 10),
            ("1GB", 1_000_000_000),
            ("512", 512),
            ("10b", 10),
            ("3kb", 3000),
        ] {
            assert_eq!(text.parse::<ByteSize>().unwrap().0, want, "{text}");
        }
        for bad in ["", "MiB", "12XB", "-1", "99999999999999999999"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert_eq!(ByteSize::mib(25).to_string(), "25MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn durations() {
        assert_eq!(
            "30s".parse::<HumanDuration>().unwrap(),
            HumanDuration::secs(30)
        );
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap(),
            HumanDuration::secs(300)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
        assert_eq!(HumanDuration::secs(300).to_string(), "5m");
    }

    #[derive(Debug, Deserialize)]
    struct T {
        d: Option<HumanDuration>,
        s: Option<ByteSize>,
    }

    #[test]
    fn extreme_values_are_errors_not_wraps() {
        // Sizes whose multiplication overflows a u64.
        for bad in ["10000000000TiB", "18446744073709551615KiB", "20000000TB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
            assert!(
                toml::from_str::<T>(&format!("s = \"{bad}\"")).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            "16777215TiB".parse::<ByteSize>().unwrap().0,
            16_777_215 << 40
        );
        assert!(toml::from_str::<T>("s = -1").is_err());
        let ok = toml::from_str::<T>("s = \"16777215TiB\"").unwrap();
        assert_eq!(ok.s, Some(ByteSize(16_777_215 << 40)));
        // Durations past 100 years, or past a u64 of seconds.
        for bad in [
            "101y",
            "1000000000y",
            "500000000000y",
            "99999999999999999999s",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
            assert!(
                toml::from_str::<T>(&format!("d = \"{bad}\"")).is_err(),
                "{bad}"
            );
        }
        assert!(toml::from_str::<T>(&format!("d = {}", i64::MAX)).is_err());
        assert!(toml::from_str::<T>("d = -1").is_err());
        let max = toml::from_str::<T>(&format!("d = {}", HumanDuration::MAX.as_secs()));
        assert_eq!(max.unwrap().d, Some(HumanDuration(HumanDuration::MAX)));
        let d = HumanDuration::MAX;
        let _ = std::time::Instant::now() + d;
    }
}
