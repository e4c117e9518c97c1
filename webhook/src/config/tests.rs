use super::*;

fn serve(args: &[&str]) -> Config {
    let mut argv = vec!["webhook", "--in-cluster=false"];
    argv.extend_from_slice(args);
    match parse(argv) {
        Ok(Command::Serve(c)) => *c,
        other => panic!("expected Serve, got {other:?}"),
    }
}

fn rejected(args: &[&str]) -> Rejected {
    match parse(args.iter().copied()) {
        Err(r) => r,
        Ok(other) => panic!("expected rejection, got {other:?}"),
    }
}

#[test]
fn defaults_match_upstream() {
    let c = serve(&[]);
    assert_eq!(c.port, 443);
    assert_eq!(c.metrics_port, 9999);
    assert_eq!(c.kubeconfig, None);
    assert_eq!(c.kube_api, None);
    assert_eq!(c.tls_key, PathBuf::from("/etc/webhook/certs/tls.key"));
    assert_eq!(c.tls_cert, PathBuf::from("/etc/webhook/certs/tls.crt"));
    assert_eq!(c.tls, certs::TlsPolicy::default());
    assert_eq!(c.service_name, "pod-identity-webhook");
    assert_eq!(c.namespace, "eks");
    assert_eq!(c.tls_secret, "pod-identity-webhook");
    assert_eq!(c.annotation_prefix, "eks.amazonaws.com");
    assert_eq!(c.token_audience, "sts.amazonaws.com");
    assert_eq!(
        c.token_mount_path,
        "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    );
    assert_eq!(c.token_expiration, 86400);
    assert_eq!(c.aws_default_region, "");
    assert!(!c.sts_regional_endpoint);
    assert!(!c.watch_config_map);
    assert!(!c.compose_role_arn);
    assert_eq!(c.watch_container_credentials_config, None);
    assert_eq!(c.container_credentials.audience, "pods.eks.amazonaws.com");
    assert_eq!(
        c.container_credentials.mount_path,
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
    );
    assert_eq!(
        c.container_credentials.volume_name,
        "eks-pod-identity-token"
    );
    assert_eq!(c.container_credentials.token_path, "eks-pod-identity-token");
    assert_eq!(
        c.container_credentials.full_uri,
        "http://169.254.170.23/v1/credentials"
    );
    assert!(!c.enable_debugging_handlers);
    assert_eq!(c.service_account_lookup_grace_period, Duration::ZERO);
    assert_eq!(c.resync_period, Duration::from_secs(60));
    assert_eq!(c.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
    assert_eq!(c.log.verbosity, 0);
    assert_eq!(c.log.format, LogFormat::Plain);
    assert!(c.log.ignored.is_empty());
    assert_eq!(c.sidecar, None);
}

#[test]
fn in_cluster_default_fails_fast_with_pointer_to_tls_flags() {
    let r = rejected(&["webhook"]);
    assert_eq!(r.exit_code, 64);
    assert_eq!(r.messages.len(), 1);
    assert!(
        r.messages[0].contains("--in-cluster=false"),
        "{:?}",
        r.messages
    );
    assert!(r.messages[0].contains("--tls-cert"), "{:?}", r.messages);
    let r = rejected(&["webhook", "--in-cluster"]);
    assert_eq!(r.exit_code, 64);
}

#[test]
fn upstream_deployment_args_parse() {
    // deploy/deployment-base.yaml of upstream, plus what EKS/kOps/Helm pass.
    let c = serve(&[
        "--namespace=default",
        "--service-name=pod-identity-webhook",
        "--annotation-prefix=eks.amazonaws.com",
        "--token-audience=sts.amazonaws.com",
        "--logtostderr",
        "-v=4",
    ]);
    assert_eq!(c.namespace, "default");
    assert_eq!(c.log.verbosity, 4);
    assert_eq!(c.log.level(), tracing::Level::DEBUG);
}

#[test]
fn both_value_syntaxes() {
    let a = serve(&[
        "--port",
        "8443",
        "--metrics-port=9998",
        "--aws-default-region",
        "us-west-2",
    ]);
    assert_eq!((a.port, a.metrics_port), (8443, 9998));
    assert_eq!(a.aws_default_region, "us-west-2");
    let v = serve(&["-v", "5"]);
    assert_eq!(v.log.verbosity, 5);
    let v = serve(&["--v=3"]);
    assert_eq!(v.log.verbosity, 3);
    let v = serve(&["--v", "2"]);
    assert_eq!(v.log.verbosity, 2);
}

#[test]
fn go_style_booleans() {
    let c = serve(&[
        "--sts-regional-endpoint",
        "--watch-config-map=true",
        "--compose-role-arn=1",
    ]);
    assert!(c.sts_regional_endpoint && c.watch_config_map && c.compose_role_arn);
    let c = serve(&[
        "--sts-regional-endpoint=false",
        "--enable-debugging-handlers=T",
    ]);
    assert!(!c.sts_regional_endpoint && c.enable_debugging_handlers);
    let c = serve(&["--logtostderr=false", "--alsologtostderr"]);
    assert_eq!(c.log.ignored.len(), 1);
    let r = rejected(&["webhook", "--in-cluster=false", "--watch-config-map=yes"]);
    assert_eq!(r.exit_code, 2);
    assert!(
        r.messages[0].contains("invalid boolean"),
        "{:?}",
        r.messages
    );
}

#[test]
fn go_durations() {
    let c = serve(&[
        "--service-account-lookup-grace-period=100ms",
        "--resync-period",
        "1m30s",
    ]);
    assert_eq!(
        c.service_account_lookup_grace_period,
        Duration::from_millis(100)
    );
    assert_eq!(c.resync_period, Duration::from_secs(90));
    // Negative grace period = disabled.
    let c = serve(&["--service-account-lookup-grace-period=-5s"]);
    assert_eq!(c.service_account_lookup_grace_period, Duration::ZERO);
    let r = rejected(&["webhook", "--resync-period=60"]);
    assert_eq!(r.exit_code, 2);
}

#[test]
fn token_expiration_is_clamped() {
    assert_eq!(serve(&["--token-expiration=0"]).token_expiration, 600);
    assert_eq!(serve(&["--token-expiration=599"]).token_expiration, 600);
    assert_eq!(serve(&["--token-expiration=3600"]).token_expiration, 3600);
    assert_eq!(serve(&["--token-expiration=-7"]).token_expiration, 600);
}

#[test]
fn tls_min_version_is_parsed_by_certs() {
    for (value, expected) in [
        ("1.2", certs::TlsVersion::V1_2),
        ("VersionTLS12", certs::TlsVersion::V1_2),
        ("1.3", certs::TlsVersion::V1_3),
        ("VersionTLS13", certs::TlsVersion::V1_3),
    ] {
        let c = serve(&[&format!("--tls-min-version={value}")]);
        assert_eq!(c.tls.min_version, Some(expected), "{value}");
        assert_eq!(c.tls.raised_min_version_warning(), None, "{value}");
    }
    let r = rejected(&["webhook", "--in-cluster=false", "--tls-min-version=1.4"]);
    assert_eq!(r.exit_code, 64);
    assert_eq!(
        r.messages,
        vec!["Invalid value for tls-min-version unsupported version 1.4"]
    );
}

#[test]
fn tls_min_version_below_1_2_is_accepted_for_existing_deployments() {
    for (value, expected) in [
        ("1.0", certs::TlsVersion::V1_0),
        ("VersionTLS10", certs::TlsVersion::V1_0),
        ("1.1", certs::TlsVersion::V1_1),
        ("VersionTLS11", certs::TlsVersion::V1_1),
    ] {
        let c = serve(&[&format!("--tls-min-version={value}")]);
        assert_eq!(c.tls.min_version, Some(expected), "{value}");
        // What main logs once at startup.
        let warning = c.tls.raised_min_version_warning().expect(value);
        assert!(
            warning.contains("effective minimum is TLS 1.2"),
            "{warning}"
        );
    }
}

#[test]
fn tls_cipher_suites_are_parsed_by_certs() {
    let c = serve(&[
        "--tls-cipher-suites= TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,,TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 ",
    ]);
    let tls12: Vec<_> = c
        .tls
        .tls12_cipher_suites
        .expect("suites")
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    // In order; the TLS 1.3 name is accepted and ignored, as in Go.
    assert_eq!(
        tls12,
        vec![
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        ]
    );
    assert_eq!(
        serve(&["--tls-cipher-suites= , "]).tls.tls12_cipher_suites,
        None
    );
}

#[test]
fn tls_cipher_suite_rustls_lacks_is_rejected_naming_the_alternatives() {
    let r = rejected(&[
        "webhook",
        "--in-cluster=false",
        "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA",
    ]);
    assert_eq!(r.exit_code, 64);
    assert_eq!(r.messages.len(), 1, "{:#?}", r.messages);
    let message = &r.messages[0];
    assert!(
        message.starts_with(
            "invalid tls-cipher-suites: TLS_RSA_WITH_AES_128_CBC_SHA is a Go cipher suite that rustls does not implement"
        ),
        "{message}"
    );
    assert!(
        message.contains("instead: TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        "{message}"
    );
}

#[test]
fn tls_flag_problems_are_one_line_each_among_others() {
    let r = rejected(&[
        "webhook",
        "--in-cluster=false",
        "--tls-min-version=tls1.2",
        "--tls-cipher-suites=NOPE,TLS_RSA_WITH_AES_128_CBC_SHA",
        "--port=70000",
        "--sidecar-image=x",
        "--sidecar-mode=pod",
    ]);
    assert_eq!(r.exit_code, 64);
    assert_eq!(r.messages.len(), 4, "{:#?}", r.messages);
    assert!(r
        .messages
        .contains(&"Invalid value for tls-min-version unsupported version tls1.2".to_string()));
    // Upstream's message; like Go, the first bad name is the one reported.
    assert!(r
        .messages
        .contains(&"invalid tls-cipher-suites: unsupported cipher suite: NOPE".to_string()));
    assert!(r.messages.iter().any(|m| m.starts_with("--port=70000")));
    assert!(r.messages.iter().any(|m| m.starts_with("--sidecar-mode=")));
    assert!(r.messages.iter().all(|m| !m.contains('\n')));
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let r = rejected(&["webhook", "--in-cluster=false", "--no-such-flag"]);
    assert_eq!(r.exit_code, 2);
    let r = rejected(&["webhook", "--in-cluster=false", "--port=abc"]);
    assert_eq!(r.exit_code, 2);
}

#[test]
fn version_and_help() {
    assert!(matches!(parse(["webhook", "--version"]), Ok(Command::Print(s)) if s == "v0.1.0\n"));
    match parse(["webhook", "--help"]) {
        Ok(Command::Print(s)) => {
            assert!(s.contains("--token-expiration"));
            assert!(s.contains("--sidecar-image"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn klog_flags_accepted() {
    let c = serve(&[
        "--alsologtostderr",
        "--stderrthreshold=INFO",
        "--vmodule=handler*=5",
        "--add_dir_header",
        "--log_backtrace_at=:0",
        "--log_dir=/tmp",
        "--log_file=/tmp/x",
        "--log_file_max_size=10",
        "--one_output=true",
        "--skip_headers",
        "--skip_log_headers",
        "--legacy_stderr_threshold_behavior=false",
        "--log-format=json",
    ]);
    assert_eq!(c.log.vmodule, "handler*=5");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.ignored.len(), 4, "{:?}", c.log.ignored);
}

#[test]
fn sidecar_flags() {
    let c = serve(&[
        "--sidecar-image=ghcr.io/podcred/credproxy:0.1.0",
        "--sidecar-mode=container",
        "--sidecar-port=9000",
        "--sidecar-cpu-limit=0.5",
        "--sidecar-memory-request=",
        "--sidecar-image-pull-policy=IfNotPresent",
    ]);
    let s = c.sidecar.expect("sidecar enabled");
    assert_eq!(s.image, "ghcr.io/podcred/credproxy:0.1.0");
    assert_eq!(s.mode, SidecarMode::Container);
    assert_eq!(s.port, 9000);
    assert_eq!(s.cpu_request.as_deref(), Some("10m"));
    assert_eq!(s.cpu_limit.as_deref(), Some("0.5"));
    assert_eq!(s.memory_request, None);
    assert_eq!(s.memory_limit.as_deref(), Some("64Mi"));
    assert_eq!(s.annotation_prefix, "podcred.dev");
    assert_eq!(s.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(s.run_as_user, 65532);
    let r = rejected(&[
        "webhook",
        "--in-cluster=false",
        "--sidecar-image=x",
        "--sidecar-port=65535",
        "--sidecar-memory-limit=lots",
        "--sidecar-image-pull-policy=Sometimes",
        "--sidecar-run-as-user=0",
    ]);
    assert_eq!(r.messages.len(), 4, "{:#?}", r.messages);
}

#[test]
fn quantities() {
    for ok in ["10m", "0.5", "1", "64Mi", "1e3", "1E-2", "+1", ".5", "2Gi"] {
        assert!(is_quantity(ok), "{ok} rejected");
    }
    for bad in ["", "lots", "1.2.3", "Mi", "1MB", "1e", "--1", "."] {
        assert!(!is_quantity(bad), "{bad} accepted");
    }
}

#[test]
fn inject_subcommand() {
    let cmd = parse([
        "webhook",
        "inject",
        "--aws-default-region=eu-west-1",
        "-f",
        "a.yaml",
        "-f=-",
        "--filename",
        "b.yaml",
    ])
    .expect("inject parses");
    let Command::Inject(inject) = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(
        inject.inputs,
        vec![
            InputSource::File("a.yaml".into()),
            InputSource::Stdin,
            InputSource::File("b.yaml".into())
        ]
    );
    assert_eq!(inject.config.aws_default_region, "eu-west-1");
    // `--in-cluster` is irrelevant offline; --compose-role-arn cannot work offline.
    let r = rejected(&["webhook", "inject", "--compose-role-arn", "-f", "x"]);
    assert_eq!(r.exit_code, 64);
    let r = rejected(&["webhook", "inject"]);
    assert_eq!(r.exit_code, 2, "-f is required");
}

#[test]
fn inject_help_lists_only_the_flags_that_change_the_mutation() {
    let Ok(Command::Print(help)) = parse(["webhook", "inject", "--help"]) else {
        panic!("inject --help prints help")
    };
    for shown in [
        "--filename",
        "--annotation-prefix",
        "--token-audience",
        "--token-expiration",
        "--token-mount-path",
        "--aws-default-region",
        "--sts-regional-endpoint",
        "--watch-config-map",
        "--namespace",
        "--watch-container-credentials-config",
        "--container-credentials-audience",
        "--sidecar-image",
        "--sidecar-port",
    ] {
        assert!(help.contains(shown), "{shown} missing from:\n{help}");
    }
    for hidden in [
        "--port",
        "--metrics-port",
        "--tls-cert",
        "--tls-key",
        "--kubeconfig",
        "--kube-api",
        "--in-cluster",
        "--resync-period",
        "--logtostderr",
        "--log-format",
        "--max-request-bytes",
    ] {
        assert!(
            !help.contains(&format!("{hidden} "))
                && !help.contains(&format!("{hidden}="))
                && !help.contains(&format!("{hidden}\n")),
            "{hidden} shown in:\n{help}"
        );
    }
    // Hidden, still accepted: the server's command line works unchanged.
    assert!(matches!(
        parse([
            "webhook",
            "inject",
            "--in-cluster=false",
            "--port=8443",
            "--tls-cert=x",
            "--kubeconfig=y",
            "-v=4",
            "-f",
            "-",
        ]),
        Ok(Command::Inject(_))
    ));
    // The server's help still lists everything.
    let Ok(Command::Print(server_help)) = parse(["webhook", "--help"]) else {
        panic!("--help prints help")
    };
    assert!(server_help.contains("--tls-cert"), "{server_help}");
}
