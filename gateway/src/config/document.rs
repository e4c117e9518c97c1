//! YAML files → typed objects: splits each file into documents, sorts them by kind, decodes each into its
//! typed object, and reports (in file order) what cannot be read.
//!
//! Problems found here: YAML syntax, a document without `metadata.name`, an object defined twice, a field
//! of the wrong type (the first one per object, with its path), and fields the types do not read (a likely
//! typo is an error, anything else a warning; see [`super::fields`]). Kinds the gateway does not use are
//! reported and skipped.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::fields::{decode, Finding};
use super::objects::{Kind, ObjectSet};
use super::report::Report;
use super::secret;

/// The typed objects of a set of files, plus the ids (`Kind ns/name`) of objects that were present but could
/// not be decoded, so references to them say "invalid" rather than "not found".
#[derive(Debug, Default)]
pub(super) struct ReadObjects {
    pub objects: ObjectSet,
    pub undecodable: HashSet<(Kind, String)>,
}

/// Just enough of any object to know what it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: EnvelopeMeta,
}

#[derive(Default, Deserialize)]
struct EnvelopeMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// Reads every document of every `(name, text)` source.
pub(super) fn read(sources: &[(&str, &str)], report: &mut Report) -> ReadObjects {
    let mut read = ReadObjects::default();
    let mut seen: HashSet<(Kind, String)> = HashSet::new();
    for (source, text) in sources {
        for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let at = format!("{source}: document {}", index + 1);
            let value = match Value::deserialize(document) {
                Ok(value) => value,
                Err(e) => {
                    report.error(format!("{at}: not valid YAML: {e}"));
                    // The YAML stream cannot resume after a syntax error.
                    break;
                }
            };
            if value.is_null() {
                continue; // an empty document (e.g. a trailing `---`)
            }
            if !value.is_mapping() {
                report.error(format!(
                    "{at}: not a Kubernetes object (expected a mapping with apiVersion, kind, metadata)"
                ));
                continue;
            }
            let envelope: Envelope = match decode(&value).result {
                Ok(envelope) => envelope,
                Err(e) => {
                    report.error(format!("{at}: {}: {}", e.path, e.message));
                    continue;
                }
            };
            let Envelope {
                api_version,
                kind,
                metadata,
            } = envelope;
            let Some(name) = metadata.name else {
                report.error(format!("{at}: {kind} has no metadata.name"));
                continue;
            };
            let id = format!(
                "{}/{name}",
                metadata
                    .namespace
                    .as_deref()
                    .unwrap_or(super::meta::DEFAULT_NAMESPACE)
            );
            let Some(object_kind) = Kind::of(&api_version, &kind) else {
                report.warn(format!(
                    "{source}: {kind} {id} ({api_version}) is not used by the gateway (ignored)"
                ));
                continue;
            };
            if object_kind == Kind::Backend && api_version != "gateway.kgateway.dev/v1alpha1" {
                report.warn(format!(
                    "Backend {id}: apiVersion {api_version} read as gateway.kgateway.dev/v1alpha1"
                ));
            }
            if !seen.insert((object_kind, id.clone())) {
                report.error(format!(
                    "{kind} {id}: defined twice (second definition in {source})"
                ));
                continue;
            }
            let what = format!("{} {id}", object_kind.name());
            let objects = &mut read.objects;
            let decoded = match object_kind {
                Kind::Gateway => {
                    decode_into(&what, object_kind, value, &mut objects.gateways, report)
                }
                Kind::HttpRoute => {
                    decode_into(&what, object_kind, value, &mut objects.http_routes, report)
                }
                Kind::Backend => {
                    decode_into(&what, object_kind, value, &mut objects.backends, report)
                }
                Kind::Secret => {
                    decode_into(&what, object_kind, value, &mut objects.secrets, report)
                }
            };
            if !decoded {
                read.undecodable.insert((object_kind, id));
            }
        }
    }
    read
}

/// Decodes one object into `list`, reporting its type error and unread fields; false when it did not decode.
fn decode_into<T: DeserializeOwned>(
    what: &str,
    kind: Kind,
    value: Value,
    list: &mut Vec<T>,
    report: &mut Report,
) -> bool {
    let decoded = decode::<T, _>(value);
    let schema = kind.schema();
    for path in &decoded.unread {
        match schema.classify(path) {
            Some(finding @ Finding::DidYouMean { .. }) => {
                report.error(format!("{what}: {}", finding.message()))
            }
            Some(finding @ Finding::Unsupported { .. }) => {
                report.warn(format!("{what}: {}", finding.message()))
            }
            None => {}
        }
    }
    match decoded.result {
        Ok(object) => {
            list.push(object);
            true
        }
        Err(error) => {
            let message = match kind {
                Kind::Secret => secret::redacted_type_error(&error),
                _ => error.message,
            };
            if error.path.0.is_empty() {
                report.error(format!("{what}: {message}"));
            } else {
                report.error(format!("{what}: {}: {message}", error.path));
            }
            false
        }
    }
}
