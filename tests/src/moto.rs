//! The moto test peer (moto 5.2.5 from `tests/peers/install-moto.sh`), plain or through the
//! project's wrapper `tests/peers/moto_wrapper.py` (AWS-like SigV4/IAM enforcement, unsigned STS
//! web identity, Lambda auth errors in restJson1 — see the wrapper's docstring).
//!
//! Contract:
//! - [`Moto::start`] picks a free port on 127.0.0.1 (or [`MotoOptions::host`]), starts the server, waits until `GET /moto-api/`
//!   answers, and stops it when dropped (or on [`Moto::stop`]).
//! - Wrapped servers start with auth **on** (`INITIAL_NO_AUTH_ACTION_COUNT=0`). Use
//!   [`Moto::with_auth_off`] (reset-auth `inf` … `0`) around set-up calls such as
//!   [`Moto::create_role`]; every later request must be correctly signed by an allowed principal.
//! - Admin calls go through boto3 in the peer venv ([`Moto::boto3`]) with static test keys.
//! - Lambda helpers: [`Moto::create_function`], [`Moto::use_lambda_simple`],
//!   [`Moto::queue_lambda_results`] (test-peers.md §1c explains the two Lambda modes).
//! - [`unsigned_jwt`] builds a JWT-shaped web identity token (header.claims.signature) for the
//!   wrapper's optional web-identity checks (`verify_web_identity`).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{
    cache_dir, free_port, isolated_command, require_peer, wait_for_port, workspace_root, ChildGuard,
};

/// The account moto uses by default.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// How to start moto.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Run through `tests/peers/moto_wrapper.py` with authentication on.
    pub wrapped: bool,
    /// (wrapped only) STS web identity checks: JWT shape, `exp`, role exists in IAM.
    pub verify_web_identity: bool,
    /// Fixed port (e.g. to restart on the same one); a free port otherwise.
    pub port: Option<u16>,
    /// Listen address instead of 127.0.0.1 (e.g. a test node's bridge address, for pods).
    pub host: Option<Ipv4Addr>,
}

/// A running moto server on 127.0.0.1.
#[derive(Debug)]
pub struct Moto {
    guard: Option<ChildGuard>,
    pub port: u16,
    pub options: MotoOptions,
    log: PathBuf,
}

/// The peer venv (moto, boto3, AWS CLI v1).
pub fn venv() -> PathBuf {
    require_peer(cache_dir().join("venv/bin/moto_server"), "install-moto.sh");
    cache_dir().join("venv")
}

pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// AWS CLI v1 from the peer venv.
pub fn aws_cli() -> PathBuf {
    require_peer(venv().join("bin/aws"), "install-moto.sh")
}

pub fn wrapper_script() -> PathBuf {
    workspace_root().join("tests/peers/moto_wrapper.py")
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A JWT-shaped token (not signed) with `sub`, `aud` = sts.amazonaws.com and `exp` = now + `ttl_secs`
/// (negative for an expired token).
pub fn unsigned_jwt(sub: &str, ttl_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = serde_json::json!({"alg": "RS256", "kid": "podcred-test"});
    let claims = serde_json::json!({
        "iss": "https://oidc.podcred.test", "sub": sub, "aud": "sts.amazonaws.com",
        "iat": now, "exp": now + ttl_secs,
    });
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(b"not-a-real-signature")
    )
}

/// Minimal HTTP/1.1 request over a fresh connection; returns (status, body). Panics if moto does not answer.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}",
        body.len()
    );
    let (status, text) = crate::http_exchange(addr, &head, body);
    assert_ne!(
        status, 0,
        "no HTTP answer from moto at {addr} for {method} {path}"
    );
    (status, text)
}

impl Moto {
    /// Plain `moto_server` (auth off).
    pub fn start_plain() -> Self {
        Self::start(MotoOptions::default())
    }

    /// The wrapper with authentication on.
    pub fn start_wrapped(verify_web_identity: bool) -> Self {
        Self::start(MotoOptions {
            wrapped: true,
            verify_web_identity,
            port: None,
            host: None,
        })
    }

    pub fn start(options: MotoOptions) -> Self {
        let port = options.port.unwrap_or_else(free_port);
        let venv = venv();
        let log =
            std::env::temp_dir().join(format!("podcred-moto-{port}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("moto log file");
        let mut cmd = if options.wrapped {
            require_peer(wrapper_script(), "install-moto.sh");
            let mut c = isolated_command(venv.join("bin/python"));
            c.arg(wrapper_script())
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
            if options.verify_web_identity {
                c.env("PODCRED_MOTO_VERIFY_WEB_IDENTITY", "1");
            }
            c
        } else {
            isolated_command(venv.join("bin/moto_server"))
        };
        let host = options.host.unwrap_or(Ipv4Addr::LOCALHOST);
        cmd.args(["-H", &host.to_string(), "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let name = if options.wrapped {
            "moto (wrapped)"
        } else {
            "moto"
        };
        let mut guard = ChildGuard::spawn(name, &mut cmd);
        let addr: SocketAddr = (host, port).into();
        wait_for_port(addr, Duration::from_secs(20), name);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            guard.assert_running();
            if http_request(addr, "GET", "/moto-api/", "text/plain", b"").0 == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} on {addr} never answered /moto-api/"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            guard: Some(guard),
            port,
            options,
            log,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        (self.options.host.unwrap_or(Ipv4Addr::LOCALHOST), self.port).into()
    }

    /// `http://<host>:<port>` (127.0.0.1 unless [`MotoOptions::host`] is set)
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The server's combined stdout/stderr so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST /moto-api/reset-auth` with `count` (`"0"` = auth on now, `"inf"` = auth off).
    pub fn reset_auth(&self, count: &str) {
        let (status, body) = http_request(
            self.addr(),
            "POST",
            "/moto-api/reset-auth",
            "text/plain",
            count.as_bytes(),
        );
        assert_eq!(status, 200, "reset-auth {count}: {body}");
    }

    /// Runs `f` with authentication off (no-op on plain moto), then turns it back on.
    pub fn with_auth_off<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.options.wrapped {
            return f();
        }
        self.reset_auth("inf");
        let out = f();
        self.reset_auth("0");
        out
    }

    /// Environment for admin calls: static keys, this endpoint, isolated config.
    pub fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY", "moto-admin-secret".into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// Runs a boto3 snippet in the peer venv (`boto3` is imported; `endpoint` is defined).
    /// Panics with stderr if it fails.
    pub fn boto3(&self, code: &str) -> Output {
        let script = format!(
            "import boto3, json, sys\nendpoint = {:?}\n{code}\n",
            self.endpoint()
        );
        let mut cmd = isolated_command(python());
        cmd.arg("-c").arg(script);
        for (k, v) in self.admin_env() {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run python");
        assert!(
            out.status.success(),
            "boto3 snippet failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            code
        );
        out
    }

    /// Creates an IAM role trusting web identities (auth is switched off around the call) and
    /// optionally attaches an inline policy. Returns its ARN.
    pub fn create_role(&self, name: &str, inline_policy: Option<&serde_json::Value>) -> String {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.podcred.test")},
                           "Action": "sts:AssumeRoleWithWebIdentity"}]
        });
        let mut code = format!(
            "iam = boto3.client('iam', endpoint_url=endpoint)\niam.create_role(RoleName={name:?}, AssumeRolePolicyDocument={trust:?})\n",
            trust = trust.to_string()
        );
        if let Some(policy) = inline_policy {
            code.push_str(&format!(
                "iam.put_role_policy(RoleName={name:?}, PolicyName='inline', PolicyDocument={:?})\n",
                policy.to_string()
            ));
        }
        self.with_auth_off(|| self.boto3(&code));
        format!("arn:aws:iam::{ACCOUNT}:role/{name}")
    }

    /// Switches Lambda to moto's "lambda-simple" mode (no Docker: Invoke returns queued results or
    /// echoes the payload). It is a separate backend: create functions **after** switching.
    pub fn use_lambda_simple(&self) {
        let (status, body) = http_request(
            self.addr(),
            "POST",
            "/moto-api/config",
            "application/json",
            br#"{"lambda":{"use_docker":false}}"#,
        );
        assert!(
            status == 200 || status == 201,
            "moto-api/config: {status} {body}"
        );
    }

    /// Queues Invoke results for lambda-simple mode (FIFO, one per invoke).
    pub fn queue_lambda_results(&self, results: &[&str]) {
        let body = serde_json::json!({"results": results, "region": REGION}).to_string();
        let (status, text) = http_request(
            self.addr(),
            "POST",
            "/moto-api/static/lambda-simple/response",
            "application/json",
            body.as_bytes(),
        );
        assert!(
            status == 200 || status == 201,
            "queue results: {status} {text}"
        );
    }

    /// Creates a Node.js 20 Lambda function `name` (handler `index.handler`, the seed's echo code)
    /// with a throw-away execution role; auth is switched off around the calls. Returns its ARN.
    pub fn create_function(&self, name: &str) -> String {
        let code = format!(
            r#"import io, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("index.mjs", "export const handler = async (event) => ({{statusCode: 200, body: JSON.stringify(event)}});")
iam = boto3.client("iam", endpoint_url=endpoint)
try:
    role = iam.get_role(RoleName="podcred-lambda-exec")["Role"]["Arn"]
except iam.exceptions.NoSuchEntityException:
    role = iam.create_role(RoleName="podcred-lambda-exec", AssumeRolePolicyDocument="{{}}")["Role"]["Arn"]
fn = boto3.client("lambda", endpoint_url=endpoint).create_function(
    FunctionName={name:?}, Runtime="nodejs20.x", Role=role, Handler="index.handler",
    Code={{"ZipFile": buf.getvalue()}})
print(fn["FunctionArn"])
"#
        );
        let out = self.with_auth_off(|| self.boto3(&code));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server (SIGTERM, then kill) — e.g. to simulate STS being down.
    pub fn stop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            if g.terminate(Duration::from_secs(5)).is_none() {
                drop(g);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < deadline, "moto still listening after stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.guard.take();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `aws` (CLI v1) command with the isolated env and no credentials of its own.
pub fn aws_cli_command() -> Command {
    let mut c = isolated_command(aws_cli());
    c.env("AWS_DEFAULT_REGION", REGION);
    c
}
