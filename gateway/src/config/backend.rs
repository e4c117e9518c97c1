//! kgateway `Backend` (`gateway.kgateway.dev/v1alpha1`, `spec.type: AWS`): the typed object and its
//! compilation to a [`model::Backend`] — region and partition, account, function, qualifier, invocation and
//! payload modes, endpoint, and the credentials source (static keys resolved from a Secret here).

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::meta::ObjectMeta;
use super::options::LoadOptions;
use super::report::Report;
use super::secret::{self, SecretKeys};
use crate::model::{
    self, AuthSource, Endpoint, InvocationMode, Partition, RequestEvent, ResponseMode,
};

/// Annotation overriding how the request event is built (see README "Payload modes").
pub const ANNOTATION_REQUEST_EVENT: &str = "gateway.podcred.dev/request-event";
/// Annotation overriding how the function's response is turned into the HTTP response.
pub const ANNOTATION_RESPONSE_MODE: &str = "gateway.podcred.dev/response-mode";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<BackendSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "BackendSpec", rename_all = "camelCase")]
pub struct BackendSpec {
    /// `AWS` (the only type served); omitted means AWS.
    #[serde(rename = "type")]
    pub backend_type: Option<String>,
    pub aws: Option<AwsBackend>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "AwsBackend", rename_all = "camelCase")]
pub struct AwsBackend {
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub auth: Option<AwsAuth>,
    pub lambda: Option<AwsLambda>,
    /// Read only to say that EC2 backends are not served.
    pub ec2: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "AwsLambda", rename_all = "camelCase")]
pub struct AwsLambda {
    pub function_name: Option<String>,
    /// Older examples put the account here; it wins over `spec.aws.accountId`.
    pub account_id: Option<String>,
    pub qualifier: Option<String>,
    /// `Sync` (default) or `Async`.
    pub invocation_mode: Option<String>,
    #[serde(rename = "endpointURL")]
    pub endpoint_url: Option<String>,
    /// `None` (our default), `Envoy`, `ApiGatewayV1`, `ApiGatewayV2`.
    pub payload_transform_mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "AwsAuth", rename_all = "camelCase")]
pub struct AwsAuth {
    /// `Secret` (served) or `AssumeRole` (not yet).
    #[serde(rename = "type")]
    pub auth_type: Option<String>,
    pub secret_ref: Option<LocalObjectReference>,
    /// Read only to say that AssumeRole is not supported yet.
    pub assume_role: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename = "LocalObjectReference", rename_all = "camelCase")]
pub struct LocalObjectReference {
    pub name: Option<String>,
}

/// Compiles one Backend; `None` (with every problem reported) when it cannot be served.
pub(super) fn compile(
    object: &BackendObject,
    secrets: &SecretKeys,
    options: &LoadOptions,
    report: &mut Report,
) -> Option<model::Backend> {
    let id = object.metadata.id();
    let what = format!("Backend {id}");
    let errors_before = report.error_count();
    let Some(spec) = &object.spec else {
        report.error(format!("{what}: spec: missing"));
        return None;
    };
    if let Some(t) = &spec.backend_type {
        if t != "AWS" {
            report.error(format!(
                "{what}: spec.type: {t:?} is not supported; only AWS (Lambda) backends are"
            ));
            return None;
        }
    }
    let Some(aws) = &spec.aws else {
        report.error(format!(
            "{what}: spec.aws: missing (only AWS Lambda backends are supported)"
        ));
        return None;
    };
    if aws.ec2.is_some() {
        report.error(format!(
            "{what}: spec.aws.ec2: EC2 backends are not supported; use spec.aws.lambda"
        ));
    }
    let region = aws
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".to_string());
    if !valid_region(&region) {
        report.error(format!(
            "{what}: spec.aws.region: {region:?} is not a region name (^[a-z0-9-]+$)"
        ));
    }
    let Some(lambda) = &aws.lambda else {
        report.error(format!("{what}: spec.aws.lambda: missing"));
        return None;
    };
    let function_name = match lambda.function_name.as_deref() {
        Some(name) if valid_function_name(name) => name.to_string(),
        Some(name) => {
            report.error(format!("{what}: spec.aws.lambda.functionName: {name:?} is not a function name (^[A-Za-z0-9-_]{{1,140}}$)"));
            String::new()
        }
        None => {
            report.error(format!("{what}: spec.aws.lambda.functionName: missing"));
            String::new()
        }
    };
    // kgateway puts accountId under spec.aws; older examples put it under spec.aws.lambda.
    let account_field = match (&lambda.account_id, &aws.account_id) {
        (Some(account), _) => Some(("spec.aws.lambda.accountId", account)),
        (None, Some(account)) => Some(("spec.aws.accountId", account)),
        (None, None) => None,
    };
    if let Some((field, account)) = account_field {
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            report.error(format!(
                "{what}: {field}: {account:?} is not a 12-digit AWS account ID"
            ));
        }
    }
    let account_id = account_field.map(|(_, account)| account.clone());
    let qualifier = lambda.qualifier.clone();
    if let Some(q) = &qualifier {
        if !valid_qualifier(q) {
            report.error(format!("{what}: spec.aws.lambda.qualifier: {q:?} is not $LATEST, a version or an alias name"));
        }
    }
    let invocation = match lambda.invocation_mode.as_deref() {
        None | Some("Sync") => InvocationMode::Sync,
        Some("Async") => InvocationMode::Async,
        Some(other) => {
            report.error(format!(
                "{what}: spec.aws.lambda.invocationMode: {other:?} is not Sync or Async"
            ));
            InvocationMode::Sync
        }
    };
    let (mut request_event, mut response_mode) = match lambda.payload_transform_mode.as_deref() {
        // Our default differs from kgateway's (Envoy): passthrough reproduces the seed's documented output.
        None | Some("None") => (RequestEvent::Raw, ResponseMode::Passthrough),
        Some("Envoy") => (RequestEvent::Envoy, ResponseMode::Envoy),
        Some("ApiGatewayV1") => (RequestEvent::ApiGatewayV1, ResponseMode::ApiGatewayV1),
        Some("ApiGatewayV2") => (RequestEvent::ApiGatewayV2, ResponseMode::ApiGatewayV2),
        Some(other) => {
            report.error(format!(
                "{what}: spec.aws.lambda.payloadTransformMode: {other:?} is not None, Envoy, ApiGatewayV1 or ApiGatewayV2"
            ));
            (RequestEvent::Raw, ResponseMode::Passthrough)
        }
    };
    if let Some(v) = object.metadata.annotation(ANNOTATION_REQUEST_EVENT) {
        match parse_request_event(v) {
            Some(mode) => request_event = mode,
            None => report.error(format!(
                "{what}: metadata.annotations[{ANNOTATION_REQUEST_EVENT}]: {v:?} is not raw, envoy, apigateway-v1 or apigateway-v2"
            )),
        }
    }
    if let Some(v) = object.metadata.annotation(ANNOTATION_RESPONSE_MODE) {
        match parse_response_mode(v) {
            Some(mode) => response_mode = mode,
            None => report.error(format!(
                "{what}: metadata.annotations[{ANNOTATION_RESPONSE_MODE}]: {v:?} is not passthrough, envoy, apigateway-v1 or apigateway-v2"
            )),
        }
    }

    let partition = Partition::for_region(&region);
    let endpoint_url = lambda
        .endpoint_url
        .clone()
        .or_else(|| options.endpoint_override.clone());
    let endpoint = match endpoint_url {
        Some(url) => match Endpoint::parse(&url) {
            Ok(e) => e,
            Err(e) => {
                report.error(format!("{what}: spec.aws.lambda.endpointURL: {url:?}: {e}"));
                return None;
            }
        },
        None => Endpoint::for_region(&region, partition),
    };

    let auth = match &aws.auth {
        None => AuthSource::DefaultChain,
        Some(auth) => compile_auth(
            &what,
            object.metadata.namespace(),
            auth,
            secrets,
            options,
            report,
        )?,
    };

    if report.error_count() > errors_before {
        return None;
    }
    let arn = format!(
        "arn:{}:lambda:{region}:{}:function:{function_name}{}",
        partition.name(),
        account_id.as_deref().unwrap_or("-"),
        qualifier
            .as_deref()
            .map(|q| format!(":{q}"))
            .unwrap_or_default()
    );
    let invoke_uri = endpoint.invoke_uri(&function_name, qualifier.as_deref());
    let invoke_uri_parsed = match invoke_uri.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            report.error(format!("{what}: spec.aws.lambda.endpointURL: the Invoke URL {invoke_uri:?} is not a valid URI: {e}"));
            return None;
        }
    };
    Some(model::Backend {
        invoke_uri,
        invoke_uri_parsed,
        id,
        region,
        partition,
        account_id,
        function_name,
        qualifier,
        invocation,
        endpoint,
        request_event,
        response_mode,
        auth,
        arn,
    })
}

/// `spec.aws.auth`: static keys from a Secret in the files, else from `--secrets-dir`.
fn compile_auth(
    what: &str,
    namespace: &str,
    auth: &AwsAuth,
    secrets: &SecretKeys,
    options: &LoadOptions,
    report: &mut Report,
) -> Option<AuthSource> {
    match auth.auth_type.as_deref() {
        Some("Secret") => {
            let secret_name = auth
                .secret_ref
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .unwrap_or("");
            if secret_name.is_empty() {
                report.error(format!(
                    "{what}: spec.aws.auth.secretRef.name: missing (required with type: Secret)"
                ));
                return None;
            }
            let secret_id = format!("{namespace}/{secret_name}");
            let keys: Option<BTreeMap<String, String>> =
                secrets.get(&secret_id).cloned().or_else(|| {
                    options
                        .secrets_dir
                        .as_deref()
                        .and_then(|dir| secret::read_mounted(&dir.join(secret_name)))
                });
            let Some(keys) = keys else {
                let where_ = match &options.secrets_dir {
                    Some(dir) => format!(
                        "neither in the config files nor under {}",
                        dir.join(secret_name).display()
                    ),
                    None => "not in the config files (add the Secret manifest, or mount it and pass --secrets-dir)".to_string(),
                };
                report.error(format!(
                    "{what}: spec.aws.auth.secretRef.name: Secret {secret_id} not found: {where_}"
                ));
                return None;
            };
            match secret::static_keys(&keys) {
                Ok(keys) => Some(AuthSource::Static {
                    secret: secret_id,
                    keys,
                }),
                Err(missing) => {
                    report.error(format!(
                        "{what}: spec.aws.auth.secretRef.name: Secret {secret_id}: {missing}"
                    ));
                    None
                }
            }
        }
        Some("AssumeRole") => {
            report.error(format!(
                "{what}: spec.aws.auth.type: AssumeRole is not supported yet; omit auth to use the service account's role (IRSA / container credentials)"
            ));
            None
        }
        Some(other) => {
            report.error(format!(
                "{what}: spec.aws.auth.type: {other:?} is not Secret or AssumeRole"
            ));
            None
        }
        None => {
            report.error(format!(
                "{what}: spec.aws.auth.type: missing (Secret), or omit auth for the default chain"
            ));
            None
        }
    }
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 63
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 140
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_qualifier(qualifier: &str) -> bool {
    qualifier == "$LATEST"
        || (!qualifier.is_empty()
            && qualifier.len() <= 128
            && qualifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

fn parse_request_event(value: &str) -> Option<RequestEvent> {
    match value {
        "raw" | "none" | "None" => Some(RequestEvent::Raw),
        "envoy" | "Envoy" => Some(RequestEvent::Envoy),
        "apigateway-v1" => Some(RequestEvent::ApiGatewayV1),
        "apigateway-v2" => Some(RequestEvent::ApiGatewayV2),
        _ => None,
    }
}

fn parse_response_mode(value: &str) -> Option<ResponseMode> {
    match value {
        "passthrough" | "none" | "None" => Some(ResponseMode::Passthrough),
        "envoy" | "Envoy" => Some(ResponseMode::Envoy),
        "apigateway-v1" => Some(ResponseMode::ApiGatewayV1),
        "apigateway-v2" => Some(ResponseMode::ApiGatewayV2),
        _ => None,
    }
}
