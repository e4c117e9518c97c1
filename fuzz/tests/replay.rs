//! Every committed corpus and regression input, replayed through its fuzz target on stable (`make test`
//! runs this): a bug found by fuzzing stays fixed. Inputs live in `fuzz/corpus/<target>/` (seeds, see
//! `fuzz/README.md`) and `fuzz/regressions/<target>/` (each named after the bug it found).

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("webhook_admission", fuzz::webhook_admission),
    ("webhook_mutate", fuzz::webhook_mutate),
    ("webhook_inject", fuzz::webhook_inject),
    ("go_parsers", fuzz::go_parsers),
    ("credproxy_config", fuzz::credproxy_config),
    ("credproxy_sts", fuzz::credproxy_sts),
];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn replay(name: &str, target: Target) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(&root.join(kind).join(name)) {
            let data = std::fs::read(&path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                panic!("{name}: {} fails: {message}", path.display());
            }
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_a_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in TARGETS {
        let seeds = inputs(&root.join("corpus").join(name)).len();
        assert!(
            seeds >= 3,
            "{name}: only {seeds} seeds in fuzz/corpus/{name}"
        );
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .exists(),
            "{name}: no fuzz_targets/{name}.rs"
        );
    }
}

#[test]
fn webhook_admission_corpus() {
    replay("webhook_admission", fuzz::webhook_admission);
}

#[test]
fn webhook_mutate_corpus() {
    replay("webhook_mutate", fuzz::webhook_mutate);
}

#[test]
fn webhook_inject_corpus() {
    replay("webhook_inject", fuzz::webhook_inject);
}

#[test]
fn go_parsers_corpus() {
    replay("go_parsers", fuzz::go_parsers);
}

#[test]
fn credproxy_config_corpus() {
    replay("credproxy_config", fuzz::credproxy_config);
}

#[test]
fn credproxy_sts_corpus() {
    replay("credproxy_sts", fuzz::credproxy_sts);
}
