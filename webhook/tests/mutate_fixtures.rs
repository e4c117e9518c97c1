//! Upstream's 24 mutation fixtures (reference §8.1) plus podcred extras, as data under
//! `tests/fixtures/mutate/<case>/{case.yaml,pod.yaml,expected_pod.yaml}`. Each case: resolve the identity
//! like the server does, mutate, apply our patch to the pod and compare with the pod upstream's expected
//! patch produces (normalised per §4.6); then mutate the result again (reinvocation) and check nothing moves.

#[path = "support/fixtures.rs"]
mod fixtures;

use fixtures::*;
use serde_json::Value;
use webhook::mutate::{self, Identity};

fn run_case(name: &str) {
    let dir = fixtures_dir("mutate").join(name);
    let case: CaseFile = read_yaml(&dir.join("case.yaml"));
    let pod: Value = read_yaml(&dir.join("pod.yaml"));
    let expected: Value = read_yaml(&dir.join("expected_pod.yaml"));
    let config = mutate_config(&case.config);
    let source = FakeIdentities(case.cache.clone());
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let service_account = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let identity = futures::executor::block_on(mutate::resolve_identity(
        &source,
        &namespace,
        &service_account,
    ))
    .unwrap_or_else(|reason| panic!("{name}: pod not selected: {reason:?}"));
    // Upstream's harness mocks the random source to 0: the jitter is the range minimum.
    let mut jitter = |lo: i64, _hi: i64| lo;

    let mutation = mutate::mutate(&pod, &identity, &config, &mut jitter).expect("mutates");
    assert!(
        mutation.patch.iter().all(|op| op.op == "add"),
        "{name}: upstream only emits add"
    );
    let mutated = apply_patch(&pod, &mutation.patch_json());
    assert_same_pod(name, &mutated, &expected);

    // Reinvocation / idempotence: the mutated pod mutated again stays equal to itself.
    let again = mutate::mutate(&mutated, &identity, &config, &mut jitter).expect("mutates again");
    assert!(!again.changed, "{name}: second mutation reported a change");
    let twice = apply_patch(&mutated, &again.patch_json());
    assert_eq!(twice, mutated, "{name}: second mutation changed the pod");

    // Upstream's patch shape (§4.5): containers op always present; initContainers op iff init containers.
    let paths: Vec<&str> = mutation.patch.iter().map(|op| op.path.as_str()).collect();
    assert!(paths.contains(&"/spec/containers"), "{name}: {paths:?}");
    let has_init = mutated["spec"]["initContainers"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    assert_eq!(
        paths.contains(&"/spec/initContainers"),
        has_init,
        "{name}: {paths:?}"
    );
    let expects_sidecar = [
        "sidecar-native",
        "sidecar-container-mode",
        "sidecar-skip",
        "sidecar-carries",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix));
    assert_eq!(mutation.sidecar, expects_sidecar, "{name}: sidecar flag");
    if let Identity::ContainerCredentials(_) = identity {
        assert!(
            paths[0].starts_with("/metadata/labels"),
            "{name}: label op first: {paths:?}"
        );
    }
}

macro_rules! fixture_tests {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $( #[test] fn $test() { run_case($dir); } )*
        const LISTED: &[&str] = &[$($dir),*];
    };
}

fixture_tests! {
    irsa_raw_pod_without_volumes => "irsa-raw-pod-without-volumes",
    irsa_raw_pod_with_volumes => "irsa-raw-pod-with-volumes",
    irsa_raw_pod_needs_region => "irsa-raw-pod-needs-region",
    irsa_raw_pod_region_present => "irsa-raw-pod-region-present",
    irsa_raw_pod_needs_sts => "irsa-raw-pod-needs-sts",
    irsa_raw_pod_has_sts => "irsa-raw-pod-has-sts",
    irsa_raw_pod_has_token_expiration => "irsa-raw-pod-has-token-expiration",
    irsa_raw_pod_min_token_expiration => "irsa-raw-pod-min-token-expiration",
    irsa_raw_pod_has_all => "irsa-raw-pod-has-all",
    irsa_raw_pod_no_sts_annotation_override => "irsa-raw-pod-no-sts-annotation-override",
    irsa_raw_pod_skip => "irsa-raw-pod-skip",
    irsa_raw_pod_has_volume_mount => "irsa-raw-pod-has-volume-mount",
    irsa_raw_pod_with_init_container => "irsa-raw-pod-with-init-container",
    irsa_init_pod_needs_region => "irsa-init-pod-needs-region",
    irsa_raw_pod_with_grpc => "irsa-raw-pod-with-grpc",
    irsa_raw_pod_with_seccomp_profile => "irsa-raw-pod-with-seccomp-profile",
    irsa_windows_pod_without_volumes => "irsa-windows-pod-without-volumes",
    irsa_beta_windows_pod_without_volumes => "irsa-beta-windows-pod-without-volumes",
    cc_raw_pod_without_volumes => "cc-raw-pod-without-volumes",
    cc_raw_pod_with_volume => "cc-raw-pod-with-volume",
    cc_raw_pod_skip => "cc-raw-pod-skip",
    cc_raw_pod_needs_all => "cc-raw-pod-needs-all",
    cc_raw_pod_with_role_arn => "cc-raw-pod-with-role-arn",
    cc_raw_pod_with_conflicting_volume_mount => "cc-raw-pod-with-conflicting-volume-mount",
    cc_existing_labels => "cc-existing-labels",
    cc_label_overwritten => "cc-label-overwritten",
    improvement_unknown_fields_kept => "improvement-unknown-fields-kept",
    sidecar_native_pod_annotation => "sidecar-native-pod-annotation",
    sidecar_container_mode_sa_annotation => "sidecar-container-mode-sa-annotation",
    sidecar_skip_containers_and_existing_endpoint => "sidecar-skip-containers-and-existing-endpoint",
    sidecar_pod_opt_out => "sidecar-pod-opt-out",
    sidecar_disabled_without_image => "sidecar-disabled-without-image",
    sidecar_windows_keeps_irsa => "sidecar-windows-keeps-irsa",
    sidecar_carries_sts_endpoint => "sidecar-carries-sts-endpoint",
    sidecar_container_credentials_win => "sidecar-container-credentials-win",
}

#[test]
fn every_fixture_directory_is_listed() {
    let on_disk = case_dirs("mutate");
    let mut listed: Vec<String> = LISTED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "add new fixture directories to fixture_tests!"
    );
    let upstream = on_disk
        .iter()
        .filter(|n| n.starts_with("irsa-") || n.starts_with("cc-raw-"))
        .count();
    assert_eq!(
        upstream, 24,
        "all 24 upstream fixtures (18 IRSA + 6 CC) are present"
    );
}

#[test]
fn improvement_fixture_keeps_values_byte_for_byte() {
    // Beyond semantic equality: quantities are not re-canonicalised and `<`/`&` are not escaped.
    let dir = fixtures_dir("mutate").join("improvement-unknown-fields-kept");
    let case: CaseFile = read_yaml(&dir.join("case.yaml"));
    let pod: Value = read_yaml(&dir.join("pod.yaml"));
    let identity = futures::executor::block_on(mutate::resolve_identity(
        &FakeIdentities(case.cache.clone()),
        "default",
        "default",
    ))
    .unwrap();
    let m = mutate::mutate(
        &pod,
        &identity,
        &mutate_config(&case.config),
        &mut |lo, _| lo,
    )
    .unwrap();
    let text = String::from_utf8(m.patch_json()).unwrap();
    assert!(text.contains(r#""cpu":"0.5""#), "{text}");
    assert!(text.contains("<b>&</b>"), "{text}");
}
