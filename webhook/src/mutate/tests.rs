use super::*;

fn config() -> MutateConfig {
    MutateConfig {
        annotation_prefix: "eks.amazonaws.com".into(),
        token_mount_path: "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
        aws_default_region: String::new(),
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

fn cc_volume_expiration(m: &Mutation) -> i64 {
    m.patch
        .iter()
        .find(|op| op.path == "/spec/volumes")
        .and_then(|op| {
            op.value[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
                .as_i64()
        })
        .expect("volume op")
}

#[test]
fn jitter_only_on_exactly_86400_in_cc_mode() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
    let mut calls = Vec::new();
    let mut jitter = |lo: i64, hi: i64| {
        calls.push((lo, hi));
        80_000
    };
    let cc = Identity::ContainerCredentials(CommonConfig::default());
    let m = mutate(&pod, &cc, &config(), &mut jitter).unwrap();
    assert_eq!(cc_volume_expiration(&m), 80_000);
    assert_eq!(calls, vec![(79_200, 86_400)]);

    let cc = Identity::ContainerCredentials(CommonConfig {
        use_regional_sts: false,
        token_expiration: 10_000,
    });
    let m = mutate(&pod, &cc, &config(), &mut |_, _| panic!("no jitter")).unwrap();
    assert_eq!(cc_volume_expiration(&m), 10_000);

    // A jitter source out of range is clamped into upstream's range.
    let cc = Identity::ContainerCredentials(CommonConfig::default());
    let m = mutate(&pod, &cc, &config(), &mut |_, _| 5).unwrap();
    assert_eq!(cc_volume_expiration(&m), 79_200);
}

#[test]
fn irsa_has_no_jitter() {
    let pod = json!({"spec": {"containers": [{"name": "c"}]}});
    let sts = Identity::Sts(StsIdentity {
        role_arn: "arn:aws:iam::111122223333:role/r".into(),
        audience: String::new(),
        use_regional_sts: false,
        token_expiration: 86_400,
        inject_sidecar: None,
    });
    let m = mutate(&pod, &sts, &config(), &mut |_, _| panic!("no jitter")).unwrap();
    let token = &m.patch[0].value[0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(
        token,
        &json!({"expirationSeconds": 86400, "path": "token"}),
        "empty audience omitted"
    );
}

#[test]
fn wrong_types_are_go_style_errors() {
    let sts = Identity::Sts(StsIdentity {
        role_arn: "r".into(),
        ..Default::default()
    });
    let err = |pod: Value| mutate(&pod, &sts, &config(), &mut |a, _| a).unwrap_err().0;
    assert_eq!(
        err(json!("x")),
        "json: cannot unmarshal string into Go value of type v1.Pod"
    );
    assert_eq!(
        err(json!({"spec": {"containers": "x"}})),
        "json: cannot unmarshal string into Go struct field Pod.spec.containers of type []v1.Container"
    );
    assert_eq!(
        err(json!({"spec": {"containers": [{"name": "c", "env": [{"name": 5}]}]}})),
        "json: cannot unmarshal number into Go struct field Pod.spec.containers.env.name of type string"
    );
    assert_eq!(
        err(json!({"metadata": {"annotations": {"a": 1}}})),
        "json: cannot unmarshal number into Go struct field Pod.metadata.annotations of type string"
    );
}

#[test]
fn missing_spec_and_metadata_still_give_an_applicable_patch() {
    let pod = json!({});
    let cc = Identity::ContainerCredentials(CommonConfig {
        use_regional_sts: false,
        token_expiration: 3600,
    });
    let m = mutate(&pod, &cc, &config(), &mut |a, _| a).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&m.patch_json()).unwrap();
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc["metadata"]["labels"][POD_IDENTITY_LABEL], "enabled");
    assert_eq!(doc["spec"]["volumes"][0]["name"], "eks-pod-identity-token");
}

#[test]
fn mode_labels() {
    assert_eq!(Mode::StsWebIdentity.metric_label(), "sts_web_identity");
    assert_eq!(
        Mode::ContainerCredentials.metric_label(),
        "container_credentials"
    );
}
