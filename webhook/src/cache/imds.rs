//! `--compose-role-arn`: account ID and partition from the EC2 instance identity document (spec §3.6),
//! fetched once at start over IMDSv2.

use std::time::Duration;

use super::annotations::RoleArnComposer;

/// Default IMDS endpoint; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides it (SDK convention).
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("--compose-role-arn needs the EC2 instance metadata service, but AWS_EC2_METADATA_DISABLED is set")]
    Disabled,
    #[error(
        "--compose-role-arn: cannot get the instance identity document from {endpoint}: {reason}"
    )]
    Request { endpoint: String, reason: String },
    #[error("--compose-role-arn: instance identity document from {endpoint} has no {field}")]
    MissingField {
        endpoint: String,
        field: &'static str,
    },
}

/// Region prefix → partition (upstream table, including `aws-eusc`).
pub fn partition_for_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else {
        "aws"
    }
}

/// Fetch the identity document (IMDSv2 token, then the document) and build the composer.
pub async fn role_arn_composer_from_imds() -> Result<RoleArnComposer, ImdsError> {
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(ImdsError::Disabled);
    }
    let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned());
    composer_from_endpoint(endpoint.trim_end_matches('/')).await
}

/// One plain-HTTP exchange with IMDS (hyper, already in the tree for kube: no second HTTP/TLS stack).
async fn imds_request(
    client: &ImdsClient,
    method: axum::http::Method,
    url: &str,
    header: (&'static str, &str),
) -> Result<bytes::Bytes, String> {
    use http_body_util::BodyExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(url)
        .header(header.0, header.1)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP status {status}"));
        }
        Ok(body)
    };
    tokio::time::timeout(IMDS_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {IMDS_TIMEOUT:?}"))?
}

type ImdsClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// Per-request deadline (the connection attempt itself gets one second).
const IMDS_TIMEOUT: Duration = Duration::from_secs(5);

async fn composer_from_endpoint(endpoint: &str) -> Result<RoleArnComposer, ImdsError> {
    let request_error = |reason: String| ImdsError::Request {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    let client: ImdsClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let token = imds_request(
        &client,
        axum::http::Method::PUT,
        &format!("{endpoint}/latest/api/token"),
        ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
    )
    .await
    .map_err(|e| request_error(format!("IMDSv2 token: {e}")))?;
    let token = String::from_utf8(token.to_vec())
        .map_err(|_| request_error("IMDSv2 token: not UTF-8".into()))?;
    let document = imds_request(
        &client,
        axum::http::Method::GET,
        &format!("{endpoint}/latest/dynamic/instance-identity/document"),
        ("X-aws-ec2-metadata-token", token.trim()),
    )
    .await
    .map_err(request_error)?;
    let document: serde_json::Value = serde_json::from_slice(&document)
        .map_err(|e| request_error(format!("invalid document: {e}")))?;
    let field = |name: &'static str| {
        document
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or(ImdsError::MissingField {
                endpoint: endpoint.to_owned(),
                field: name,
            })
    };
    let account_id = field("accountId")?;
    let region = field("region")?;
    Ok(RoleArnComposer {
        partition: partition_for_region(&region).to_owned(),
        account_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_table() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(partition_for_region(region), partition, "{region}");
        }
    }

    #[tokio::test]
    async fn identity_document_over_imdsv2() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if request.starts_with("PUT /latest/api/token") {
                    assert!(request
                        .to_ascii_lowercase()
                        .contains("x-aws-ec2-metadata-token-ttl-seconds"));
                    "TOKEN".to_string()
                } else {
                    assert!(request.starts_with("GET /latest/dynamic/instance-identity/document"));
                    assert!(request.contains("TOKEN"));
                    r#"{"accountId":"111122223333","region":"cn-northwest-1","instanceId":"i-1"}"#
                        .to_string()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let composer = composer_from_endpoint(&format!("http://{addr}"))
            .await
            .unwrap();
        assert_eq!(
            composer,
            RoleArnComposer {
                partition: "aws-cn".into(),
                account_id: "111122223333".into()
            }
        );
    }

    #[tokio::test]
    async fn unreachable_imds_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = composer_from_endpoint(&format!("http://{addr}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--compose-role-arn: cannot get the instance identity document"),
            "{err}"
        );
    }
}
