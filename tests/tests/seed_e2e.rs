//! The seed's flow end to end, as `make demo` runs it: moto's STS ← credproxy (web-identity token) ← gateway
//! (the seed's manifests, unchanged; credentials through AWS_CONTAINER_CREDENTIALS_FULL_URI) → serverless-offline
//! running the seed's Node.js `echo` function; the client is the seed's own curl command.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use integration::gateway::{Gateway, Sidecar};
use integration::moto::Moto;
use integration::serverless::ServerlessOffline;
use integration::{free_port, isolated_command, workspace_root};

/// The response the seed documents, byte for byte.
const SEED_RESPONSE: &str = r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#;

fn seed_curl(port: u16) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            &format!("localhost:{port}/echo"),
            "-d",
            r#"{"key1":"value1", "key2":"value2"}"#,
            "-X",
            "POST",
        ])
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
#[ignore = "needs peers: run make test"]
fn the_seeds_curl_gets_the_seeds_documented_response() {
    let moto = Moto::start_plain();
    let sls = ServerlessOffline::start();
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(
        dir.path(),
        &moto.endpoint(),
        "arn:aws:iam::123456789012:role/lambda-role",
        &[],
    );
    let routes = workspace_root().join("deploy/demo/seed-routes.yaml");
    let mut env = sidecar.app_env();
    env.push(("AWS_REGION", "us-east-1".into()));
    env.push(("AWS_ENDPOINT_URL_LAMBDA", sls.endpoint()));
    let gateway = Gateway::start(&routes, &env, &[]);
    gateway.wait_ready(Duration::from_secs(15));

    assert_eq!(
        seed_curl(gateway.addr.port()),
        SEED_RESPONSE,
        "gateway log:\n{}",
        gateway.log()
    );

    // The credentials really came from moto's STS through credproxy (temporary ASIA keys), not from anywhere else.
    let (_, ready) = integration::gateway::http_get(gateway.admin, "/readyz");
    assert!(
        ready.contains(&format!(
            "container credentials endpoint http://127.0.0.1:{}/v1/credentials",
            sidecar.port
        )),
        "{ready}"
    );
    assert!(
        gateway.log().contains("access_key_id=\"ASIA"),
        "{}",
        gateway.log()
    );
}

#[test]
#[ignore = "needs peers: run make test"]
fn make_demo_prints_the_seeds_response_and_stops_everything_it_started() {
    // credproxy's metrics listener takes CREDPROXY_PORT + 1 (the sidecar contract): keep it free and distinct.
    let ports = loop {
        let ports = [free_port(), free_port(), free_port()];
        let metrics = ports[2] + 1;
        if !ports.contains(&metrics) && std::net::TcpListener::bind(("127.0.0.1", metrics)).is_ok()
        {
            break ports;
        }
    };
    let mut cmd = isolated_command("bash");
    cmd.arg(workspace_root().join("deploy/demo/demo.sh"))
        .env("DEMO_SKIP_BUILD", "1")
        .env("GATEWAY_PORT", ports[0].to_string())
        .env("GATEWAY_ADMIN_PORT", ports[1].to_string())
        .env("CREDPROXY_PORT", ports[2].to_string());
    let out = cmd.output().expect("run demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == SEED_RESPONSE), "{stdout}");
    // credproxy and the gateway were run from what `webhook inject` made of the seed's pod, not by hand.
    for derived in [
        format!(
            "$ webhook inject --sidecar-image=ghcr.io/podcred/credproxy:0.1.0 --sidecar-port={}",
            ports[2]
        ),
        "      initContainers:\n      - name: credproxy".to_string(),
        "credproxy: env AWS_ROLE_ARN=arn:aws:iam::123456789012:role/lambda-role".to_string(),
        "(in the pod: /var/run/secrets/eks.amazonaws.com/serviceaccount/token)".to_string(),
        format!(
            "gateway: env AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:{}/v1/credentials",
            ports[2]
        ),
        "(in the pod: /var/run/podcred/auth/token)".to_string(),
        "(demo-local addition: moto instead of AWS STS)".to_string(),
        "(demo-local addition: serverless-offline instead of AWS Lambda)".to_string(),
    ] {
        assert!(
            stdout.contains(&derived),
            "missing {derived:?} in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("stopped everything the demo started"),
        "{stdout}"
    );
    for port in [ports[0], ports[1], ports[2], ports[2] + 1] {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "port {port} still open after the demo"
        );
    }
}

/// The demo's pod translator refuses what it cannot run faithfully, naming the container and the field.
#[test]
#[ignore = "needs peers: run make test"]
fn the_demo_pod_translator_rejects_what_it_cannot_run_locally() {
    let python = integration::require_peer(
        integration::cache_dir().join("venv/bin/python"),
        "install-moto.sh",
    );
    let dir = tempfile::tempdir().unwrap();
    let sidecar =
        "  initContainers:\n  - name: credproxy\n    image: cp\n    restartPolicy: Always\n";
    let cases = [
        (
            "    env:\n    - name: AWS_ROLE_ARN\n      valueFrom: {secretKeyRef: {name: s, key: k}}\n",
            "cp",
            "container 'credproxy': env AWS_ROLE_ARN uses valueFrom",
        ),
        ("", "other", "container 'credproxy': image 'cp' has no local binary (pass --image cp=PATH)"),
    ];
    for (extra, image, expected) in cases {
        let pod = dir.path().join("pod.yaml");
        std::fs::write(
            &pod,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{sidecar}{extra}  containers:\n  - name: app\n    image: app\n"
            ),
        )
        .unwrap();
        let out = Command::new(&python)
            .arg(workspace_root().join("deploy/demo/pod_to_local.py"))
            .args(["--pod", pod.to_str().unwrap(), "--root"])
            .arg(dir.path().join("root"))
            .arg("--out")
            .arg(dir.path().join("pod.env"))
            .args([
                "--app",
                "app",
                "--image",
                &format!("{image}=/bin/true"),
                "--image",
                "app=/bin/true",
            ])
            .output()
            .expect("run pod_to_local.py");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted {extra:?}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!dir.path().join("pod.env").exists());
    }
}
