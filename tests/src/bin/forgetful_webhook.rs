//! A deliberately broken stand-in for the `webhook` binary, for the differential test's self-test
//! (`tests/tests/differential.rs`): it proves the differential fails when one part of the mutation is missing.
//!
//! It takes the webhook's flags, starts the real webhook (`PODCRED_FORGETFUL_INNER`, default: `webhook`
//! next to this binary) on another port, and serves `--port` itself with the same TLS pair, forwarding every
//! request. On `/mutate` it forgets the part named by `PODCRED_FORGET`:
//!
//! - `env`: every container keeps the `env` it came with;
//! - `volume`: the volumes the webhook added are dropped;
//! - `volume-mount`: every container keeps the `volumeMounts` it came with;
//! - `token-annotation`: the pod's `<prefix>/token-expiration` annotation is hidden from the webhook;
//! - `nothing`: a transparent proxy (shows that the forwarding itself changes nothing).
//!
//! Usage: `PODCRED_WEBHOOK_BIN=target/debug/forgetful_webhook PODCRED_FORGET=env cargo test -p integration
//! --test differential -- --include-ignored`. The real webhook is stopped when this process goes away
//! (a shell loop watches this process, so even SIGKILL leaves nothing running).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use serde_json::Value;

/// What the stand-in leaves out of the real webhook's mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forget {
    Nothing,
    Env,
    Volume,
    VolumeMount,
    TokenAnnotation,
}

impl Forget {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "nothing" => Self::Nothing,
            "env" => Self::Env,
            "volume" => Self::Volume,
            "volume-mount" => Self::VolumeMount,
            "token-annotation" => Self::TokenAnnotation,
            _ => return None,
        })
    }
}

struct Proxy {
    forget: Forget,
    annotation_prefix: String,
    inner: SocketAddr,
    client: reqwest::Client,
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    args.iter().rev().find_map(|a| a.strip_prefix(&prefix))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let forget = std::env::var("PODCRED_FORGET").unwrap_or_default();
    let Some(forget) = Forget::parse(&forget) else {
        eprintln!(
            "forgetful_webhook: PODCRED_FORGET must be one of nothing, env, volume, volume-mount, token-annotation (got {forget:?})"
        );
        std::process::exit(64);
    };
    let (Some(port), Some(cert), Some(key)) = (
        flag(&args, "--port").and_then(|p| p.parse::<u16>().ok()),
        flag(&args, "--tls-cert"),
        flag(&args, "--tls-key"),
    ) else {
        eprintln!("forgetful_webhook: needs --port=N --tls-cert=FILE --tls-key=FILE");
        std::process::exit(64);
    };
    let inner_bin = std::env::var_os("PODCRED_FORGETFUL_INNER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .expect("current exe")
                .with_file_name("webhook")
        });
    let inner_port = free_port();
    let inner_args: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--port="))
        .cloned()
        .chain([format!("--port={inner_port}")])
        .collect();
    // The shell loop stops the real webhook as soon as this process is gone, however it ended.
    let watchdog = format!(
        "\"$0\" \"$@\" & child=$!; \
         while kill -0 {owner} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.2; done; \
         kill $child 2>/dev/null; wait $child",
        owner = std::process::id()
    );
    let mut watchdog = Command::new("bash")
        .arg("-c")
        .arg(watchdog)
        .arg(&inner_bin)
        .args(&inner_args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", inner_bin.display()));
    std::thread::spawn(move || watchdog.wait());
    let inner = SocketAddr::from(([127, 0, 0, 1], inner_port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&inner, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the real webhook did not listen on {inner}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("forgetful_webhook: forgetting {forget:?}; real webhook on {inner}");

    let proxy = Arc::new(Proxy {
        forget,
        annotation_prefix: flag(&args, "--annotation-prefix")
            .unwrap_or("eks.amazonaws.com")
            .to_owned(),
        inner,
        // Loopback to our own child, which serves the same certificate.
        client: reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client"),
    });
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .expect("load --tls-cert/--tls-key");
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        axum_server::bind_rustls(SocketAddr::from(([127, 0, 0, 1], port)), tls)
            .serve(app.into_make_service())
            .await
            .expect("serve");
    });
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mutate = parts.uri.path() == "/mutate";
    let mut review: Option<Value> = if mutate {
        serde_json::from_slice(&body).ok()
    } else {
        None
    };
    let original_pod = review
        .as_ref()
        .map(|r| r["request"]["object"].clone())
        .filter(|pod| pod.is_object());
    let sent = match (&mut review, &original_pod) {
        (Some(review), Some(_)) if proxy.forget == Forget::TokenAnnotation => {
            let key = format!("{}/token-expiration", proxy.annotation_prefix);
            if let Some(annotations) =
                review["request"]["object"]["metadata"]["annotations"].as_object_mut()
            {
                annotations.remove(&key);
            }
            serde_json::to_vec(review).expect("JSON")
        }
        _ => body.to_vec(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut outbound = proxy
        .client
        .request(parts.method, format!("https://{}{path}", proxy.inner))
        .body(sent);
    if let Some(content_type) = parts.headers.get("content-type") {
        outbound = outbound.header("content-type", content_type);
    }
    let answer = match outbound.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return Response::builder()
                .status(502)
                .body(Body::from(format!("forgetful_webhook: {error}\n")))
                .expect("response");
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let mut bytes = answer.bytes().await.unwrap_or_default().to_vec();
    if let (true, Some(pod)) = (status == 200, &original_pod) {
        if let Ok(mut reply) = serde_json::from_slice::<Value>(&bytes) {
            forget_in_reply(proxy.forget, review.as_ref(), pod, &mut reply);
            bytes = serde_json::to_vec(&reply).expect("JSON");
        }
    }
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    response.body(Body::from(bytes)).expect("response")
}

/// Rewrites the reply's patch so that the pod ends up without the forgotten part.
fn forget_in_reply(forget: Forget, sent: Option<&Value>, original: &Value, reply: &mut Value) {
    let response = &mut reply["response"];
    let Some(encoded) = response["patch"].as_str() else {
        return;
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return;
    };
    let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(&bytes) else {
        return;
    };
    // The patch applies to the pod the webhook saw (with the annotation hidden, for token-annotation).
    let mut pod = sent
        .map(|r| r["request"]["object"].clone())
        .unwrap_or_else(|| original.clone());
    if json_patch::patch(&mut pod, &patch).is_err() {
        return;
    }
    match forget {
        Forget::Nothing => {}
        Forget::TokenAnnotation => {
            pod["metadata"]["annotations"] = original["metadata"]["annotations"].clone();
            if pod["metadata"]["annotations"].is_null() {
                if let Some(metadata) = pod["metadata"].as_object_mut() {
                    metadata.remove("annotations");
                }
            }
        }
        Forget::Env => restore_container_field(original, &mut pod, "env"),
        Forget::VolumeMount => restore_container_field(original, &mut pod, "volumeMounts"),
        Forget::Volume => {
            let before: Vec<Value> = original["spec"]["volumes"]
                .as_array()
                .map(|v| v.iter().map(|v| v["name"].clone()).collect())
                .unwrap_or_default();
            if let Some(volumes) = pod["spec"]["volumes"].as_array_mut() {
                volumes.retain(|v| before.contains(&v["name"]));
            }
            if original["spec"]["volumes"].is_null() {
                if let Some(spec) = pod["spec"].as_object_mut() {
                    spec.remove("volumes");
                }
            }
        }
    }
    let rewritten = json_patch::diff(original, &pod);
    if rewritten.0.is_empty() {
        if let Some(response) = response.as_object_mut() {
            response.remove("patch");
            response.remove("patchType");
        }
    } else {
        response["patch"] = Value::String(
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&rewritten).expect("JSON")),
        );
    }
}

/// Puts back each container's `field` as it was in the input (containers are matched by name).
fn restore_container_field(original: &Value, pod: &mut Value, field: &str) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for container in containers {
            let before = original["spec"][list]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["name"] == container["name"]));
            let Some(before) = before else { continue };
            match before.get(field) {
                Some(value) => container[field] = value.clone(),
                None => {
                    if let Some(object) = container.as_object_mut() {
                        object.remove(field);
                    }
                }
            }
        }
    }
}
