//! Scans process logs for secrets the soak knows were in play.
//!
//! Contract: [`Secrets`] collects each secret with a label (what kind it is, never its value); [`scan`]
//! searches every log for each secret whole **and** for a 24-character window from its middle (so a
//! truncated or re-wrapped secret is found too; the middle of a JWT is its claims, not the common header),
//! with one Aho-Corasick automaton, and returns the findings as (log name, secret label, line number) —
//! never the secret.

use std::collections::BTreeMap;

use aho_corasick::AhoCorasick;

/// Secrets shorter than this are not searched for (they would match by chance).
pub const MIN_SECRET_LEN: usize = 16;
const WINDOW: usize = 24;

/// The secrets to look for.
#[derive(Default)]
pub struct Secrets {
    values: BTreeMap<String, &'static str>,
}

impl Secrets {
    pub fn add(&mut self, label: &'static str, value: &str) {
        let value = value.trim();
        if value.len() >= MIN_SECRET_LEN {
            self.values.insert(value.to_string(), label);
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many secrets of each kind are searched for.
    pub fn kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut kinds = BTreeMap::new();
        for label in self.values.values() {
            *kinds.entry(*label).or_default() += 1;
        }
        kinds
    }
}

/// One secret found in one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub log: String,
    pub secret: &'static str,
    pub line: usize,
}

/// Searches `logs` (name, text) for `secrets`.
pub fn scan(secrets: &Secrets, logs: &[(String, String)]) -> Vec<Finding> {
    let mut patterns = Vec::new();
    let mut labels = Vec::new();
    for (value, label) in &secrets.values {
        patterns.push(value.clone());
        labels.push(*label);
        if value.len() >= 2 * WINDOW && value.is_ascii() {
            let middle = value.len() / 2 - WINDOW / 2;
            patterns.push(value[middle..middle + WINDOW].to_string());
            labels.push(*label);
        }
    }
    if patterns.is_empty() {
        return Vec::new();
    }
    let automaton = AhoCorasick::new(&patterns).expect("secret patterns");
    let mut findings = Vec::new();
    for (name, text) in logs {
        for (index, line) in text.lines().enumerate() {
            if let Some(hit) = automaton.find(line) {
                findings.push(Finding {
                    log: name.clone(),
                    secret: labels[hit.pattern().as_usize()],
                    line: index + 1,
                });
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_truncated_secrets_are_found_and_never_reported_verbatim() {
        let mut secrets = Secrets::default();
        let token = "aGVsbG8td29ybGQtdGhpcy1pcy1hLXNlc3Npb24tdG9rZW4tdmFsdWU";
        secrets.add("session token", token);
        secrets.add("short", "abc");
        assert_eq!(secrets.len(), 1);
        let logs = vec![
            ("clean".to_string(), "nothing here\n".to_string()),
            ("whole".to_string(), format!("a\ntoken={token}\n")),
            ("cut".to_string(), format!("token={}…\n", &token[..40])),
        ];
        let findings = scan(&secrets, &logs);
        assert_eq!(
            findings,
            vec![
                Finding {
                    log: "whole".into(),
                    secret: "session token",
                    line: 2
                },
                Finding {
                    log: "cut".into(),
                    secret: "session token",
                    line: 1
                },
            ]
        );
        assert!(!format!("{findings:?}").contains(token));
    }
}
