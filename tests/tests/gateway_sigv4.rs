//! SigV4 through the gateway, checked by a verifier: the moto wrapper with SigV4/IAM enforcement on
//! (tests/peers/moto_wrapper.py) in "lambda-simple" mode (no Docker), with credentials from credproxy, which
//! exchanges a web-identity token at moto's STS — the seed's chain, on loopback.

use std::time::{Duration, Instant};

use integration::gateway::{http_get, CountingProxy, Gateway, Sidecar};
use integration::moto::Moto;
use serde_json::{json, Value};

fn allow_invoke() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]})
}

fn deny_invoke() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "lambda:InvokeFunction", "Resource": "*"}
    ]})
}

/// The seed's manifests with the Lambda endpoint pointed at `endpoint`, plus an optional `auth` block.
fn seed_config(endpoint: &str, auth: &str, extra_docs: &str) -> String {
    format!(
        r#"kind: Gateway
apiVersion: gateway.networking.k8s.io/v1
metadata: {{name: http, namespace: kgateway-system}}
spec:
  gatewayClassName: kgateway
  listeners: [{{protocol: HTTP, port: 8080, name: http}}]
---
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata: {{name: lambda, namespace: kgateway-system}}
spec:
  type: AWS
  aws:
    region: us-east-1
    accountId: "123456789012"
{auth}    lambda:
      functionName: echo
      endpointURL: "{endpoint}"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: lambda, namespace: kgateway-system}}
spec:
  parentRefs: [{{name: http, namespace: kgateway-system}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /echo}}}}]
    backendRefs: [{{name: lambda, namespace: kgateway-system, group: gateway.kgateway.dev, kind: Backend}}]
{extra_docs}"#
    )
}

async fn seed_curl(gateway: &Gateway) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(gateway.url("/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        // A client's own signature and x-amz-* headers must never reach the signed request.
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00")
        .header("x-amz-security-token", "client-token")
        .header("x-amz-invocation-type", "Event")
        .body(r#"{"key1":"value1", "key2":"value2"}"#)
        .send()
        .await
        .expect("request through the gateway");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn allowed_role_is_served_denied_role_and_wrong_secret_are_mapped() {
    let moto = Moto::start_wrapped(false);
    moto.use_lambda_simple();
    let allowed = moto.create_role("gateway-allowed", Some(&allow_invoke()));
    let denied = moto.create_role("gateway-denied", Some(&deny_invoke()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("allowed")).unwrap();
    std::fs::create_dir_all(dir.path().join("denied")).unwrap();
    let sidecar_flags = ["--expiry-margin=1s", "--ready-min-life=1s"];
    let allowed_sidecar = Sidecar::start(
        &dir.path().join("allowed"),
        &moto.endpoint(),
        &allowed,
        &sidecar_flags,
    );
    let denied_sidecar = Sidecar::start(
        &dir.path().join("denied"),
        &moto.endpoint(),
        &denied,
        &sidecar_flags,
    );

    let config = dir.path().join("seed.yaml");
    std::fs::write(&config, seed_config(&moto.endpoint(), "", "")).unwrap();

    // Allowed role: moto verifies the signature and the IAM policy, then answers the queued result.
    let gateway = Gateway::start(&config, &allowed_sidecar.app_env(), &[]);
    gateway.wait_ready(Duration::from_secs(15));
    moto.queue_lambda_results(&[r#"{"statusCode":200,"body":"signed and allowed"}"#]);
    let (status, body) = seed_curl(&gateway).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"statusCode":200,"body":"signed and allowed"}"#),
        "moto log:\n{}",
        moto.log()
    );

    // Denied role (explicit Deny on lambda:InvokeFunction): 502 with a clear message.
    let denied_gateway = Gateway::start(&config, &denied_sidecar.app_env(), &[]);
    denied_gateway.wait_ready(Duration::from_secs(15));
    let (status, body) = seed_curl(&denied_gateway).await;
    assert_eq!(status, 502, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "AccessDenied", "{body}");
    // Lambda's message names the role: it goes to the request's log line, not to the client.
    assert!(!body.contains("assumed-role"), "{body}");
    let request_id = error["requestId"].as_str().expect("request id");
    let log = denied_gateway.log();
    let line = log
        .lines()
        .find(|l| l.contains(request_id))
        .unwrap_or_else(|| panic!("no log line for {request_id}:\n{log}"));
    assert!(
        line.contains("not authorized to perform: lambda:InvokeFunction")
            && line.contains("assumed-role/gateway-denied"),
        "{line}"
    );

    // Right key and token, wrong secret (a Secret manifest): Lambda rejects the signature → 502.
    let (status, creds) = integration::gateway::http_get_with_auth(
        ([127, 0, 0, 1], allowed_sidecar.port).into(),
        "/v1/credentials",
        &std::fs::read_to_string(&allowed_sidecar.auth_token_file).unwrap(),
    );
    assert_eq!(status, 200, "{creds}");
    let creds: Value = serde_json::from_str(&creds).unwrap();
    let (key, secret, token) = (
        creds["AccessKeyId"].as_str().unwrap(),
        creds["SecretAccessKey"].as_str().unwrap(),
        creds["Token"].as_str().unwrap(),
    );
    let wrong_secret_config = dir.path().join("wrong-secret.yaml");
    std::fs::write(
        &wrong_secret_config,
        seed_config(
            &moto.endpoint(),
            "    auth: {type: Secret, secretRef: {name: lambda-keys}}\n",
            &format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: lambda-keys, namespace: kgateway-system}}\nstringData: {{accessKey: {key}, secretKey: not-the-secret-{}, sessionToken: {token}}}\n",
                &secret[..8]
            ),
        ),
    )
    .unwrap();
    let wrong_gateway = Gateway::start(&wrong_secret_config, &[], &[]);
    wrong_gateway.wait_ready(Duration::from_secs(10));
    let (status, body) = seed_curl(&wrong_gateway).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "CredentialsRejected",
        "{body}"
    );

    // Secrets never reach the logs: not the keys from credproxy, not its auth token.
    let auth_token = std::fs::read_to_string(&allowed_sidecar.auth_token_file).unwrap();
    for log in [gateway.log(), denied_gateway.log(), wrong_gateway.log()] {
        assert!(
            !log.contains(secret),
            "secret access key in the gateway log"
        );
        assert!(!log.contains(token), "session token in the gateway log");
        assert!(
            !log.contains(&auth_token),
            "credproxy auth token in the gateway log"
        );
        assert!(
            !log.contains("not-the-secret"),
            "Secret value in the gateway log"
        );
    }
}

#[tokio::test]
#[ignore = "needs peers: run make test"]
async fn cached_credentials_outlive_the_endpoint_and_expired_ones_never_reach_lambda() {
    let moto = Moto::start_wrapped(false);
    moto.use_lambda_simple();
    let role = moto.create_role("gateway-short", Some(&allow_invoke()));
    let dir = tempfile::tempdir().unwrap();
    // 30 s credentials: the gateway stops using them 10 s before they expire.
    let mut sidecar = Sidecar::start(
        dir.path(),
        &moto.endpoint(),
        &role,
        &[
            "--duration-seconds=30",
            "--expiry-margin=1s",
            "--ready-min-life=1s",
            "--min-remaining=1s",
        ],
    );
    let lambda = CountingProxy::start(moto.addr());
    let config = dir.path().join("seed.yaml");
    std::fs::write(&config, seed_config(&lambda.endpoint(), "", "")).unwrap();
    let gateway = Gateway::start(&config, &sidecar.app_env(), &[]);
    gateway.wait_ready(Duration::from_secs(15));

    moto.queue_lambda_results(&[r#""first""#]);
    assert_eq!(seed_curl(&gateway).await, (200, r#""first""#.to_string()));

    // The credential endpoint goes down: the cached credentials keep working (and moto still verifies them).
    sidecar.stop();
    moto.queue_lambda_results(&[r#""from cache""#]);
    assert_eq!(
        seed_curl(&gateway).await,
        (200, r#""from cache""#.to_string()),
        "{}",
        gateway.log()
    );
    let invokes_before = lambda.invokes();
    assert_eq!(invokes_before, 2);

    // Once they are too close to expiry, readiness drops and requests get 503 — and nothing is sent.
    let deadline = Instant::now() + Duration::from_secs(35);
    loop {
        let (status, body) = http_get(gateway.admin, "/readyz");
        if status == 503 {
            assert!(body.contains(r#""state":"expired""#), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "credentials never expired: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, body) = seed_curl(&gateway).await;
    assert_eq!(status, 503, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"], "NoCredentials");
    assert!(
        !body.contains("/v1/credentials"),
        "the credential source stays out of answers: {body}"
    );
    let request_id = error["requestId"].as_str().expect("request id");
    assert!(
        gateway
            .log()
            .lines()
            .any(|l| l.contains(request_id) && l.contains("expired")),
        "the log line says why: {}",
        gateway.log()
    );
    assert_eq!(
        lambda.invokes(),
        invokes_before,
        "a request reached Lambda without valid credentials"
    );
    let metrics = reqwest::get(gateway.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Whole series: the state gauge of this source is 2 (expired), and failed fetches of it were counted.
    let series = |name: &str| -> Vec<(String, String)> {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(labels, value)| (labels.to_string(), value.to_string()))
            .collect()
    };
    let states = series("gateway_credentials_state");
    assert_eq!(states.len(), 1, "one credential source: {metrics}");
    assert!(
        states[0].0.starts_with(
            r#"gateway_credentials_state{source="container credentials endpoint http://"#
        ),
        "{metrics}"
    );
    assert_eq!(states[0].1, "2", "state 2 = expired: {metrics}");
    let failed: Vec<_> = series("gateway_credential_fetches_total")
        .into_iter()
        .filter(|(labels, _)| labels.ends_with(r#",result="error"}"#))
        .collect();
    assert_eq!(failed.len(), 1, "failed fetches are counted: {metrics}");
    assert!(
        failed[0].1.parse::<u64>().is_ok_and(|n| n >= 1),
        "failed fetches are counted: {metrics}"
    );
}
