//! Go-compatible parsing, in one place: what upstream's flags, annotations and fields accept is decided by
//! Go's standard library, so these follow it (and are fuzzed against their documented behaviour:
//! `fuzz/fuzz_targets/go_parsers.rs`).
//!
//! - flags (`pflag`): [`go_bool`], [`go_int`] (base 0), [`go_int32`], [`go_uint`], [`go_duration`];
//! - annotations: [`parse_bool`] (`strconv.ParseBool`), [`parse_int64_base10`] (`strconv.ParseInt(s, 10, 64)`),
//!   [`csv_first_record`] (`encoding/csv`, `skip-containers`);
//! - paths: [`clean_path`] (`path.Clean`), [`clean_join`] (`filepath.Join`).

use std::time::Duration;

/// Go `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?} (use true or false)")),
    }
}

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-`0` prefixes, `_` separators
/// only with a prefix.
pub fn go_int(s: &str) -> Result<i64, String> {
    let err = || format!("invalid integer {s:?}");
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return Err(err());
    }
    let digits = if prefixed {
        if digits.ends_with('_') || digits.contains("__") {
            return Err(err());
        }
        digits.replace('_', "")
    } else {
        digits
    };
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|_| err())?;
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(err());
        }
        Ok((magnitude as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(magnitude).map_err(|_| err())
    }
}

pub fn go_int32(s: &str) -> Result<i32, String> {
    let v = go_int(s)?;
    i32::try_from(v).map_err(|_| format!("invalid integer {s:?} (out of range)"))
}

pub fn go_uint(s: &str) -> Result<u64, String> {
    let v = go_int(s)?;
    u64::try_from(v).map_err(|_| format!("invalid unsigned integer {s:?}"))
}

/// A parsed Go duration (signed nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoDuration(pub i64);

impl GoDuration {
    /// Negative durations behave like zero upstream (`> 0` checks), so they become zero.
    pub fn clamped(self) -> Duration {
        Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }
}

/// Go `time.ParseDuration` (Go 1.22 `time/format.go`, step for step): `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or
/// `0`; units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`. Fraction digits beyond what fits in 63 bits are
/// ignored, and a fraction is scaled in `f64`, exactly as Go does: `0.999999999999999999999999999999s` is 1s.
pub fn go_duration(s: &str) -> Result<GoDuration, String> {
    const LIMIT: u64 = 1 << 63;
    let err = || format!("invalid duration {s:?} (examples: 0s, 100ms, 1m0s, 1h)");
    let mut rest = s.as_bytes();
    let mut negative = false;
    if let Some((&sign, after)) = rest.split_first() {
        if sign == b'-' || sign == b'+' {
            negative = sign == b'-';
            rest = after;
        }
    }
    if rest == b"0" {
        return Ok(GoDuration(0));
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    while let Some(&first) = rest.first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(err());
        }
        // Integer part: an overflow is an error.
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &digit in &rest[..digits] {
            if whole > LIMIT / 10 {
                return Err(err());
            }
            whole = whole * 10 + u64::from(digit - b'0');
            if whole > LIMIT {
                return Err(err());
            }
        }
        let pre = digits > 0;
        rest = &rest[digits..];
        // Fraction: digits that no longer fit are skipped.
        let (mut fraction, mut scale, mut post) = (0u64, 1f64, false);
        if rest.first() == Some(&b'.') {
            rest = &rest[1..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            post = digits > 0;
            let mut overflow = false;
            for &digit in &rest[..digits] {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(digit - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            rest = &rest[digits..];
        }
        if !pre && !post {
            return Err(err());
        }
        let unit_len = rest
            .iter()
            .take_while(|&&b| b != b'.' && !b.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(err());
        }
        let unit: u64 = match &rest[..unit_len] {
            b"ns" => 1,
            // "µs" (U+00B5) and "μs" (U+03BC)
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        if whole > LIMIT / unit {
            return Err(err());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // Go: v += uint64(float64(f) * (float64(unit) / scale)); the product is at most 3.6e12.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(err());
            }
        }
        total = total.wrapping_add(value); // Go adds in uint64 too
        if total > LIMIT {
            return Err(err());
        }
    }
    if negative {
        return Ok(GoDuration((total as i64).wrapping_neg()));
    }
    if total > LIMIT - 1 {
        return Err(err());
    }
    Ok(GoDuration(total as i64))
}

/// Go `strconv.ParseInt(s, 10, 64)`: optional sign, ASCII digits only.
pub fn parse_go_int64_base10(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go `filepath.Join` (which cleans the result) for Unix paths.
pub fn clean_join(dir: &str, file: &str) -> String {
    let joined = match (dir.is_empty(), file.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => file.to_string(),
        (false, true) => dir.to_string(),
        (false, false) => format!("{dir}/{file}"),
    };
    clean_path(&joined)
}

/// Go `path.Clean`.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Go `encoding/csv` (default options) reading the first record: comma-separated, `"` quoting with `""`
/// escapes, no trimming, empty lines skipped, `\r\n` → `\n`. `None` on a parse error or empty input.
pub fn csv_first_record(input: &str) -> Option<Vec<String>> {
    let mut text = input.replace("\r\n", "\n");
    // Go drops one `\r` right before EOF from the last line it reads, before parsing it (a `\r` inside a
    // quoted field that ends the input is kept: the line then ends with the quote). Found by
    // fuzz/tests/go_differential.rs.
    if text.ends_with('\r') {
        text.pop();
    }
    let mut chars = text.trim_start_matches('\n').chars().peekable();
    chars.peek()?;
    let mut fields = Vec::new();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return None, // unterminated quoted field
                    Some('"') => match chars.peek() {
                        Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some(',') | Some('\n') | None => break,
                        Some(_) => return None, // extraneous quote
                    },
                    Some(c) => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '\n' {
                    break;
                }
                if c == '"' {
                    return None; // bare quote in a non-quoted field
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests;
