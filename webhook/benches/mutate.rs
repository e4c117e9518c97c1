//! The whole `/mutate` path without the network: Content-Type check, AdmissionReview JSON parse, identity
//! resolution (an in-memory source), mutation, patch serialisation, base64 and response encoding.
//! Run: `cargo bench -p webhook --bench mutate`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use webhook::admission::{Admission, Outcome};
use webhook::identity::{BoxFuture, CommonConfig, IdentitySource, StsIdentity, StsLookup};
use webhook::mutate::{ContainerCredentialsSettings, MutateConfig};

struct OneRole;

impl IdentitySource for OneRole {
    fn container_credentials(&self, _: &str, _: &str) -> bool {
        false
    }
    fn common_config(&self, _: &str, _: &str) -> CommonConfig {
        CommonConfig::default()
    }
    fn sts_identity<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, StsLookup> {
        Box::pin(async {
            StsLookup::Found(StsIdentity {
                role_arn: "arn:aws:iam::111122223333:role/s3-reader".into(),
                audience: "sts.amazonaws.com".into(),
                use_regional_sts: true,
                token_expiration: 86400,
                inject_sidecar: None,
            })
        })
    }
}

fn config() -> MutateConfig {
    MutateConfig {
        annotation_prefix: "eks.amazonaws.com".into(),
        token_mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        aws_default_region: "eu-west-1".into(),
        container_credentials: ContainerCredentialsSettings {
            audience: "pods.eks.amazonaws.com".into(),
            mount_path: "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount".into(),
            volume_name: "eks-pod-identity-token".into(),
            token_path: "eks-pod-identity-token".into(),
            full_uri: "http://169.254.170.23/v1/credentials".into(),
        },
        sidecar: None,
    }
}

/// A realistic container: image, args, ports, env, resources, probes, mounts, security context.
fn container(i: usize) -> Value {
    json!({
        "name": format!("app-{i}"),
        "image": "registry.example.com/team/app:1.2.3",
        "args": ["--port=8080", "--log-level=info"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LOG_FORMAT", "value": "json"},
            {"name": "FEATURE_FLAGS", "value": "a,b,c"}
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": true},
            {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
        ],
        "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    })
}

/// An AdmissionReview as the API server sends it (defaulted pod, managed fields omitted).
fn review(containers: usize) -> Vec<u8> {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "918ef1dc-928f-4525-99ef-988389f263c3",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "u",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": {
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {
                    "generateName": "app-7d9f8b6c5d-",
                    "namespace": "team-a",
                    "labels": {"app": "app", "pod-template-hash": "7d9f8b6c5d"},
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f8b6c5d",
                                         "uid": "c0ffee", "controller": true, "blockOwnerDeletion": true}]
                },
                "spec": {
                    "volumes": [
                        {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
                        {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                        ]}}
                    ],
                    "containers": (0..containers).map(container).collect::<Vec<_>>(),
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "serviceAccountName": "app",
                    "serviceAccount": "app",
                    "securityContext": {"fsGroup": 2000},
                    "schedulerName": "default-scheduler",
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                    "priority": 0,
                    "enableServiceLinks": true,
                    "preemptionPolicy": "PreemptLowerPriority"
                },
                "status": {}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    serde_json::to_vec(&review).unwrap()
}

fn bench(c: &mut Criterion) {
    let admission = Admission::with_jitter(config(), Arc::new(OneRole), Arc::new(|lo, _| lo));
    let mut group = c.benchmark_group("mutate");
    for (name, containers) in [("typical_pod_1_container", 1), ("pod_20_containers", 20)] {
        let body = review(containers);
        let check = futures::executor::block_on(admission.handle(Some("application/json"), &body));
        assert!(
            matches!(check.outcome, Outcome::Mutated(_)),
            "{name} must be mutated"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        // Baseline: just parsing the review into a JSON value (what any JSON-speaking webhook pays).
        group.bench_function(format!("{name}/parse_only"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(&body).unwrap())
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                futures::executor::block_on(admission.handle(Some("application/json"), &body))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
