//! A minimal, fast Lambda Invoke API endpoint — for benchmarks only (tests/bench/gateway.sh), never for tests.
//!
//! Answers every `POST /2015-03-31/functions/<name>/invocations` with 200 and the seed's documented function
//! output, after reading the request body; anything else gets 404. It checks no signature.
//!
//! Usage: bench_invoke_endpoint --listen 127.0.0.1:PORT [--threads N]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

const OUTPUT: &str = r#"{"statusCode":200,"body":"Response from AWS Lambda. Here's the request you just sent me: {\"key1\":\"value1\",\"key2\":\"value2\"}"}"#;

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let invoke = request.method() == hyper::Method::POST
        && request.uri().path().starts_with("/2015-03-31/functions/")
        && request.uri().path().ends_with("/invocations");
    let _ = request.into_body().collect().await;
    let response = if invoke {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("x-amz-executed-version", "$LATEST")
            .body(Full::new(Bytes::from_static(OUTPUT.as_bytes())))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
    };
    Ok(response.expect("static response"))
}

fn main() {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9500).into();
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("--listen ADDR")
            }
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("--threads N")
            }
            other => {
                eprintln!("unknown argument {other}; usage: bench_invoke_endpoint --listen ADDR [--threads N]");
                std::process::exit(64);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        eprintln!("bench_invoke_endpoint listening on {listen}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                    .await;
            });
        }
    });
}
