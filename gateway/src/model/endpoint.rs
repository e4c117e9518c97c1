//! Where a Lambda function is invoked: partition-aware regional endpoints and `endpointURL` overrides.
//! Pure.

/// AWS partitions we know the Lambda endpoint suffix of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
}

impl Partition {
    /// The partition a region belongs to, from its name (`cn-north-1` → aws-cn, `us-gov-west-1` → aws-us-gov).
    pub fn for_region(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else if region.starts_with("us-isob-") {
            Partition::AwsIsoB
        } else if region.starts_with("us-iso-") {
            Partition::AwsIso
        } else {
            Partition::Aws
        }
    }

    /// The ARN partition name.
    pub fn name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
        }
    }

    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::Aws | Partition::AwsUsGov => "amazonaws.com",
            Partition::AwsCn => "amazonaws.com.cn",
            Partition::AwsIso => "c2s.ic.gov",
            Partition::AwsIsoB => "sc2s.sgov.gov",
        }
    }
}

/// A Lambda endpoint: scheme, authority (the Host header we sign) and base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// `host[:port]`, with the port only when it is not the scheme's default (what Host must carry).
    pub authority: String,
    /// Path prefix from the URL, without a trailing slash (usually empty).
    pub base_path: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("has no host")]
    NoHost,
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    #[error("query strings and fragments are not allowed")]
    Query,
}

impl Endpoint {
    /// `https://lambda.<region>.<partition suffix>`.
    pub fn for_region(region: &str, partition: Partition) -> Endpoint {
        Endpoint {
            https: true,
            authority: format!("lambda.{region}.{}", partition.dns_suffix()),
            base_path: String::new(),
        }
    }

    /// Parses an `endpointURL` (`http://127.0.0.1:3002`, `https://lambda.example:8443/prefix`). Unlike
    /// kgateway, the port may be omitted (the scheme's default is used).
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(EndpointError::Scheme);
        };
        if rest.contains(['?', '#']) {
            return Err(EndpointError::Query);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = split_host_port(authority);
        if host.is_empty() {
            return Err(EndpointError::NoHost);
        }
        let default_port = if https { 443 } else { 80 };
        let authority = match port {
            None => host.to_string(),
            Some(p) => {
                let n: u16 = p
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| EndpointError::Port(p.to_string()))?;
                if n == default_port {
                    host.to_string()
                } else {
                    format!("{host}:{n}")
                }
            }
        };
        Ok(Endpoint {
            https,
            authority,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The Invoke URL for a function by name, with `Qualifier` as a query parameter (no ARN in the path, so
    /// there is nothing for SigV4's double encoding to get wrong).
    pub fn invoke_uri(&self, function_name: &str, qualifier: Option<&str>) -> String {
        let mut uri = format!(
            "{}://{}{}/2015-03-31/functions/{}/invocations",
            self.scheme(),
            self.authority,
            self.base_path,
            percent_encoding::utf8_percent_encode(function_name, QUERY_VALUE)
        );
        if let Some(q) = qualifier {
            uri.push_str("?Qualifier=");
            uri.extend(percent_encoding::utf8_percent_encode(q, QUERY_VALUE));
        }
        uri
    }
}

/// RFC 3986 unreserved characters stay; everything else (e.g. `$` of `$LATEST`) is encoded, as SigV4 expects
/// for the canonical request.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: keep the brackets in the host.
        if let Some(end) = rest.find(']') {
            let host = &authority[..end + 2];
            let after = &rest[end + 1..];
            return (host, after.strip_prefix(':'));
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_partitions_and_endpoints() {
        let cases = [
            ("us-east-1", "aws", "lambda.us-east-1.amazonaws.com"),
            ("eu-west-3", "aws", "lambda.eu-west-3.amazonaws.com"),
            ("cn-north-1", "aws-cn", "lambda.cn-north-1.amazonaws.com.cn"),
            (
                "cn-northwest-1",
                "aws-cn",
                "lambda.cn-northwest-1.amazonaws.com.cn",
            ),
            (
                "us-gov-west-1",
                "aws-us-gov",
                "lambda.us-gov-west-1.amazonaws.com",
            ),
            (
                "us-iso-east-1",
                "aws-iso",
                "lambda.us-iso-east-1.c2s.ic.gov",
            ),
        ];
        for (region, partition, host) in cases {
            let p = Partition::for_region(region);
            assert_eq!(p.name(), partition, "{region}");
            let e = Endpoint::for_region(region, p);
            assert_eq!(e.authority, host, "{region}");
            assert!(e.https);
        }
    }

    #[test]
    fn endpoint_urls_parse_with_or_without_port() {
        let cases = [
            ("http://127.0.0.1:3002", false, "127.0.0.1:3002", ""),
            ("https://lambda.example.com", true, "lambda.example.com", ""),
            (
                "https://lambda.example.com:443/",
                true,
                "lambda.example.com",
                "",
            ),
            ("http://localhost:80/prefix/", false, "localhost", "/prefix"),
            ("http://[::1]:4566", false, "[::1]:4566", ""),
        ];
        for (url, https, authority, base) in cases {
            let e = Endpoint::parse(url).unwrap_or_else(|err| panic!("{url}: {err}"));
            assert_eq!(
                (e.https, e.authority.as_str(), e.base_path.as_str()),
                (https, authority, base),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_endpoint_urls_are_rejected_with_the_reason() {
        assert_eq!(Endpoint::parse("ftp://x"), Err(EndpointError::Scheme));
        assert_eq!(Endpoint::parse("http://:80"), Err(EndpointError::NoHost));
        assert_eq!(
            Endpoint::parse("http://h:99999"),
            Err(EndpointError::Port("99999".into()))
        );
        assert_eq!(
            Endpoint::parse("http://h:1/?a=b"),
            Err(EndpointError::Query)
        );
    }

    #[test]
    fn invoke_uri_uses_name_and_encoded_qualifier() {
        let e = Endpoint::for_region("us-east-1", Partition::Aws);
        assert_eq!(
            e.invoke_uri("echo", Some("$LATEST")),
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/echo/invocations?Qualifier=%24LATEST"
        );
        assert_eq!(
            e.invoke_uri("my_fn-1", None),
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my_fn-1/invocations"
        );
    }
}
