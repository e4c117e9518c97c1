//! aws-sdk-rust as a consumer of credproxy: its container provider (aws-config `ecs`) and the
//! default credential chain with AWS_CONTAINER_CREDENTIALS_FULL_URI /
//! AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, then a SigV4-signed GetCallerIdentity that the moto
//! wrapper verifies.
//!
//! The SDK reads those variables from the process environment, so the test re-runs itself as a
//! child process with the environment passed explicitly (`PODCRED_SDK_CHILD=1`).

#[path = "credproxy_support/harness.rs"]
mod harness;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use harness::Proxy;
use integration::isolated_command;
use integration::moto::{Moto, ACCOUNT};

const TEST_NAME: &str = "aws_sdk_rust_container_provider_gets_credentials_from_credproxy";

#[test]
#[ignore = "needs peers: run make test"]
fn aws_sdk_rust_container_provider_gets_credentials_from_credproxy() {
    if std::env::var_os("PODCRED_SDK_CHILD").is_some() {
        return child();
    }
    let moto = Moto::start_wrapped(true);
    let role = moto.create_role("rust-role", None);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&moto, dir.path(), &role, &[]);
    let served = proxy
        .wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200)
        .json();

    let out = isolated_command(std::env::current_exe().unwrap())
        .args([
            TEST_NAME,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PODCRED_SDK_CHILD", "1")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", proxy.url())
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            &proxy.auth_token_file,
        )
        .env(
            "PODCRED_EXPECT_ACCESS_KEY",
            served["AccessKeyId"].as_str().unwrap(),
        )
        .env("PODCRED_MOTO_ENDPOINT", moto.endpoint())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("rust sdk consumer ok"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(proxy.metric_sum("credproxy_http_requests_total", &["status=\"200\""]) >= 3.0);
}

fn child() {
    let expect_key = std::env::var("PODCRED_EXPECT_ACCESS_KEY").unwrap();
    let endpoint = std::env::var("PODCRED_MOTO_ENDPOINT").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The container provider on its own…
        let ecs = aws_config::ecs::EcsCredentialsProvider::builder().build();
        let creds = ecs
            .provide_credentials()
            .await
            .expect("credentials from credproxy");
        assert_eq!(creds.access_key_id(), expect_key);
        assert_eq!(creds.account_id().map(|a| a.as_str()), Some(ACCOUNT));
        assert!(creds.expiry().is_some());

        // …and through the default chain, used for a signed call that moto verifies.
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .load()
            .await;
        let who = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .expect("signed call accepted");
        assert_eq!(
            who.arn(),
            Some(format!("arn:aws:sts::{ACCOUNT}:assumed-role/rust-role/credproxy-test").as_str())
        );
    });
    println!("rust sdk consumer ok");
}
