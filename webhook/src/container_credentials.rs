//! EKS Pod Identity ("container credentials") config file, `--watch-container-credentials-config`
//! (spec §3.5): `{"identities":[{"namespace":"<ns>","serviceAccount":"<sa>"}, …]}`.
//!
//! Contract:
//! - [`parse`] is pure (Go `encoding/json` rules: case-insensitive keys, unknown keys ignored, type
//!   mismatches rejected); `webhook inject` can reuse it.
//! - [`ContainerCredentials`] holds the current identity set; [`ContainerCredentials::load_file`] applies
//!   upstream's reload rules: missing or empty file → cleared, malformed → previous set kept (logged),
//!   valid → replaced atomically.
//! - [`watch`] reloads on **any** event in the file's directory (so a ConfigMap volume's `..data` symlink
//!   swap is seen — upstream only reacted to events on the exact path) and re-checks every poll interval;
//!   unchanged bytes are not re-parsed or re-logged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use certs::watch::{watch_files, FileWatch, WatchError, WatchOptions};
use serde_json::Value;

/// A `(namespace, serviceAccount)` pair listed in the file.
pub type Identity = (String, String);

/// Why the file's content was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid container credentials config: {0}")]
pub struct ParseError(String);

fn field<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    // Go: case-insensitive match, last occurrence wins.
    object
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .next_back()
}

fn string_field(object: &serde_json::Map<String, Value>, name: &str) -> Result<String, ParseError> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ParseError(format!(
            "json: cannot unmarshal into Go struct field Identity.identities.{name} of type string"
        ))),
    }
}

/// Parse the file's content into the identity set.
pub fn parse(content: &str) -> Result<HashSet<Identity>, ParseError> {
    let value: Value = serde_json::from_str(content).map_err(|e| ParseError(e.to_string()))?;
    let root = match value {
        Value::Null => return Ok(HashSet::new()),
        Value::Object(root) => root,
        _ => return Err(ParseError(
            "json: cannot unmarshal non-object into Go value of type containercredentials.Config"
                .into(),
        )),
    };
    let identities =
        match field(&root, "identities") {
            None | Some(Value::Null) => return Ok(HashSet::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ParseError(
                "json: cannot unmarshal into Go struct field Config.identities of type []Identity"
                    .into(),
            )),
        };
    let mut set = HashSet::with_capacity(identities.len());
    for item in identities {
        match item {
            Value::Null => {
                set.insert((String::new(), String::new()));
            }
            Value::Object(object) => {
                set.insert((
                    string_field(object, "namespace")?,
                    string_field(object, "serviceAccount")?,
                ));
            }
            _ => {
                return Err(ParseError(
                    "json: cannot unmarshal non-object into Go struct field Config.identities of type Identity"
                        .into(),
                ))
            }
        }
    }
    Ok(set)
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadOutcome {
    /// Same bytes as the last attempt: nothing done.
    Unchanged,
    /// Missing or empty file: no identities.
    Cleared,
    Loaded(usize),
    /// Malformed: previous identities kept.
    Rejected(String),
}

/// The current identity set (empty when the feature is off).
#[derive(Debug, Default)]
pub struct ContainerCredentials {
    identities: RwLock<Arc<HashSet<Identity>>>,
    /// Bytes of the last attempted load (`None` = file missing).
    last_attempt: Mutex<Option<Option<Vec<u8>>>>,
    /// Loads that kept the previous set because the file was unreadable or malformed.
    rejected: AtomicU64,
}

impl ContainerCredentials {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Is `(namespace, service_account)` listed?
    pub fn contains(&self, namespace: &str, service_account: &str) -> bool {
        let set = self
            .identities
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // Avoid allocating a tuple of Strings per lookup for the common empty case.
        !set.is_empty() && set.contains(&(namespace.to_owned(), service_account.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.identities
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many loads so far were rejected (unreadable or malformed file, previous set kept).
    pub fn rejected_loads(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Replace the whole set.
    pub fn replace(&self, identities: HashSet<Identity>) {
        *self
            .identities
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(identities);
    }

    /// (Re)load from `path` with upstream's rules, logging the outcome.
    pub fn load_file(&self, path: &Path) -> LoadOutcome {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot read container credentials config file; keeping the previous identities");
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return LoadOutcome::Rejected(error.to_string());
            }
        };
        {
            let mut last = self
                .last_attempt
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.as_ref() == Some(&bytes) {
                return LoadOutcome::Unchanged;
            }
            *last = Some(bytes.clone());
        }
        match bytes {
            None => {
                tracing::info!(path = %path.display(), "Container credentials config file does not exist, clearing cache");
                self.replace(HashSet::new());
                LoadOutcome::Cleared
            }
            Some(bytes) if bytes.is_empty() => {
                tracing::info!("Container credentials config file is empty, clearing cache");
                self.replace(HashSet::new());
                LoadOutcome::Cleared
            }
            Some(bytes) => match std::str::from_utf8(&bytes)
                .map_err(|e| ParseError(e.to_string()))
                .and_then(parse)
            {
                Ok(identities) => {
                    let count = identities.len();
                    self.replace(identities);
                    tracing::info!(
                        identities = count,
                        "Successfully loaded container credentials config file"
                    );
                    LoadOutcome::Loaded(count)
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "keeping the previous container credentials identities");
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    LoadOutcome::Rejected(error.to_string())
                }
            },
        }
    }
}

/// Events within this window are handled by one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Load `path` now, then reload on any event in its directory and every `poll_interval`.
/// Failure to watch the directory is an error (upstream: fatal).
pub fn watch(
    credentials: Arc<ContainerCredentials>,
    path: PathBuf,
    poll_interval: Duration,
) -> Result<FileWatch, WatchError> {
    let options = WatchOptions::for_files(
        "container-credentials",
        [path.as_path()],
        DEBOUNCE,
        poll_interval,
    );
    tracing::info!(
        "Watching container credentials config file {}",
        path.display()
    );
    credentials.load_file(&path);
    let watch = watch_files(options, move || {
        credentials.load_file(&path);
    })?;
    Ok(watch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ns: &str, sa: &str) -> Identity {
        (ns.to_owned(), sa.to_owned())
    }

    #[test]
    fn parses_go_style() {
        let set = parse(
            r#"{"Identities":[{"namespace":"a","serviceAccount":"x"},{"NAMESPACE":"b","serviceaccount":"y","extra":1}],"other":true}"#,
        )
        .unwrap();
        assert_eq!(set, HashSet::from([pair("a", "x"), pair("b", "y")]));
        assert!(parse("null").unwrap().is_empty());
        assert!(parse(r#"{"identities":null}"#).unwrap().is_empty());
        assert!(parse("{}").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "{",
            "[]",
            r#"{"identities":{}}"#,
            r#"{"identities":["a/x"]}"#,
            r#"{"identities":[{"namespace":1}]}"#,
            " ",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn load_rules_missing_empty_malformed_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let cc = ContainerCredentials::new();
        assert_eq!(cc.load_file(&path), LoadOutcome::Cleared);
        std::fs::write(
            &path,
            r#"{"identities":[{"namespace":"a","serviceAccount":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(cc.load_file(&path), LoadOutcome::Loaded(1));
        assert!(cc.contains("a", "x"));
        assert!(!cc.contains("a", "y"));
        assert_eq!(cc.load_file(&path), LoadOutcome::Unchanged);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(cc.load_file(&path), LoadOutcome::Rejected(_)));
        assert!(cc.contains("a", "x"), "last good set kept");
        std::fs::write(&path, "").unwrap();
        assert_eq!(cc.load_file(&path), LoadOutcome::Cleared);
        assert!(!cc.contains("a", "x"));
        std::fs::write(
            &path,
            r#"{"identities":[{"namespace":"b","serviceAccount":"y"}]}"#,
        )
        .unwrap();
        assert_eq!(cc.load_file(&path), LoadOutcome::Loaded(1));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(cc.load_file(&path), LoadOutcome::Cleared);
        assert!(cc.is_empty());
    }
}
