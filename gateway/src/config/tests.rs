use super::*;
use crate::model::{AuthSource, InvocationMode, RequestEvent, ResponseMode};

const SEED: &str = include_str!("../../tests/fixtures/seed.yaml");

fn compile_one(yaml: &str) -> Result<Config, ConfigError> {
    compile(&[("test.yaml", yaml)], &LoadOptions::default())
}

#[test]
fn the_seed_manifests_compile_unchanged_with_passthrough_defaults() {
    let config = compile_one(SEED).expect("seed compiles");
    assert_eq!(config.listener_port, Some(8080));
    assert_eq!(config.routes.rules().len(), 1);
    let backend = &config.backends[0];
    assert_eq!(backend.id, "kgateway-system/lambda");
    assert_eq!(backend.function_name, "echo");
    assert_eq!(backend.region, "us-east-1");
    assert_eq!(backend.account_id.as_deref(), Some("123456789012"));
    assert_eq!(backend.qualifier, None);
    assert_eq!(backend.invocation, InvocationMode::Sync);
    assert_eq!(backend.request_event, RequestEvent::Raw);
    assert_eq!(backend.response_mode, ResponseMode::Passthrough);
    assert_eq!(backend.auth, AuthSource::DefaultChain);
    assert_eq!(backend.endpoint.authority, "lambda.us-east-1.amazonaws.com");
    assert_eq!(
        backend.arn,
        "arn:aws:lambda:us-east-1:123456789012:function:echo"
    );
    assert_eq!(config.routes.rules()[0].timeout, DEFAULT_ROUTE_TIMEOUT);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn the_endpoint_override_applies_to_backends_without_endpoint_url() {
    let options = LoadOptions {
        endpoint_override: Some("http://127.0.0.1:3002".into()),
        ..Default::default()
    };
    let config = compile(&[("seed.yaml", SEED)], &options).expect("compiles");
    assert_eq!(
        config.backends[0].endpoint,
        crate::model::Endpoint::parse("http://127.0.0.1:3002").unwrap()
    );
}

const BACKEND_HEAD: &str = "apiVersion: gateway.kgateway.dev/v1alpha1\nkind: Backend\nmetadata: {name: b, namespace: ns}\n";

/// Each case: a Backend spec (YAML flow) and the expected (mode, invocation, qualifier, endpoint) or error text.
#[test]
#[allow(clippy::type_complexity)]
fn backend_fields_map_as_documented() {
    let cases: &[(&str, RequestEvent, ResponseMode, InvocationMode, Option<&str>, &str)] = &[
        ("{type: AWS, aws: {lambda: {functionName: f, payloadTransformMode: None}}}", RequestEvent::Raw, ResponseMode::Passthrough, InvocationMode::Sync, None, "lambda.us-east-1.amazonaws.com"),
        ("{type: AWS, aws: {region: cn-north-1, lambda: {functionName: f, payloadTransformMode: Envoy}}}", RequestEvent::Envoy, ResponseMode::Envoy, InvocationMode::Sync, None, "lambda.cn-north-1.amazonaws.com.cn"),
        ("{aws: {lambda: {functionName: f, payloadTransformMode: ApiGatewayV1, qualifier: prod}}}", RequestEvent::ApiGatewayV1, ResponseMode::ApiGatewayV1, InvocationMode::Sync, Some("prod"), "lambda.us-east-1.amazonaws.com"),
        ("{aws: {region: us-gov-west-1, lambda: {functionName: f, payloadTransformMode: ApiGatewayV2, invocationMode: Async, qualifier: $LATEST}}}", RequestEvent::ApiGatewayV2, ResponseMode::ApiGatewayV2, InvocationMode::Async, Some("$LATEST"), "lambda.us-gov-west-1.amazonaws.com"),
        ("{aws: {lambda: {functionName: f, endpointURL: 'http://127.0.0.1:4566'}}}", RequestEvent::Raw, ResponseMode::Passthrough, InvocationMode::Sync, None, "127.0.0.1:4566"),
    ];
    for (spec, event, response, invocation, qualifier, authority) in cases {
        let yaml = format!("{BACKEND_HEAD}spec: {spec}\n");
        let config = compile_one(&yaml).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let b = &config.backends[0];
        assert_eq!(
            (b.request_event, b.response_mode, b.invocation),
            (*event, *response, *invocation),
            "{spec}"
        );
        assert_eq!(b.qualifier.as_deref(), *qualifier, "{spec}");
        assert_eq!(b.endpoint.authority, *authority, "{spec}");
    }
}

#[test]
fn annotations_choose_request_event_and_response_mode_independently() {
    let yaml = "apiVersion: gateway.kgateway.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: b\n  namespace: ns\n  annotations:\n    gateway.podcred.dev/request-event: raw\n    gateway.podcred.dev/response-mode: apigateway-v2\nspec: {aws: {lambda: {functionName: f}}}\n";
    let config = compile_one(yaml).expect("compiles");
    assert_eq!(config.backends[0].request_event, RequestEvent::Raw);
    assert_eq!(config.backends[0].response_mode, ResponseMode::ApiGatewayV2);
}

/// Broken inputs and the one line that must name the object and the field.
#[test]
fn broken_configs_are_rejected_with_one_line_per_problem() {
    let route = |backend: &str, parent: &str| {
        format!(
            "{SEED}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r2, namespace: kgateway-system}}\nspec:\n  parentRefs: [{{name: {parent}}}]\n  rules:\n  - backendRefs: [{{group: gateway.kgateway.dev, kind: Backend, name: {backend}}}]\n"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (route("nope", "http"), "HTTPRoute kgateway-system/r2: spec.rules[0].backendRefs[0].name: Backend kgateway-system/nope not found"),
        (route("lambda", "other"), "HTTPRoute kgateway-system/r2: spec.parentRefs[0].name: Gateway kgateway-system/other not found"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{lambda: {{}}}}}}\n"), "Backend ns/b: spec.aws.lambda.functionName: missing"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{lambda: {{functionName: 'a b'}}}}}}\n"), "Backend ns/b: spec.aws.lambda.functionName: \"a b\" is not a function name"),
        (format!("{BACKEND_HEAD}spec: {{type: Static, static: {{}}}}\n"), "Backend ns/b: spec.type: \"Static\" is not supported"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{lambda: {{functionName: f, invocationMode: Later}}}}}}\n"), "spec.aws.lambda.invocationMode: \"Later\" is not Sync or Async"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{lambda: {{functionName: f, payloadTransformMode: Xml}}}}}}\n"), "spec.aws.lambda.payloadTransformMode: \"Xml\" is not None, Envoy"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{lambda: {{functionName: f, endpointURL: 'ftp://x'}}}}}}\n"), "spec.aws.lambda.endpointURL: \"ftp://x\": must start with http:// or https://"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{accountId: '12', lambda: {{functionName: f}}}}}}\n"), "is not a 12-digit AWS account ID"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{auth: {{type: Secret, secretRef: {{name: s}}}}, lambda: {{functionName: f}}}}}}\n"), "Backend ns/b: spec.aws.auth.secretRef.name: Secret ns/s not found"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{auth: {{type: AssumeRole, assumeRole: {{roleArn: x}}}}, lambda: {{functionName: f}}}}}}\n"), "spec.aws.auth.type: AssumeRole is not supported"),
        (format!("{BACKEND_HEAD}spec: {{aws: {{auth: {{type: Secret, secretRef: {{name: s}}}}, lambda: {{functionName: f}}}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: ns}}\nstringData: {{accessKey: '', secretKey: x}}\n"), "Secret ns/s: key accessKey is missing or empty"),
        ("kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r}\nspec: {rules: [{matches: [{path: {type: RegularExpression, value: '('}}]}]}\n".to_string(), "HTTPRoute default/r: spec.rules[0].matches[0].path.value: invalid regular expression"),
        ("kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r}\nspec: {rules: [{timeouts: {request: soon}}]}\n".to_string(), "HTTPRoute default/r: spec.rules[0].timeouts.request: \"soon\" is not a Gateway API duration"),
        ("kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r}\nspec: {rules: [{backendRefs: [{name: svc, port: 80}]}]}\n".to_string(), "HTTPRoute default/r: spec.rules[0].backendRefs[0]: Service (group \"\") is not supported"),
        ("a: [unclosed".to_string(), "test.yaml: document 1: not valid YAML"),
    ];
    for (yaml, expected) in cases {
        let error = compile_one(&yaml).expect_err(expected);
        assert!(
            error.problems.iter().any(|p| p.contains(expected)),
            "expected a problem containing {expected:?}, got {:#?}",
            error.problems
        );
    }
}

#[test]
fn unsupported_fields_are_reported_as_warnings_and_the_rest_is_served() {
    let yaml = SEED.replace(
        "    backendRefs:\n",
        "    retry: {attempts: 2}\n    backendRefs:\n",
    ) + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n";
    let config = compile_one(&yaml).expect("still compiles");
    let joined = config.warnings.join("\n");
    assert!(
        joined.contains("HTTPRoute kgateway-system/lambda: spec.rules[0].retry is not supported"),
        "{joined}"
    );
    assert!(
        joined.contains("ConfigMap default/x (v1) is not used by the gateway"),
        "{joined}"
    );
}

#[test]
fn static_keys_come_from_a_secret_manifest_or_a_mounted_secret_directory() {
    let backend = format!("{BACKEND_HEAD}spec: {{aws: {{auth: {{type: Secret, secretRef: {{name: creds}}}}, lambda: {{functionName: f}}}}}}\n");
    // base64 of AKIDEXAMPLE / s3cr3t
    let manifest = format!("{backend}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: ns}}\ndata: {{accessKey: QUtJREVYQU1QTEU=, secretKey: czNjcjN0}}\n");
    let config = compile_one(&manifest).expect("compiles");
    match &config.backends[0].auth {
        AuthSource::Static { secret, keys } => {
            assert_eq!(secret, "ns/creds");
            assert_eq!(keys.access_key_id, "AKIDEXAMPLE");
            assert_eq!(keys.secret_access_key, "s3cr3t");
            assert!(
                !format!("{keys:?}").contains("s3cr3t"),
                "Debug must redact the secret"
            );
        }
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("creds")).expect("mkdir");
    std::fs::write(dir.path().join("creds/accessKey"), "AKIDFROMFILE\n").expect("write");
    std::fs::write(dir.path().join("creds/secretKey"), "filesecret").expect("write");
    std::fs::write(dir.path().join("creds/sessionToken"), "tok").expect("write");
    let options = LoadOptions {
        secrets_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let config = compile(&[("b.yaml", &backend)], &options).expect("compiles from the directory");
    match &config.backends[0].auth {
        AuthSource::Static { keys, .. } => {
            assert_eq!(keys.access_key_id, "AKIDFROMFILE");
            assert_eq!(keys.session_token.as_deref(), Some("tok"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gateway_api_durations_parse() {
    let cases = [
        ("10s", Some(10_000)),
        ("500ms", Some(500)),
        ("1m30s", Some(90_000)),
        ("1h", Some(3_600_000)),
        ("0s", Some(0)),
        ("10", None),
        ("1d", None),
        ("", None),
    ];
    for (text, millis) in cases {
        assert_eq!(
            parse_duration(text).map(|d| d.as_millis() as u64),
            millis,
            "{text}"
        );
    }
}

#[test]
fn route_timeouts_apply() {
    let yaml = SEED.replace(
        "    backendRefs:\n",
        "    timeouts: {request: 5s, backendRequest: 2s}\n    backendRefs:\n",
    );
    let config = compile_one(&yaml).expect("compiles");
    assert_eq!(config.routes.rules()[0].timeout, Duration::from_secs(2));
}

/// One fixture of `gateway/tests/fixtures/config/` (see its README): a configuration and what must come out.
struct Fixture {
    name: String,
    yaml: String,
    errors: Vec<String>,
    warnings: Vec<String>,
    never: Vec<String>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let yaml = std::fs::read_to_string(&path).expect("read fixture");
            let header = |tag: &str| -> Vec<String> {
                yaml.lines()
                    .take_while(|line| line.starts_with('#'))
                    .filter_map(|line| line.strip_prefix(tag))
                    .map(str::to_string)
                    .collect()
            };
            Fixture {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                errors: header("# error: "),
                warnings: header("# warning: "),
                never: header("# never: "),
                yaml,
            }
        })
        .collect()
}

#[test]
fn fixtures_report_exactly_the_expected_lines() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 10, "fixtures found: {}", fixtures.len());
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let (result, warnings) =
            compile_reporting_warnings(&[("test.yaml", &fixture.yaml)], &LoadOptions::default());
        let errors = match &result {
            Ok(_) => vec![],
            Err(e) => e.problems.clone(),
        };
        if errors != fixture.errors || warnings != fixture.warnings {
            failures.push(format!(
                "{}:\n  errors expected {:#?}\n  errors got {errors:#?}\n  warnings expected {:#?}\n  warnings got {warnings:#?}",
                fixture.name, fixture.errors, fixture.warnings
            ));
        }
        for secret in &fixture.never {
            for line in errors.iter().chain(&warnings) {
                if line.contains(secret.as_str()) {
                    failures.push(format!("{}: {secret:?} shown in {line:?}", fixture.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The known-field lists are traced from the serde structs: every struct position of every kind is there,
/// with the CRDs' spelling.
#[test]
fn known_fields_come_from_the_serde_structs() {
    let cases: &[(Kind, &str, &[&str])] = &[
        (
            Kind::Backend,
            "",
            &["apiVersion", "kind", "metadata", "spec"],
        ),
        (
            Kind::Backend,
            "metadata",
            &["name", "namespace", "labels", "annotations"],
        ),
        (
            Kind::Backend,
            "spec.aws",
            &["region", "accountId", "auth", "lambda", "ec2"],
        ),
        (
            Kind::Backend,
            "spec.aws.lambda",
            &[
                "functionName",
                "accountId",
                "qualifier",
                "invocationMode",
                "endpointURL",
                "payloadTransformMode",
            ],
        ),
        (Kind::Backend, "spec.aws.auth.secretRef", &["name"]),
        (
            Kind::HttpRoute,
            "spec",
            &["parentRefs", "hostnames", "rules"],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[]",
            &["name", "matches", "backendRefs", "timeouts", "filters"],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].filters[]",
            &[
                "type",
                "requestHeaderModifier",
                "responseHeaderModifier",
                "requestRedirect",
                "urlRewrite",
                "requestMirror",
                "cors",
                "extensionRef",
                "externalAuth",
            ],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].filters[].requestRedirect",
            &["scheme", "hostname", "path", "port", "statusCode"],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].backendRefs[].filters[].urlRewrite.path",
            &["type", "replaceFullPath", "replacePrefixMatch"],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].backendRefs[].filters[].responseHeaderModifier.set[]",
            &["name", "value"],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].matches[].queryParams[]",
            &["type", "name", "value"],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].backendRefs[]",
            &[
                "group",
                "kind",
                "name",
                "namespace",
                "port",
                "weight",
                "filters",
            ],
        ),
        (
            Kind::HttpRoute,
            "spec.rules[].timeouts",
            &["request", "backendRequest"],
        ),
        (
            Kind::Gateway,
            "spec.listeners[]",
            &["name", "hostname", "port", "protocol", "allowedRoutes"],
        ),
        (
            Kind::Gateway,
            "spec.infrastructure.parametersRef",
            &["group", "kind", "name"],
        ),
        (
            Kind::Secret,
            "",
            &[
                "apiVersion",
                "kind",
                "metadata",
                "data",
                "stringData",
                "type",
                "immutable",
            ],
        ),
    ];
    for (kind, position, expected) in cases {
        let mut got = kind
            .schema()
            .fields_at(position)
            .unwrap_or_else(|| panic!("{kind:?} {position}"))
            .to_vec();
        let mut expected = expected.to_vec();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "{kind:?} {position}");
    }
    assert_eq!(
        Kind::Backend.schema().fields_at("metadata.annotations"),
        None,
        "a map is not a struct"
    );
}

/// Fields that Gateway API or kgateway define and podcred does not implement must stay warnings, never turn
/// into "did you mean" errors because they look like a sibling; typos of read fields must become errors.
#[test]
fn upstream_fields_are_not_mistaken_for_typos_and_typos_are_caught() {
    use fields::{FieldPath, Finding, Segment};
    let path = |text: &str| {
        FieldPath(
            text.split('.')
                .map(|part| match part.parse::<usize>() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Field(part.to_string()),
                })
                .collect(),
        )
    };
    let upstream: &[(Kind, &str)] = &[
        (Kind::HttpRoute, "spec.rules.0.retry"),
        (Kind::HttpRoute, "spec.rules.0.sessionPersistence"),
        (Kind::HttpRoute, "spec.useDefaultGateways"),
        (Kind::Gateway, "spec.tls"),
        (Kind::Gateway, "spec.allowedListeners"),
        (Kind::Gateway, "spec.backendTLS"),
        (Kind::Gateway, "spec.defaultScope"),
        (Kind::Gateway, "spec.listeners.0.tls"),
        (Kind::Backend, "spec.static"),
        (Kind::Backend, "spec.ai"),
        (Kind::Backend, "spec.gcp"),
        (Kind::Backend, "spec.mcp"),
        (Kind::Backend, "spec.dynamicForwardProxy"),
    ];
    for (kind, field) in upstream {
        assert_eq!(
            kind.schema().classify(&path(field)),
            Some(Finding::Unsupported { path: path(field) }),
            "{kind:?} {field}"
        );
    }
    let typos: &[(Kind, &str, &str)] = &[
        (Kind::Backend, "spec.aws.lambda.endpointUrl", "endpointURL"),
        (
            Kind::Backend,
            "spec.aws.lambda.functionname",
            "functionName",
        ),
        (Kind::Backend, "spec.aws.lambda.qualifer", "qualifier"),
        (
            Kind::Backend,
            "spec.aws.lambda.payloadTransfromMode",
            "payloadTransformMode",
        ),
        (Kind::Backend, "spec.aws.regoin", "region"),
        (Kind::Backend, "spec.Type", "type"),
        (Kind::HttpRoute, "spec.rules.2.timeout", "timeouts"),
        (Kind::HttpRoute, "spec.rules.0.matches.1.header", "headers"),
        (Kind::HttpRoute, "spec.hostname", "hostnames"),
        (Kind::HttpRoute, "spec.rules.0.filter", "filters"),
        (
            Kind::HttpRoute,
            "spec.rules.0.filters.0.requestHeaderModifer",
            "requestHeaderModifier",
        ),
        (
            Kind::HttpRoute,
            "spec.rules.0.backendRefs.0.filters.0.urlRewrite.path.replacePrefixMath",
            "replacePrefixMatch",
        ),
        (Kind::Gateway, "spec.listeners.0.Protocol", "protocol"),
        (Kind::Secret, "stringdata", "stringData"),
        (Kind::Secret, "metadata.nmae", "name"),
    ];
    for (kind, field, known) in typos {
        assert_eq!(
            kind.schema().classify(&path(field)),
            Some(Finding::DidYouMean {
                path: path(field),
                known
            }),
            "{kind:?} {field}"
        );
    }
    // Kubernetes' own fields pass silently; fields read as IgnoredAny are accepted.
    for (kind, field) in [
        (Kind::Backend, "status"),
        (Kind::Backend, "metadata.uid"),
        (Kind::Backend, "metadata.managedFields"),
        (Kind::Backend, "spec.aws.ec2"),
        (
            Kind::Gateway,
            "spec.listeners.0.allowedRoutes.namespaces.selector",
        ),
        // Filter types podcred rejects by `type`; their configuration is not reported a second time.
        (Kind::HttpRoute, "spec.rules.0.filters.0.requestMirror"),
        (Kind::HttpRoute, "spec.rules.0.filters.0.cors"),
        (
            Kind::HttpRoute,
            "spec.rules.0.backendRefs.0.filters.0.extensionRef",
        ),
    ] {
        assert_eq!(
            kind.schema().classify(&path(field)),
            None,
            "{kind:?} {field}"
        );
    }
}

/// The second source: objects as the API server sends them (JSON, camelCase) compile through the same
/// compiler to the same result, and the same decoder finds typos in JSON too.
#[test]
fn objects_decoded_from_json_compile_like_the_yaml() {
    let documents: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(SEED)
        .map(|d| serde::Deserialize::deserialize(d).expect("seed YAML"))
        .collect();
    let mut objects = ObjectSet::default();
    for document in documents {
        let json = serde_json::to_string(&document).expect("to JSON");
        match document["kind"].as_str() {
            Some("Gateway") => objects
                .gateways
                .push(serde_json::from_str(&json).expect("Gateway")),
            Some("HTTPRoute") => objects
                .http_routes
                .push(serde_json::from_str(&json).expect("HTTPRoute")),
            Some("Backend") => objects
                .backends
                .push(serde_json::from_str(&json).expect("Backend")),
            other => panic!("{other:?}"),
        }
    }
    let from_objects = compile_objects(&objects, &LoadOptions::default()).expect("compiles");
    let from_yaml = compile_one(SEED).expect("compiles");
    assert_eq!(from_objects.listener_port, from_yaml.listener_port);
    assert_eq!(
        format!("{:?}", from_objects.backends),
        format!("{:?}", from_yaml.backends)
    );
    assert_eq!(
        format!("{:?}", from_objects.routes.rules()),
        format!("{:?}", from_yaml.routes.rules())
    );
    assert!(
        from_objects.warnings.is_empty(),
        "{:?}",
        from_objects.warnings
    );

    // The same checks and messages as from files.
    objects.backends[0]
        .spec
        .as_mut()
        .unwrap()
        .aws
        .as_mut()
        .unwrap()
        .lambda
        .as_mut()
        .unwrap()
        .function_name = Some("a b".into());
    let error = compile_objects(&objects, &LoadOptions::default()).expect_err("rejected");
    assert_eq!(
        error.problems,
        [
            "Backend kgateway-system/lambda: spec.aws.lambda.functionName: \"a b\" is not a function name (^[A-Za-z0-9-_]{1,140}$)",
            "HTTPRoute kgateway-system/lambda: spec.rules[0].backendRefs[0].name: Backend kgateway-system/lambda is invalid (see its own errors)",
        ]
    );

    let json = serde_json::json!({
        "apiVersion": "gateway.kgateway.dev/v1alpha1", "kind": "Backend",
        "metadata": {"name": "b"},
        "spec": {"aws": {"lambda": {"functionName": "f", "endpointUrl": "http://x"}}}
    });
    let decoded = fields::decode::<BackendObject, _>(json);
    assert!(decoded.result.is_ok());
    let findings: Vec<String> = decoded
        .unread
        .iter()
        .filter_map(|p| Kind::Backend.schema().classify(p))
        .map(|f| f.message())
        .collect();
    assert_eq!(
        findings,
        ["spec.aws.lambda.endpointUrl: unknown field; did you mean endpointURL?"]
    );
}

#[test]
fn a_secret_object_debug_shows_key_names_only() {
    let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {secretKey: c2VjcmV0LWluLWRhdGE=}\nstringData: {accessKey: secret-in-string-data}\n";
    let secret: SecretObject = serde_yaml_ng::from_str(yaml).expect("decodes");
    let debug = format!("{secret:?}");
    assert!(
        debug.contains("secretKey") && debug.contains("accessKey"),
        "{debug}"
    );
    assert!(
        !debug.contains("c2VjcmV0") && !debug.contains("secret-in-string-data"),
        "{debug}"
    );
}

/// The filters of `filters-served.yaml` compile to the model the pipeline applies, from YAML and from the JSON
/// the API server sends alike.
#[test]
fn filters_compile_to_the_model_from_files_and_from_api_objects() {
    use crate::model::{
        Filters, HeaderModifier, PathModifier, Redirect, RequestFilter, Scheme, UrlRewrite,
    };
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config/filters-served.yaml"),
    )
    .expect("fixture");
    let config = compile_one(&yaml).expect("compiles");
    let rules = config.routes.rules();
    let names = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        rules[0].filters,
        Filters {
            request: vec![
                RequestFilter::Headers(HeaderModifier {
                    set: names(&[("x-set", "1")]),
                    add: names(&[("x-add", "2")]),
                    remove: vec!["x-remove".into()],
                }),
                RequestFilter::Rewrite(UrlRewrite {
                    hostname: Some("internal.example".into()),
                    path: Some(PathModifier::ReplacePrefixMatch {
                        prefix: "/api".into(),
                        replacement: "/".into(),
                    }),
                }),
            ],
            response_headers: Some(HeaderModifier {
                set: names(&[("cache-control", "no-store")]),
                ..HeaderModifier::default()
            }),
            redirect: None,
        }
    );
    assert_eq!(
        rules[0].backends[0].filters.request,
        [RequestFilter::Headers(HeaderModifier {
            add: names(&[("x-backend", "envoy")]),
            ..HeaderModifier::default()
        })]
    );
    assert_eq!(
        rules[1].filters.redirect,
        Some(Redirect {
            scheme: Some(Scheme::Https),
            hostname: Some("new.example".into()),
            path: Some(PathModifier::ReplaceFullPath("/new".into())),
            port: Some(8443),
            status: 308,
        })
    );
    assert!(rules[1].backends.is_empty());
    assert!(rules[2].backends[0].filters.is_empty());

    let mut objects = ObjectSet::default();
    for document in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).expect("YAML");
        let json = serde_json::to_string(&value).expect("to JSON");
        match value["kind"].as_str() {
            Some("HTTPRoute") => objects
                .http_routes
                .push(serde_json::from_str(&json).expect("HTTPRoute")),
            Some("Backend") => objects
                .backends
                .push(serde_json::from_str(&json).expect("Backend")),
            other => panic!("{other:?}"),
        }
    }
    let from_objects = compile_objects(&objects, &LoadOptions::default()).expect("compiles");
    assert_eq!(
        format!("{:?}", from_objects.routes.rules()),
        format!("{:?}", config.routes.rules())
    );
}
