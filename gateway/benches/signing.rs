//! SigV4 signing of the seed's Invoke request (`POST /2015-03-31/functions/echo/invocations`, us-east-1, the
//! seed's body, temporary credentials with a session token as credproxy serves them): aws-sigv4's full signer
//! (`http_request::sign`, default settings — what the gateway did before `signing`), against `signing::Signer`
//! with its reused buffers and cached derived key (what the gateway does now), and the same signer when every
//! request must derive the key (a new day each time).
//! Run: `cargo bench -p gateway --bench signing`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gateway::signing::{SignableInvoke, Signer};

const BODY: &[u8] = br#"{"key1":"value1", "key2":"value2"}"#;
const HOST: &str = "lambda.us-east-1.amazonaws.com";
const PATH: &str = "/2015-03-31/functions/echo/invocations";

fn credentials() -> Credentials {
    Credentials::new(
        "ASIAQNZGKYEXAMPLE01",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        // An STS session token is several hundred bytes.
        Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD".repeat(12)),
        None,
        "bench",
    )
}

fn signing(c: &mut Criterion) {
    let credentials = credentials();
    let identity = credentials.clone().into();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    let uri = format!("https://{HOST}{PATH}");
    let mut group = c.benchmark_group("sigv4_seed_request");

    group.bench_function("aws_sigv4_full_signer", |b| {
        b.iter(|| {
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("lambda")
                .time(black_box(now))
                .settings(SigningSettings::default())
                .build()
                .expect("params")
                .into();
            let headers = [
                ("host", HOST),
                ("x-amz-invocation-type", "RequestResponse"),
                ("content-type", "application/json"),
            ];
            let signable = SignableRequest::new(
                "POST",
                uri.as_str(),
                headers.into_iter(),
                SignableBody::Bytes(black_box(BODY)),
            )
            .expect("signable");
            let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
            black_box(instructions.into_parts())
        })
    });

    let request = SignableInvoke {
        path: PATH,
        query: None,
        host: HOST,
        content_type: "application/json",
        invocation_type: "RequestResponse",
        body: BODY,
        region: "us-east-1",
        service: "lambda",
    };
    let mut signer = Signer::new();
    group.bench_function("signing_cached_key", |b| {
        b.iter(|| {
            black_box(
                signer
                    .sign(black_box(&request), &credentials, black_box(now))
                    .expect("signs"),
            )
        })
    });

    let mut signer = Signer::new();
    let mut day = 0u64;
    group.bench_function("signing_key_derived_each_time", |b| {
        b.iter(|| {
            day += 1;
            let time = now + Duration::from_secs(86_400 * (day % 10_000));
            black_box(
                signer
                    .sign(black_box(&request), &credentials, time)
                    .expect("signs"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
