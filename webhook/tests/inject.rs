//! `webhook inject` on real multi-document manifests (`tests/fixtures/inject/<case>/`: `case.yaml` with the
//! command-line flags, `input.yaml`, `expected.yaml`), through the same argv parsing as the binary.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::*;
use serde::Deserialize;
use serde_json::Value;
use webhook::config::{self, Command, InjectConfig};
use webhook::inject::{self, InjectError, Report};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectCase {
    #[allow(dead_code)]
    description: String,
    args: Vec<String>,
    #[serde(default)]
    warnings: usize,
}

fn inject_config(args: &[String]) -> InjectConfig {
    let mut argv = vec!["webhook".to_string(), "inject".to_string()];
    argv.extend(args.iter().cloned());
    match config::parse(argv) {
        Ok(Command::Inject(c)) => *c,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn run(config: &InjectConfig, stdin: &str) -> Result<(String, String, Report), InjectError> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let report = inject::run(config, &mut stdin.as_bytes(), &mut out, &mut err)?;
    Ok((
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        report,
    ))
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| serde_json::to_value(serde_yaml_ng::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn run_case(name: &str) {
    let dir = fixtures_dir("inject").join(name);
    let case: InjectCase = read_yaml(&dir.join("case.yaml"));
    let mut args: Vec<String> = case
        .args
        .iter()
        .map(|a| a.replace("{dir}", &dir.display().to_string()))
        .collect();
    args.extend([
        "-f".to_string(),
        dir.join("input.yaml").display().to_string(),
    ]);
    let (out, err, report) =
        run(&inject_config(&args), "").unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = documents(&std::fs::read_to_string(dir.join("expected.yaml")).unwrap());
    let actual = documents(&out);
    assert_eq!(
        actual.len(),
        expected.len(),
        "{name}: document count\n{out}"
    );
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_same_pod(&format!("{name} document {}", i + 1), a, e);
    }
    assert_eq!(
        report.warnings.len(),
        case.warnings,
        "{name}: {:?}",
        report.warnings
    );
    assert_eq!(err.lines().count(), case.warnings, "{name}: stderr {err}");

    // Offline injection is reinvocation-safe too: injecting the output again changes nothing.
    let (again, _, _) = run(
        &inject_config(
            &[
                case.args
                    .iter()
                    .map(|a| a.replace("{dir}", &dir.display().to_string()))
                    .collect::<Vec<_>>(),
                vec!["-f".into(), "-".into()],
            ]
            .concat(),
        ),
        &out,
    )
    .unwrap();
    assert_eq!(
        documents(&again),
        actual,
        "{name}: second injection changed the output"
    );
}

#[test]
fn seed_gateway() {
    run_case("seed-gateway");
}

#[test]
fn all_kinds() {
    run_case("all-kinds");
}

#[test]
fn default_namespace_and_list() {
    run_case("default-namespace-and-list");
}

#[test]
fn container_credentials() {
    run_case("container-credentials");
}

#[test]
fn config_map_wildcard() {
    run_case("config-map-wildcard");
}

#[test]
fn sidecar() {
    run_case("sidecar");
}

#[test]
fn every_fixture_directory_is_listed() {
    assert_eq!(
        case_dirs("inject"),
        [
            "all-kinds",
            "config-map-wildcard",
            "container-credentials",
            "default-namespace-and-list",
            "seed-gateway",
            "sidecar"
        ]
    );
}

#[test]
fn stdin_and_files_keep_input_order() {
    let dir = fixtures_dir("inject").join("seed-gateway");
    let input = std::fs::read_to_string(dir.join("input.yaml")).unwrap();
    let extra = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kgateway-system\n";
    let file = tempfile_with(extra);
    let config = inject_config(&[
        "-f".into(),
        file.display().to_string(),
        "-f".into(),
        "-".into(),
    ]);
    let (out, _, report) = run(&config, &input).unwrap();
    let docs = documents(&out);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "Deployment",
            "Backend",
            "HTTPRoute",
            "ServiceAccount"
        ]
    );
    assert_eq!(report.pods_mutated, 1);
    let _ = std::fs::remove_file(file);
}

fn tempfile_with(content: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "podcred-inject-{}-{}.yaml",
        std::process::id(),
        content.len()
    ));
    std::fs::write(&path, content).unwrap();
    path
}

fn error_for(stdin: &str, extra_args: &[&str]) -> String {
    let mut args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
    args.extend(["-f".to_string(), "-".to_string()]);
    match run(&inject_config(&args), stdin) {
        Err(e) => e.to_string(),
        Ok((out, _, _)) => panic!("expected an error, got output:\n{out}"),
    }
}

const SA: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/r\n";

#[test]
fn errors_name_the_document_and_the_field() {
    let wrong_type = format!(
        "{SA}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers: {{name: x}}\n"
    );
    let e = error_for(&wrong_type, &[]);
    assert!(e.starts_with("stdin document 2 (Deployment web): "), "{e}");
    assert!(e.contains("spec.template.spec.containers"), "{e}");

    let bad_yaml = format!("{SA}---\nkind: Pod\nmetadata: [unclosed\n");
    let e = error_for(&bad_yaml, &[]);
    assert!(e.starts_with("stdin document 2: invalid YAML"), "{e}");

    let bad_annotation = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  annotations:\n    eks.amazonaws.com/token-expiration: 3600\n";
    let e = error_for(bad_annotation, &[]);
    assert!(e.contains("document 1 (ServiceAccount a)"), "{e}");
    assert!(
        e.contains("metadata.annotations.eks.amazonaws.com/token-expiration: expected a string"),
        "{e}"
    );

    let template_not_object = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: c\n  namespace: n\nspec:\n  jobTemplate:\n    spec:\n      template: 5\n";
    let e = error_for(template_not_object, &[]);
    assert_eq!(e, "stdin document 1 (CronJob n/c): spec.jobTemplate.spec.template: expected a pod template object");

    let bad_config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pod-identity-webhook\n  namespace: eks\ndata:\n  config: '{not json'\n";
    let e = error_for(bad_config_map, &["--watch-config-map"]);
    assert!(
        e.starts_with("stdin document 1 (ConfigMap eks/pod-identity-webhook): data.config: "),
        "{e}"
    );
}

#[test]
fn missing_inputs_are_named() {
    let config = inject_config(&["-f".into(), "/nonexistent/podcred.yaml".into()]);
    let e = run(&config, "").unwrap_err().to_string();
    assert!(
        e.starts_with("/nonexistent/podcred.yaml: cannot read: "),
        "{e}"
    );
    let config = inject_config(&[
        "--watch-container-credentials-config=/nonexistent/pod-identity.json".into(),
        "-f".into(),
        "-".into(),
    ]);
    let e = run(&config, SA).unwrap_err().to_string();
    assert!(
        e.starts_with("--watch-container-credentials-config=/nonexistent/pod-identity.json: "),
        "{e}"
    );
}

#[test]
fn pod_template_and_replication_controller() {
    let input = format!(
        "{SA}---\napiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: t\ntemplate:\n  spec:\n    containers:\n    - name: c\n      image: i\n---\napiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: i\n"
    );
    let (out, _, report) = run(&inject_config(&["-f".into(), "-".into()]), &input).unwrap();
    assert_eq!(report.pods_mutated, 2);
    let docs = documents(&out);
    for (doc, pointer) in [
        (&docs[1], "/template/spec"),
        (&docs[2], "/spec/template/spec"),
    ] {
        let spec = doc.pointer(pointer).unwrap();
        assert_eq!(spec["volumes"][0]["name"], "aws-iam-token");
        assert_eq!(spec["containers"][0]["env"][0]["name"], "AWS_ROLE_ARN");
    }
}

#[test]
fn unmutated_pods_are_reported_not_failed() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: lonely\n  namespace: x\nspec:\n  serviceAccountName: ghost\n  containers:\n  - name: c\n    image: i\n";
    let (out, err, report) = run(&inject_config(&["-f".into(), "-".into()]), pod).unwrap();
    assert_eq!(documents(&out), documents(pod));
    assert_eq!(report.pods_mutated, 0);
    assert_eq!(err.trim(), "warning: stdin document 1 (Pod x/lonely): not mutated: ServiceAccount x/ghost is not in the input");
}
