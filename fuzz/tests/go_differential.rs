//! The webhook's Go-compatible parsers (webhook/src/go.rs) agree with Go itself on every `go_parsers`
//! corpus and regression input: `fuzz/go-differential/main.go` computes Go's answers (needs the Go toolchain
//! the peers are built with, so it runs under `make test`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use webhook::go;

fn inputs() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    // `PODCRED_GO_PARSERS_EXTRA=<dir>` adds a directory of inputs, e.g. what `make fuzz` found.
    let extra = std::env::var_os("PODCRED_GO_PARSERS_EXTRA").map(std::path::PathBuf::from);
    let dirs = [
        Some(root.join("corpus/go_parsers")),
        Some(root.join("regressions/go_parsers")),
        extra,
    ];
    for dir in dirs.into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            out.push(String::from_utf8_lossy(&data).into_owned());
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "needs the Go toolchain: run make test"]
fn go_parsers_agree_with_go_on_every_corpus_input() {
    let inputs = inputs();
    assert!(inputs.len() >= 20, "only {} inputs", inputs.len());
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("go-differential/main.go");
    let mut child = Command::new("go")
        .args(["run", program.to_str().unwrap()])
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("go run (the Go toolchain is installed with the test peers)");
    // Written from another thread: Go answers as it reads, and a full stdout pipe would block both sides.
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<String> = inputs
        .iter()
        .map(|input| serde_json::to_string(input).unwrap())
        .collect();
    let writer = std::thread::spawn(move || {
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "go run failed");
    let answers: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), inputs.len());
    let mut mismatches = Vec::new();
    for (input, go) in inputs.iter().zip(&answers) {
        let mut check = |what: &str, ours: Value, theirs: &Value| {
            if ours != *theirs {
                mismatches.push(format!("{what}({input:?}): ours {ours}, Go {theirs}"));
            }
        };
        check(
            "ParseDuration",
            go::go_duration(input).ok().map(|d| d.0).into(),
            &go["duration"],
        );
        check(
            "ParseInt(s, 0, 64)",
            go::go_int(input).ok().into(),
            &go["int"],
        );
        check(
            "ParseInt(s, 10, 64)",
            go::parse_go_int64_base10(input).into(),
            &go["int10"],
        );
        check("ParseBool", go::parse_bool(input).into(), &go["bool"]);
        let csv = go::csv_first_record(input);
        let go_csv = if go["csv_ok"] == true {
            go["csv"].clone()
        } else {
            Value::Null
        };
        check("csv first record", csv.into(), &go_csv);
        check("path.Clean", go::clean_path(input).into(), &go["clean"]);
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches with Go:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
