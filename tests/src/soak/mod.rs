//! Building blocks of the fault soak (`make soak`, `tests/src/bin/soak.rs`): fault injectors in front of real
//! peers ([`faults`]), per-process RSS and open-fd sampling from `/proc` ([`sampler`]), and the log scan for
//! secrets ([`scan`]).
//!
//! Times are Unix seconds as `f64` throughout, so the soak's own records, the processes' log timestamps and
//! the credentials' `Expiration` compare directly.

pub mod faults;
pub mod sampler;
pub mod scan;

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Parses a UTC RFC 3339 timestamp (`2026-11-27T17:40:00Z`, optional fraction, `Z` or `+00:00`) into Unix
/// seconds. Other offsets are not used by the processes the soak reads, so they are rejected (`None`).
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let text = text.trim();
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>());
    let (hour, minute, second) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let fraction: f64 = if fraction.is_empty() {
        0.0
    } else {
        format!("0.{fraction}").parse().ok()?
    };
    // Days from civil (Howard Hinnant's algorithm), 1970-01-01 = 0.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) as f64 + fraction)
}

/// The text with ANSI escape sequences (`ESC [ … letter`) removed.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc_timestamps_become_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:01Z"), Some(951_868_801.0));
        assert_eq!(
            parse_rfc3339("2026-11-27T17:40:00.5+00:00"),
            Some(1_795_801_200.5)
        );
        assert_eq!(parse_rfc3339("2026-11-27T17:40:00+02:00"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn ansi_colours_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[2mts\u{1b}[0m INFO x"), "ts INFO x");
    }
}
