//! The AdmissionReview envelope around [`crate::mutate`] (upstream's `pkg/handler/handler.go` `ServeHTTP`, https://github.com/aws/amazon-eks-pod-identity-webhook).
//!
//! Contract: [`Admission::handle`] never panics and always returns a well-formed reply:
//! - wrong `Content-Type` → HTTP 415 with upstream's plain-text body (`application/json` with parameters such
//!   as `; charset=utf-8` is accepted — upstream rejects it);
//! - anything else → HTTP 200 with an AdmissionReview: `apiVersion`/`kind` echoed when the request had them,
//!   `response.uid` copied, `allowed`, and either a base64 JSON Patch (`patchType: JSONPatch`) or, for
//!   undecodable input, `allowed: false` with `status.message` (upstream's wording where we can match it).
//! - `request.namespace` overrides the pod's own namespace for the identity lookup.
//!
//! The HTTP layer (server.rs) caps the body size before calling this and counts [`Outcome`]s.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value};

use crate::identity::IdentitySource;
use crate::mutate::{self, MutateConfig, NotSelected, PodView};

pub use crate::mutate::Mode;

/// What happened to the request, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A patch was returned (the pod was selected; it may already have been complete).
    Mutated(Mode),
    /// Allowed without a patch.
    NotMutated,
    /// `allowed: false` (undecodable review or pod) or a body over the size cap.
    Denied,
    /// HTTP 415.
    UnsupportedMediaType,
}

/// The HTTP answer to one `/mutate` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

impl AdmissionReply {
    /// For the HTTP layer when the body exceeds `--max-request-bytes` (413: the API server then applies the
    /// webhook's failurePolicy).
    pub fn payload_too_large(limit: usize) -> Self {
        Self {
            status: 413,
            content_type: TEXT_PLAIN,
            body: format!("request body exceeds --max-request-bytes={limit}\n").into_bytes(),
            outcome: Outcome::Denied,
        }
    }
}

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";
/// Upstream's 415 body (Go `http.Error` appends the newline).
pub const UNSUPPORTED_MEDIA_TYPE_BODY: &str = "Invalid Content-Type, expected `application/json`\n";
/// Upstream's message for a review without a request.
pub const BAD_CONTENT: &str = "bad content";

/// Source of the container-credentials jitter: an inclusive range in, a value in it out.
pub type JitterSource = Arc<dyn Fn(i64, i64) -> i64 + Send + Sync>;

/// The `/mutate` handler: mutation config + identity source.
pub struct Admission {
    config: MutateConfig,
    identities: Arc<dyn IdentitySource>,
    jitter: JitterSource,
}

impl Admission {
    pub fn new(config: MutateConfig, identities: Arc<dyn IdentitySource>) -> Self {
        Self::with_jitter(config, identities, Arc::new(uniform_jitter))
    }

    /// With a deterministic jitter source (tests, benchmarks).
    pub fn with_jitter(
        config: MutateConfig,
        identities: Arc<dyn IdentitySource>,
        jitter: JitterSource,
    ) -> Self {
        Self {
            config,
            identities,
            jitter,
        }
    }

    pub fn config(&self) -> &MutateConfig {
        &self.config
    }

    /// Handle one `/mutate` request.
    pub async fn handle(&self, content_type: Option<&str>, body: &[u8]) -> AdmissionReply {
        if !is_json_content_type(content_type) {
            tracing::error!(
                content_type = content_type.unwrap_or(""),
                "Content-Type={}, expected application/json",
                content_type.unwrap_or("")
            );
            return AdmissionReply {
                status: 415,
                content_type: TEXT_PLAIN,
                body: UNSUPPORTED_MEDIA_TYPE_BODY.as_bytes().to_vec(),
                outcome: Outcome::UnsupportedMediaType,
            };
        }
        let parsed = match parse_body(body) {
            Ok(parsed) => parsed,
            Err(message) => {
                tracing::error!("Can't decode body: {message}");
                return deny(&TypeMeta::default(), "", &message);
            }
        };
        let review = match interpret_review(&parsed) {
            Ok(review) => review,
            Err(message) => {
                tracing::error!("Can't decode body: {message}");
                return deny(&TypeMeta::default(), "", &message);
            }
        };
        let type_meta = &review.type_meta;
        let Some(request) = review.request else {
            return deny(type_meta, "", BAD_CONTENT);
        };
        let uid = request.uid;
        let Some(pod) = request.object else {
            // Go: an absent/null RawExtension unmarshals from zero bytes.
            return deny(type_meta, uid, "unexpected end of JSON input");
        };
        let view = match PodView::new(pod) {
            Ok(view) => view,
            Err(err) => {
                tracing::error!("Could not unmarshal raw object: {err}");
                return deny(type_meta, uid, &err.0);
            }
        };
        let namespace = request.namespace;
        let service_account = view.service_account();
        let pod_name = view.name();
        let identity = match mutate::resolve_identity(
            self.identities.as_ref(),
            namespace,
            service_account,
        )
        .await
        {
            Ok(identity) => identity,
            Err(reason) => {
                tracing::debug!(
                        pod = pod_name,
                        service_account,
                        namespace,
                        reason = match reason {
                            NotSelected::NoRole => "no role",
                            NotSelected::NotFound => "not found",
                        },
                        "Pod was not mutated. Reason: Service account did not have the right annotations or was not found in the cache."
                    );
                return allow(type_meta, uid, None);
            }
        };
        let jitter = &self.jitter;
        match mutate::mutate_view(&view, &identity, &self.config, &mut |lo, hi| jitter(lo, hi)) {
            Ok(mutation) => {
                if mutation.changed {
                    tracing::debug!(
                        pod = pod_name,
                        service_account,
                        namespace,
                        mode = mutation.mode.metric_label(),
                        sidecar = mutation.sidecar,
                        "Pod was mutated."
                    );
                } else {
                    tracing::debug!(
                        pod = pod_name,
                        service_account,
                        namespace,
                        "Pod was not mutated. Reason: Required volume mounts and env variables were already present."
                    );
                }
                let mut reply = allow(type_meta, uid, Some(&mutation.patch_json()));
                reply.outcome = Outcome::Mutated(mutation.mode);
                reply
            }
            Err(err) => {
                tracing::error!("Could not mutate pod: {err}");
                deny(type_meta, uid, &err.0)
            }
        }
    }
}

fn uniform_jitter(lo: i64, hi: i64) -> i64 {
    use rand::Rng;
    if lo >= hi {
        return lo;
    }
    rand::rng().random_range(lo..=hi)
}

/// `application/json`, optionally with parameters; a charset parameter must be UTF-8.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(APPLICATION_JSON) {
        return false;
    }
    parts.all(|param| {
        let Some((key, val)) = param.split_once('=') else {
            return param.trim().is_empty();
        };
        !key.trim().eq_ignore_ascii_case("charset")
            || val.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            || val.trim().trim_matches('"').eq_ignore_ascii_case("utf8")
    })
}

#[derive(Default)]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

struct Review<'a> {
    type_meta: TypeMeta,
    request: Option<Request<'a>>,
}

struct Request<'a> {
    uid: &'a str,
    namespace: &'a str,
    object: Option<&'a Value>,
}

/// JSON-decode the body. Empty (or whitespace-only) bodies are an empty review, as upstream.
fn parse_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|err| {
        let detail = match err.classify() {
            serde_json::error::Category::Eof => "unexpected end of JSON input".to_string(),
            _ => err.to_string(),
        };
        format!("couldn't get version/kind; json parse error: {detail}")
    })
}

fn go_type_error(value: &Value, field: &str, go_type: &str) -> String {
    let json_type = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("json: cannot unmarshal {json_type} into Go struct field {field} of type {go_type}")
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &str,
    go_type: &str,
) -> Result<&'a str, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(go_type_error(other, field, go_type)),
    }
}

/// The parts of an AdmissionReview (v1 or v1beta1: same wire shape; keys are case-sensitive) we use.
fn interpret_review(parsed: &Value) -> Result<Review<'_>, String> {
    let review = match parsed {
        Value::Null => {
            return Ok(Review {
                type_meta: TypeMeta::default(),
                request: None,
            })
        }
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "couldn't get version/kind; json parse error: {}",
                go_type_error(other, "AdmissionReview", "v1.AdmissionReview")
                    .replace(" struct field AdmissionReview", " value")
            ))
        }
    };
    let api_version = optional_str(review, "apiVersion", "AdmissionReview.apiVersion", "string")
        .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let kind = optional_str(review, "kind", "AdmissionReview.kind", "string")
        .map_err(|e| format!("couldn't get version/kind; json parse error: {e}"))?;
    let type_meta = TypeMeta {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
    };
    let request = match review.get("request") {
        None | Some(Value::Null) => None,
        Some(Value::Object(request)) => Some(Request {
            uid: optional_str(request, "uid", "AdmissionReview.request.uid", "types.UID")?,
            namespace: optional_str(
                request,
                "namespace",
                "AdmissionReview.request.namespace",
                "string",
            )?,
            object: request.get("object").filter(|o| !o.is_null()),
        }),
        Some(other) => {
            return Err(go_type_error(
                other,
                "AdmissionReview.request",
                "v1.AdmissionRequest",
            ))
        }
    };
    Ok(Review { type_meta, request })
}

fn deny(type_meta: &TypeMeta, uid: &str, message: &str) -> AdmissionReply {
    let mut response = Map::new();
    response.insert("uid".into(), Value::from(uid));
    response.insert("allowed".into(), Value::Bool(false));
    let mut status = Map::new();
    status.insert("metadata".into(), Value::Object(Map::new()));
    status.insert("message".into(), Value::from(message));
    response.insert("status".into(), Value::Object(status));
    envelope(type_meta, response, Outcome::Denied)
}

/// `allowed: true`, with the patch when there is one. Written directly (the base64 patch is the bulk of the
/// body and needs no escaping); field order as upstream: kind, apiVersion, response{uid, allowed, patch,
/// patchType}.
fn allow(type_meta: &TypeMeta, uid: &str, patch: Option<&[u8]>) -> AdmissionReply {
    let mut body = String::with_capacity(160 + patch.map_or(0, |p| p.len() / 3 * 4 + 4));
    body.push('{');
    for (key, value) in [
        ("kind", &type_meta.kind),
        ("apiVersion", &type_meta.api_version),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            body.push_str(&format!("\"{key}\":{},", json_string(value)));
        }
    }
    body.push_str("\"response\":{\"uid\":");
    body.push_str(&json_string(uid));
    body.push_str(",\"allowed\":true");
    if let Some(patch) = patch {
        body.push_str(",\"patch\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(patch, &mut body);
        body.push_str("\",\"patchType\":\"JSONPatch\"");
    }
    body.push_str("}}");
    AdmissionReply {
        status: 200,
        content_type: APPLICATION_JSON,
        body: body.into_bytes(),
        outcome: Outcome::NotMutated,
    }
}

fn json_string(value: &str) -> String {
    Value::from(value).to_string()
}

fn envelope(
    type_meta: &TypeMeta,
    response: Map<String, Value>,
    outcome: Outcome,
) -> AdmissionReply {
    let mut review = Map::new();
    if let Some(kind) = type_meta.kind.as_deref().filter(|k| !k.is_empty()) {
        review.insert("kind".into(), Value::from(kind));
    }
    if let Some(api_version) = type_meta.api_version.as_deref().filter(|v| !v.is_empty()) {
        review.insert("apiVersion".into(), Value::from(api_version));
    }
    review.insert("response".into(), Value::Object(response));
    AdmissionReply {
        status: 200,
        content_type: APPLICATION_JSON,
        body: serde_json::to_vec(&Value::Object(review)).unwrap_or_default(),
        outcome,
    }
}
