//! Gateway API durations (GEP-2257): one to four `<number><unit>` parts, units `h`, `m`, `s`, `ms`, numbers of
//! at most five digits: `1h`, `10s`, `500ms`, `1m30s`. See
//! <https://gateway-api.sigs.k8s.io/geps/gep-2257/>.

use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;

/// Parses a Gateway API duration; `None` when `text` is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    static WHOLE: OnceLock<Regex> = OnceLock::new();
    static PART: OnceLock<Regex> = OnceLock::new();
    let whole = WHOLE
        .get_or_init(|| Regex::new(r"^(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}$").expect("static regex"));
    if !whole.is_match(text) {
        return None;
    }
    let part = PART.get_or_init(|| Regex::new(r"([0-9]{1,5})(ms|h|m|s)").expect("static regex"));
    let mut total = Duration::ZERO;
    for cap in part.captures_iter(text) {
        let n: u64 = cap[1].parse().ok()?;
        total += match &cap[2] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            _ => Duration::from_millis(n),
        };
    }
    Some(total)
}
