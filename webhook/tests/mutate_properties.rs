//! Properties of the mutation over many generated (valid) pods, seeded so failures reproduce:
//! the patch always applies, a second mutation changes nothing (reinvocation), skipped containers and
//! unknown fields are untouched, and every other container ends up with an identity.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::HashSet;

use fixtures::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use webhook::identity::{CommonConfig, StsIdentity};
use webhook::mutate::{self, Identity, MutateConfig};

const RELEVANT_ENV: &[&str] = &[
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "OTHER",
];
const VOLUME_NAMES: &[&str] = &[
    "aws-iam-token",
    "eks-pod-identity-token",
    "podcred-auth",
    "data",
];

fn random_container(rng: &mut StdRng, name: String) -> Value {
    let mut c = json!({"name": name, "image": "x", "futureField": {"n": rng.random_range(0..100)}});
    if rng.random_bool(0.7) {
        let env: Vec<Value> = (0..rng.random_range(0..4))
            .map(|_| json!({"name": RELEVANT_ENV[rng.random_range(0..RELEVANT_ENV.len())], "value": "v"}))
            .collect();
        c["env"] = Value::Array(env);
    }
    if rng.random_bool(0.5) {
        let mounts: Vec<Value> = (0..rng.random_range(0..3))
            .map(|i| json!({"name": VOLUME_NAMES[rng.random_range(0..VOLUME_NAMES.len())], "mountPath": format!("/m{i}")}))
            .collect();
        c["volumeMounts"] = Value::Array(mounts);
    }
    if rng.random_bool(0.2) {
        c["restartPolicy"] = json!("Always");
    }
    c
}

fn random_pod(rng: &mut StdRng) -> (Value, HashSet<String>) {
    let containers: Vec<Value> = (0..rng.random_range(1..5))
        .map(|i| random_container(rng, format!("c{i}")))
        .collect();
    let mut pod = json!({
        "metadata": {"name": "p", "futureMeta": true},
        "spec": {"serviceAccountName": "sa", "containers": containers, "futureSpec": [1, 2, 3]}
    });
    if rng.random_bool(0.4) {
        let init: Vec<Value> = (0..rng.random_range(0..3))
            .map(|i| random_container(rng, format!("i{i}")))
            .collect();
        pod["spec"]["initContainers"] = Value::Array(init);
    }
    if rng.random_bool(0.5) {
        let volumes: Vec<Value> = (0..rng.random_range(0..3))
            .map(|_| json!({"name": VOLUME_NAMES[rng.random_range(0..VOLUME_NAMES.len())], "emptyDir": {}}))
            .collect();
        pod["spec"]["volumes"] = Value::Array(volumes);
    }
    if rng.random_bool(0.3) {
        pod["metadata"]["labels"] = json!({"app": "x"});
    }
    if rng.random_bool(0.1) {
        pod["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
    }
    let mut annotations = serde_json::Map::new();
    let mut skip = HashSet::new();
    if rng.random_bool(0.3) {
        skip.insert("c0".to_string());
        annotations.insert("eks.amazonaws.com/skip-containers".into(), json!("c0"));
    }
    if rng.random_bool(0.3) {
        annotations.insert(
            "eks.amazonaws.com/token-expiration".into(),
            json!(["0", "3600", "x", "86400"][rng.random_range(0..4)]),
        );
    }
    if rng.random_bool(0.3) {
        annotations.insert(
            "podcred.dev/inject".into(),
            json!(["true", "false"][rng.random_range(0..2)]),
        );
    }
    if !annotations.is_empty() {
        pod["metadata"]["annotations"] = Value::Object(annotations);
    }
    (pod, skip)
}

fn env_names(c: &Value) -> HashSet<String> {
    c["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn config(rng: &mut StdRng) -> MutateConfig {
    let overrides = ConfigOverrides {
        region: rng.random_bool(0.5).then(|| "eu-west-1".to_string()),
        container_credentials: None,
        sidecar: rng.random_bool(0.5).then(|| SidecarOverrides {
            image: "credproxy".into(),
            mode: Some(["native", "container"][rng.random_range(0..2)].into()),
            port: None,
            env: Vec::new(),
        }),
    };
    mutate_config(&overrides)
}

fn identity(rng: &mut StdRng) -> Identity {
    if rng.random_bool(0.3) {
        Identity::ContainerCredentials(CommonConfig {
            use_regional_sts: rng.random(),
            token_expiration: [86_400, 3600][rng.random_range(0..2)],
        })
    } else {
        Identity::Sts(StsIdentity {
            role_arn: "arn:aws:iam::111122223333:role/r".into(),
            audience: ["", "sts.amazonaws.com"][rng.random_range(0..2)].into(),
            use_regional_sts: rng.random(),
            token_expiration: 86_400,
            inject_sidecar: [None, Some(true), Some(false)][rng.random_range(0..3)],
        })
    }
}

#[test]
fn generated_pods_keep_the_invariants() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0100);
    let mut sidecars = 0;
    for round in 0..3000 {
        let (pod, skip) = random_pod(&mut rng);
        let config = config(&mut rng);
        let identity = identity(&mut rng);
        let mut jitter = |lo: i64, hi: i64| (lo + hi) / 2;
        let m = mutate::mutate(&pod, &identity, &config, &mut jitter).expect("valid pod mutates");
        let mutated = apply_patch(&pod, &m.patch_json());
        sidecars += usize::from(m.sidecar);

        // Reinvocation: nothing changes.
        let again = mutate::mutate(&mutated, &identity, &config, &mut jitter).unwrap();
        assert!(
            !again.changed,
            "round {round}: second mutation reported a change\n{pod:#}"
        );
        assert_eq!(
            apply_patch(&mutated, &again.patch_json()),
            mutated,
            "round {round}"
        );

        // Unknown fields survive.
        assert_eq!(mutated["metadata"]["futureMeta"], true);
        assert_eq!(mutated["spec"]["futureSpec"], json!([1, 2, 3]));
        for key in ["containers", "initContainers"] {
            let before = pod["spec"][key].as_array().cloned().unwrap_or_default();
            let after = mutated["spec"][key].as_array().cloned().unwrap_or_default();
            for c in &before {
                let name = c["name"].as_str().unwrap();
                let out = after
                    .iter()
                    .find(|o| o["name"] == name)
                    .expect("container kept");
                assert_eq!(out["futureField"], c["futureField"], "round {round}");
                if skip.contains(name) {
                    assert_eq!(out, c, "round {round}: skipped container {name} changed");
                    continue;
                }
                // Every other container has an identity: its own (pair rule) or the injected one.
                let names = env_names(out);
                let has = |a: &str, b: &str| names.contains(a) || names.contains(b);
                let ok = match (&identity, m.sidecar) {
                    (Identity::ContainerCredentials(_), _) | (_, true) => has(
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    ),
                    (Identity::Sts(_), false) => has("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"),
                };
                assert!(ok, "round {round}: {name} has no identity: {out:#}");
                // Env entries only ever get appended.
                let before_env = c["env"].as_array().cloned().unwrap_or_default();
                let after_env = out["env"].as_array().cloned().unwrap_or_default();
                assert_eq!(
                    &after_env[..before_env.len()],
                    &before_env[..],
                    "round {round}"
                );
            }
        }
        // Volume names stay unique (the API server would reject duplicates).
        let volumes: Vec<&str> = mutated["spec"]["volumes"]
            .as_array()
            .map(|v| v.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        let unique: HashSet<&&str> = volumes.iter().collect();
        let duplicates_before = pod["spec"]["volumes"].as_array().map_or(0, |v| {
            v.len()
                - v.iter()
                    .filter_map(|v| v["name"].as_str())
                    .collect::<HashSet<_>>()
                    .len()
        });
        assert_eq!(
            volumes.len() - unique.len(),
            duplicates_before,
            "round {round}: {volumes:?}"
        );
        if m.sidecar {
            let count = ["containers", "initContainers"]
                .iter()
                .flat_map(|k| mutated["spec"][k].as_array().cloned().unwrap_or_default())
                .filter(|c| c["name"] == "credproxy")
                .count();
            assert_eq!(count, 1, "round {round}");
        }
    }
    assert!(
        sidecars > 100,
        "the generator exercises the sidecar path ({sidecars})"
    );
}
