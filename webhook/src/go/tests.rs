//! Go-compatibility cases. Values marked "Go" were produced by Go 1.26 (`time.ParseDuration`,
//! `strconv.ParseInt(s, 0, 64)`, `encoding/csv`) on the same input.

use super::*;

#[test]
fn csv_first_record_follows_go_encoding_csv() {
    let p = |s: &str| csv_first_record(s);
    let v = |xs: &[&str]| Some(xs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(p("sidecar"), v(&["sidecar"]));
    assert_eq!(p("a,b"), v(&["a", "b"]));
    assert_eq!(p("a, b"), v(&["a", " b"]), "no trimming");
    assert_eq!(p("\"a,b\",c"), v(&["a,b", "c"]));
    assert_eq!(p("\"say \"\"hi\"\"\""), v(&["say \"hi\""]));
    assert_eq!(p("a,b\nc,d"), v(&["a", "b"]), "first record only");
    assert_eq!(p("\n\na\n"), v(&["a"]), "empty lines skipped");
    assert_eq!(p("a,"), v(&["a", ""]));
    assert_eq!(p("a\r\nb"), v(&["a"]));
    assert_eq!(p("\"multi\nline\",x"), v(&["multi\nline", "x"]));
    assert_eq!(p(""), None);
    assert_eq!(p("\n"), None);
    assert_eq!(p("a\"b"), None, "bare quote");
    assert_eq!(p("\"a\"b"), None, "extraneous quote");
    assert_eq!(p("\"unterminated"), None);
    // Go (found by fuzz/tests/go_differential.rs): a `\r` right before EOF is dropped from the raw line,
    // not from the parsed field.
    assert_eq!(p("\r"), None);
    assert_eq!(p("\"c\r\""), v(&["c\r"]));
    assert_eq!(p("a\r"), v(&["a"]));
}

#[test]
fn paths_are_cleaned_like_go() {
    assert_eq!(
        clean_join("/var/run/secrets/eks.amazonaws.com/serviceaccount", "token"),
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    );
    assert_eq!(clean_join("/a/b/", "c"), "/a/b/c");
    assert_eq!(clean_join("/a//b", "../c"), "/a/c");
    assert_eq!(clean_join("/", "token"), "/token");
    assert_eq!(clean_path("/.."), "/");
    assert_eq!(clean_path("a/../.."), "..");
    assert_eq!(clean_path(""), ".");
}

#[test]
fn go_base10_ints() {
    assert_eq!(parse_go_int64_base10("3600"), Some(3600));
    assert_eq!(parse_go_int64_base10("+3600"), Some(3600));
    assert_eq!(parse_go_int64_base10("-1"), Some(-1));
    for bad in [
        "",
        "0x10",
        "1_000",
        " 1",
        "1.0",
        "+",
        "99999999999999999999",
    ] {
        assert_eq!(parse_go_int64_base10(bad), None, "{bad:?}");
    }
}

#[test]
fn durations_follow_go_time_parse_duration() {
    // (input, Go's result in nanoseconds, None = error)
    let cases: &[(&str, Option<i64>)] = &[
        ("0", Some(0)),
        ("+0", Some(0)),
        ("-0", Some(0)),
        ("1.5h", Some(5_400_000_000_000)),
        ("2h45m0.5s", Some(9_900_500_000_000)),
        ("-1s", Some(-1_000_000_000)),
        ("10µs", Some(10_000)),
        ("1μs", Some(1_000)),
        ("300ns", Some(300)),
        (".5s", Some(500_000_000)),
        // Go: the fraction keeps the digits that fit in 63 bits and is scaled in f64.
        ("0.999999999999999999999999999999s", Some(1_000_000_000)),
        ("0.999999999999999999999999999999h", Some(3_600_000_000_000)),
        ("1.0000000000000000000000001h", Some(3_600_000_000_000)),
        ("0.1234567891234s", Some(123_456_789)),
        ("0.33333333333333333333h", Some(1_200_000_000_000)),
        ("00.00000000000000000000000000000000000000009s", Some(0)),
        (
            "4.000000000000000000000000000000000000000000001h",
            Some(14_400_000_000_000),
        ),
        ("9223372036854775807ns", Some(i64::MAX)),
        ("9223372036854775808ns", None),
        ("-9223372036854775808ns", Some(i64::MIN)),
        ("2562047h47m16.854775807s", Some(i64::MAX)),
        ("2562047h47m16.854775808s", None),
        // Go adds the terms in uint64, so two 2^63 terms wrap to 0.
        ("9223372036854775808ns9223372036854775808ns", Some(0)),
        (".s", None),
        ("1e3s", None),
        ("", None),
        ("1", None),
        ("5x", None),
        ("s", None),
        ("1.s.", None),
        ("-", None),
        ("99999999999h", None),
        ("1 s", None),
    ];
    for (input, expected) in cases {
        assert_eq!(go_duration(input).ok().map(|d| d.0), *expected, "{input:?}");
    }
}

#[test]
fn integers_follow_go_parse_int_base_0() {
    let cases: &[(&str, Option<i64>)] = &[
        ("86400", Some(86400)),
        ("+5", Some(5)),
        ("-5", Some(-5)),
        ("0x1F", Some(31)),
        ("0o17", Some(15)),
        ("017", Some(15)),
        ("0b101", Some(5)),
        ("0x_1_0", Some(16)),
        ("0_7", Some(7)),
        ("00", Some(0)),
        ("0", Some(0)),
        ("-9223372036854775808", Some(i64::MIN)),
        ("-0x8000000000000000", Some(i64::MIN)),
        ("_7", None),
        ("0b", None),
        ("", None),
        ("1_000", None),
        ("abc", None),
        ("9223372036854775808", None),
        ("0x", None),
        ("--1", None),
        ("1.5", None),
    ];
    for (input, expected) in cases {
        assert_eq!(go_int(input).ok(), *expected, "{input:?}");
    }
}

#[test]
fn booleans_follow_go_parse_bool() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_bool(t), Some(true));
        assert_eq!(go_bool(t), Ok(true));
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_bool(f), Some(false));
    }
    for n in ["", "yes", "tRUE", " true", "2"] {
        assert_eq!(parse_bool(n), None);
        assert!(go_bool(n).is_err());
    }
}
