//! aws-sdk-rust as a consumer of credproxy: the default credential chain with
//! AWS_CONTAINER_CREDENTIALS_FULL_URI / AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (its container
//! provider), then a SigV4-signed GetCallerIdentity checked by the moto wrapper.
//!
//! One test per binary: it sets process environment variables, which the SDK reads.

#[path = "credproxy_support/harness.rs"]
mod harness;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use harness::Proxy;
use integration::moto::{Moto, ACCOUNT};

#[test]
#[ignore = "needs peers: run make test"]
fn aws_sdk_rust_container_provider_gets_credentials_from_credproxy() {
    let moto = Moto::start_wrapped(true);
    let role = moto.create_role("rust-role", None);
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&moto, dir.path(), &role, &[]);
    let served = proxy
        .wait_credentials("credentials", Duration::from_secs(10), |r| r.status == 200)
        .json();

    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    ] {
        std::env::remove_var(key);
    }
    for (k, v) in integration::aws_isolated_env() {
        std::env::set_var(k, v);
    }
    std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", proxy.url());
    std::env::set_var(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        &proxy.auth_token_file,
    );

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
        assert_eq!(
            creds.access_key_id(),
            served["AccessKeyId"].as_str().unwrap()
        );
        assert_eq!(creds.account_id().map(|a| a.as_str()), Some(ACCOUNT));
        assert!(creds.expiry().is_some());

        // …and through the default chain, used for a signed call that moto verifies.
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
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
}
