//! Human-readable units in the configuration: durations (`"30s"`, `"5m"`) and byte sizes
//! (`"25MiB"`, `"512KiB"`, `"1GB"`).
//!
//! What it does: newtypes that deserialize from those strings (or from plain integers: seconds
//! and bytes) and print back in the same form.
//!
//! What it does not do: no validation of ranges; that is the configuration's job.
//!
//! Invariants: `ByteSize` is a count of octets; `Seconds` wraps a `std::time::Duration`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as `"30s"`, `"5m"`, `"1h 30m"` (humantime) or an integer of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// The longest duration a setting accepts: 100 years (of 365.25 days, as `"100y"`). Every deadline is `now + setting`, and
/// with this cap that sum can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000);

/// `d` if it is at most [`MAX_DURATION`].
fn capped(d: Duration) -> Result<HumanDuration, String> {
    match d <= MAX_DURATION {
        true => Ok(HumanDuration(d)),
        false => Err(format!(
            "duration {} is longer than 100 years",
            humantime::format_duration(d)
        )),
    }
}

impl HumanDuration {
    /// A duration of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
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
        humantime::parse_duration(s.trim())
            .map_err(|e| {
                format!("invalid duration {s:?}: {e} (write e.g. \"30s\", \"5m\", \"1h\")")
            })
            .and_then(capped)
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
                capped(Duration::from_secs(v)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                capped(Duration::from_secs(v)).map_err(E::custom)
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
        assert_eq!(
            "100y".parse::<HumanDuration>().unwrap().0,
            MAX_DURATION,
            "the longest accepted"
        );
        for huge in ["101y", "1000000000y", "18446744073709551615s"] {
            let e = huge.parse::<HumanDuration>().unwrap_err();
            assert!(
                e.contains("100 years") || e.contains("invalid"),
                "{huge}: {e}"
            );
        }
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            d: HumanDuration,
        }
        let e = toml::from_str::<T>("d = 9223372036854775807")
            .err()
            .unwrap();
        assert!(e.to_string().contains("100 years"), "{e}");
        assert_eq!(HumanDuration::secs(300).to_string(), "5m");
    }
}
