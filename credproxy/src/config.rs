//! Command line, environment and YAML configuration, validated before anything is bound.
//!
//! Contract:
//! - Every flag also has an environment variable (shown in `--help`). Sidecar mode reads the same
//!   AWS variables the webhook injects (`AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_REGION`
//!   / `AWS_DEFAULT_REGION`, `AWS_STS_REGIONAL_ENDPOINTS`, `AWS_ROLE_SESSION_NAME`,
//!   `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL`).
//! - `--config FILE` (standalone mode) replaces the single env-configured role by the file's named
//!   roles; region/endpoint flags and env act as defaults for roles that do not set them.
//! - [`resolve`] returns every problem found, one line each, so the caller can print them all and
//!   exit 64 (EX_USAGE) before binding a port.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::exchange::{AssumeRequest, StsEndpoint};
use crate::role::RoleSettings;
use crate::schedule::RefreshPolicy;

pub const EXIT_CONFIG: i32 = 64;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";
pub const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:9912";
pub const DEFAULT_ROLE: &str = "default";

const ENV_HELP: &str = "\
Environment (sidecar mode; what the podcred webhook injects):
  AWS_ROLE_ARN                  role to assume (same as --role-arn)
  AWS_WEB_IDENTITY_TOKEN_FILE   projected service-account token, re-read before every STS call
  AWS_REGION, AWS_DEFAULT_REGION  STS region (regional endpoint sts.<region>.amazonaws.com)
  AWS_STS_REGIONAL_ENDPOINTS    regional (default) | legacy (global endpoint for the 16 legacy regions)
  AWS_ROLE_SESSION_NAME         session name (default credproxy-<hostname>)
  AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL  STS endpoint override (tests, VPC endpoints)
Every flag can also be set with the environment variable shown next to it.
Exit codes: 64 = invalid configuration (one line per problem on stderr, nothing bound);
`exec` exits with the child's status (128+N if killed by signal N).";

/// Token file → STS AssumeRoleWithWebIdentity → cached container-credentials endpoint.
#[derive(Debug, Parser)]
#[command(name = "credproxy", version, about, after_long_help = ENV_HELP, after_help = ENV_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD with AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE set
    /// to an endpoint served for the child's lifetime; exit with the child's status.
    /// Defaults differ from the server: --listen 127.0.0.1:0 (a free port), no metrics listener,
    /// and a fresh token in a private temporary file unless --auth-token-file is given.
    Exec {
        /// Role (from --config) to hand to the child.
        #[arg(long, env = "CREDPROXY_EXEC_ROLE")]
        role: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

#[derive(Debug, Args, Default)]
pub struct Options {
    /// YAML file with named roles (standalone mode); see README.
    #[arg(long, env = "CREDPROXY_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address for GET /v1/credentials, /healthz, /readyz. Repeatable (e.g. also [::1]:9911);
    /// an address family the host lacks is logged and skipped. [default: 127.0.0.1:9911]
    #[arg(
        long,
        env = "CREDPROXY_LISTEN",
        value_delimiter = ',',
        global = true,
        value_name = "ADDR"
    )]
    pub listen: Vec<String>,
    /// Auth token file. If it exists and is non-empty, its content is the required Authorization
    /// value; otherwise a random 256-bit token is written there atomically (no trailing newline).
    #[arg(
        long,
        env = "CREDPROXY_AUTH_TOKEN_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub auth_token_file: Option<PathBuf>,
    /// Octal mode of a generated token file. [default: 0640]
    #[arg(
        long,
        env = "CREDPROXY_AUTH_TOKEN_FILE_MODE",
        global = true,
        value_name = "OCTAL"
    )]
    pub auth_token_file_mode: Option<String>,
    /// Address for /metrics, /healthz, /readyz (no auth); `off` disables it. [default: 0.0.0.0:9912]
    #[arg(
        long,
        env = "CREDPROXY_METRICS_LISTEN",
        global = true,
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<String>,
    /// Extra accepted Host header names (DNS-rebinding guard). Loopback names and the listen
    /// addresses are always accepted. Repeatable.
    #[arg(
        long,
        env = "CREDPROXY_ALLOWED_HOSTS",
        value_delimiter = ',',
        global = true,
        value_name = "HOST"
    )]
    pub allowed_host: Vec<String>,
    /// Role to assume.
    #[arg(long, env = "AWS_ROLE_ARN", global = true, value_name = "ARN")]
    pub role_arn: Option<String>,
    /// Web identity (projected service-account) token file.
    #[arg(
        long,
        env = "AWS_WEB_IDENTITY_TOKEN_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub web_identity_token_file: Option<PathBuf>,
    /// STS session name. [default: credproxy-<hostname>]
    #[arg(
        long,
        env = "AWS_ROLE_SESSION_NAME",
        global = true,
        value_name = "NAME"
    )]
    pub role_session_name: Option<String>,
    /// STS region (falls back to AWS_DEFAULT_REGION).
    #[arg(long, env = "AWS_REGION", global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// STS endpoint URL (falls back to AWS_ENDPOINT_URL).
    #[arg(long, env = "AWS_ENDPOINT_URL_STS", global = true, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// `regional` or `legacy`. [default: regional]
    #[arg(
        long,
        env = "AWS_STS_REGIONAL_ENDPOINTS",
        global = true,
        value_name = "MODE"
    )]
    pub sts_regional_endpoints: Option<String>,
    /// DurationSeconds asked of STS (AWS accepts 900..43200). [default: STS default, 3600]
    #[arg(
        long,
        env = "CREDPROXY_DURATION_SECONDS",
        global = true,
        value_name = "SECONDS"
    )]
    pub duration_seconds: Option<i64>,
    /// Inline session policy (JSON).
    #[arg(
        long,
        env = "CREDPROXY_SESSION_POLICY",
        global = true,
        value_name = "JSON"
    )]
    pub session_policy: Option<String>,
    /// Managed session policy ARN. Repeatable (at most 10).
    #[arg(
        long,
        env = "CREDPROXY_POLICY_ARNS",
        value_delimiter = ',',
        global = true,
        value_name = "ARN"
    )]
    pub policy_arn: Vec<String>,
    /// Refresh after this fraction of the remaining lifetime. [default: 0.5]
    #[arg(
        long,
        env = "CREDPROXY_REFRESH_FRACTION",
        global = true,
        value_name = "F"
    )]
    pub refresh_fraction: Option<f64>,
    /// Shorten each refresh wait by up to this fraction, at random. [default: 0.1]
    #[arg(
        long,
        env = "CREDPROXY_REFRESH_JITTER",
        global = true,
        value_name = "F"
    )]
    pub refresh_jitter: Option<f64>,
    /// Refresh early enough that served credentials keep this much life. [default: 20m]
    #[arg(
        long,
        env = "CREDPROXY_MIN_REMAINING",
        global = true,
        value_name = "DURATION"
    )]
    pub min_remaining: Option<String>,
    /// Never serve credentials with this little life left. [default: 15s]
    #[arg(
        long,
        env = "CREDPROXY_EXPIRY_MARGIN",
        global = true,
        value_name = "DURATION"
    )]
    pub expiry_margin: Option<String>,
    /// /readyz needs credentials with more than this life left. [default: 60s]
    #[arg(
        long,
        env = "CREDPROXY_READY_MIN_LIFE",
        global = true,
        value_name = "DURATION"
    )]
    pub ready_min_life: Option<String>,
    /// First retry delay ceiling after a failed refresh. [default: 200ms]
    #[arg(
        long,
        env = "CREDPROXY_BACKOFF_BASE",
        global = true,
        value_name = "DURATION"
    )]
    pub backoff_base: Option<String>,
    /// Largest retry delay. [default: 30s]
    #[arg(
        long,
        env = "CREDPROXY_BACKOFF_MAX",
        global = true,
        value_name = "DURATION"
    )]
    pub backoff_max: Option<String>,
    /// Timeout of one STS attempt. [default: 5s]
    #[arg(
        long,
        env = "CREDPROXY_STS_TIMEOUT",
        global = true,
        value_name = "DURATION"
    )]
    pub sts_timeout: Option<String>,
    /// How long a request arriving before the first credentials waits for them. [default: 800ms]
    #[arg(
        long,
        env = "CREDPROXY_COLD_START_WAIT",
        global = true,
        value_name = "DURATION"
    )]
    pub cold_start_wait: Option<String>,
    /// After SIGTERM, keep serving this long before exiting (the app may still need credentials).
    /// [default: 5s]
    #[arg(long, env = "CREDPROXY_DRAIN", global = true, value_name = "DURATION")]
    pub drain: Option<String>,
    /// Also serve "RoleArn" in the credentials JSON.
    #[arg(long, env = "CREDPROXY_SERVE_ROLE_ARN", global = true)]
    pub serve_role_arn: bool,
    /// `plain` or `json`. [default: plain]
    #[arg(
        long,
        env = "CREDPROXY_LOG_FORMAT",
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `credproxy=debug`). [default: info]
    #[arg(long, env = "CREDPROXY_LOG", global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Tokio worker threads; 1 runs everything on one thread (smallest footprint). [default: 1]
    #[arg(
        long,
        env = "CREDPROXY_WORKER_THREADS",
        global = true,
        value_name = "N"
    )]
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// A fully validated role.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub settings: RoleSettings,
    pub endpoint: StsEndpoint,
    pub request: AssumeRequest,
    /// `None` only in `exec` mode: a private temporary file is used.
    pub auth_token_file: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub allowed_hosts: Vec<String>,
    pub roles: Vec<RoleConfig>,
    /// Role served at `/v1/credentials` (no name).
    pub default_role: Option<String>,
    pub auth_token_file_mode: u32,
    pub cold_start_wait: Duration,
    pub drain: Duration,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub worker_threads: usize,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<String>>,
    metrics_listen: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    auth_token_file: Option<PathBuf>,
    auth_token_file_mode: Option<String>,
    default_role: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, FileRole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRole {
    role_arn: Option<String>,
    web_identity_token_file: Option<PathBuf>,
    region: Option<String>,
    sts_endpoint: Option<String>,
    sts_regional_endpoints: Option<String>,
    session_name: Option<String>,
    duration_seconds: Option<i64>,
    policy: Option<String>,
    #[serde(default)]
    policy_arns: Vec<String>,
    auth_token_file: Option<PathBuf>,
}

/// `500ms`, `30s`, `20m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (use e.g. 500ms, 30s, 20m, 1h)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}` has an unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is out of range"))
}

/// Regions that `AWS_STS_REGIONAL_ENDPOINTS=legacy` sends to the global endpoint.
const LEGACY_GLOBAL_REGIONS: &[&str] = &[
    "ap-northeast-1",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "aws-global",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
        && (20..=2048).contains(&arn.len())
}

fn default_session_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let cleaned: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("credproxy-{cleaned}");
    if cleaned.is_empty() {
        name = "credproxy".into();
    }
    name.truncate(64);
    name
}

fn parse_listen(text: &str, what: &str, problems: &mut Vec<String>) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "{what} `{text}` is not an IP:port address (e.g. 127.0.0.1:9911 or [::1]:9911)"
            ));
            None
        }
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// Which command the settings are for (defaults differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Exec,
}

/// Validates everything; `Err` holds one line per problem.
pub fn resolve(o: &Options, mode: Mode) -> Result<Settings, Vec<String>> {
    let text = match &o.config {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                return Err(vec![format!(
                    "--config {}: cannot read: {e}",
                    path.display()
                )])
            }
            Ok(text) => Some(text),
        },
    };
    resolve_with_file(o, mode, text.as_deref())
}

/// [`resolve`] with the `--config` file's content already read (`None`: no file). Pure apart from the
/// process environment the options were parsed with.
pub fn resolve_with_file(
    o: &Options,
    mode: Mode,
    text: Option<&str>,
) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let name = o
        .config
        .as_ref()
        .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    let file = match text {
        None => None,
        Some(text) => match serde_yaml_ng::from_str::<FileConfig>(text) {
            Ok(f) => Some(f),
            Err(e) => {
                problems.push(format!("--config {name}: {e}"));
                return Err(problems);
            }
        },
    };

    let mut duration = |flag: &str, value: &Option<String>, default: Duration| -> Duration {
        match value {
            None => default,
            Some(v) => parse_duration(v).unwrap_or_else(|e| {
                problems.push(format!("--{flag}: {e}"));
                default
            }),
        }
    };
    let min_remaining = duration("min-remaining", &o.min_remaining, Duration::from_secs(1200));
    let margin = duration("expiry-margin", &o.expiry_margin, Duration::from_secs(15));
    let ready_min_life = duration("ready-min-life", &o.ready_min_life, Duration::from_secs(60));
    let backoff_base = duration("backoff-base", &o.backoff_base, Duration::from_millis(200));
    let backoff_max = duration("backoff-max", &o.backoff_max, Duration::from_secs(30));
    let sts_timeout = duration("sts-timeout", &o.sts_timeout, Duration::from_secs(5));
    let cold_start_wait = duration(
        "cold-start-wait",
        &o.cold_start_wait,
        Duration::from_millis(800),
    );
    let drain = duration("drain", &o.drain, Duration::from_secs(5));

    let fraction = o.refresh_fraction.unwrap_or(0.5);
    if !(fraction > 0.0 && fraction < 1.0) {
        problems.push(format!(
            "--refresh-fraction {fraction} must be between 0 and 1 (exclusive)"
        ));
    }
    let jitter = o.refresh_jitter.unwrap_or(0.1);
    if !(0.0..1.0).contains(&jitter) {
        problems.push(format!("--refresh-jitter {jitter} must be in [0, 1)"));
    }
    if backoff_base.is_zero() || backoff_base > backoff_max {
        problems.push("--backoff-base must be > 0 and not larger than --backoff-max".into());
    }
    if sts_timeout.is_zero() {
        problems.push("--sts-timeout must be > 0".into());
    }
    let policy = RefreshPolicy {
        fraction,
        jitter,
        min_remaining,
        backoff_base,
        backoff_max,
        backoff_floor: Duration::from_millis(50).min(backoff_base),
    };

    let file_ref = file.as_ref();
    // Listeners: flag/env wins over the file; exec defaults to a free loopback port.
    let listen_text: Vec<String> = if !o.listen.is_empty() {
        o.listen.clone()
    } else if let Some(l) = file_ref.and_then(|f| f.listen.clone()) {
        l
    } else if mode == Mode::Exec {
        vec!["127.0.0.1:0".into()]
    } else {
        vec![DEFAULT_LISTEN.into()]
    };
    let listen: Vec<SocketAddr> = listen_text
        .iter()
        .filter_map(|l| parse_listen(l, "--listen", &mut problems))
        .collect();
    if listen_text.is_empty() {
        problems.push("--listen: at least one address is needed".into());
    }
    let metrics_text = o
        .metrics_listen
        .clone()
        .or_else(|| file_ref.and_then(|f| f.metrics_listen.clone()))
        .unwrap_or_else(|| {
            if mode == Mode::Exec {
                "off".into()
            } else {
                DEFAULT_METRICS_LISTEN.into()
            }
        });
    let metrics_listen = match metrics_text.trim() {
        "off" | "none" | "" => None,
        t => parse_listen(t, "--metrics-listen", &mut problems),
    };
    if let Some(m) = metrics_listen {
        if m.port() != 0
            && listen
                .iter()
                .any(|l| l.port() == m.port() && (l.ip() == m.ip() || m.ip().is_unspecified()))
        {
            problems.push(format!(
                "--metrics-listen {m} collides with a --listen address"
            ));
        }
    }

    let mode_text = o
        .auth_token_file_mode
        .clone()
        .or_else(|| file_ref.and_then(|f| f.auth_token_file_mode.clone()))
        .unwrap_or_else(|| "0640".into());
    let auth_token_file_mode = match u32::from_str_radix(
        mode_text.trim().trim_start_matches("0o"),
        8,
    ) {
        Ok(m) if m <= 0o777 && m & 0o600 == 0o600 => m,
        Ok(_) => {
            problems.push(format!("--auth-token-file-mode {mode_text}: must be an octal mode ≤ 0777 that lets the owner read and write (e.g. 0640, 0644)"));
            0o640
        }
        Err(_) => {
            problems.push(format!(
                "--auth-token-file-mode {mode_text}: not an octal number (e.g. 0640)"
            ));
            0o640
        }
    };
    let shared_token_file = o
        .auth_token_file
        .clone()
        .or_else(|| file_ref.and_then(|f| f.auth_token_file.clone()));

    let mut allowed_hosts: Vec<String> = o
        .allowed_host
        .iter()
        .chain(
            file_ref
                .and_then(|f| f.allowed_hosts.as_ref())
                .into_iter()
                .flatten(),
        )
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    allowed_hosts.extend(["127.0.0.1", "localhost", "::1"].map(String::from));
    for l in &listen {
        if !l.ip().is_unspecified() {
            allowed_hosts.push(l.ip().to_string());
        }
    }
    allowed_hosts.sort();
    allowed_hosts.dedup();

    let default_region = o
        .region
        .clone()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| env_nonempty("AWS_DEFAULT_REGION"));
    let default_endpoint = o
        .sts_endpoint
        .clone()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"));
    let default_regional = o.sts_regional_endpoints.clone();

    let log_format = match o.log_format.as_deref().map(str::trim) {
        None | Some("plain") | Some("text") => LogFormat::Plain,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(format!("--log-format `{other}`: use plain or json"));
            LogFormat::Plain
        }
    };
    let log_filter = o.log_level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
        problems.push(format!(
            "--log-level `{log_filter}` is not a valid filter (e.g. info, credproxy=debug)"
        ));
    }
    let worker_threads = o.worker_threads.unwrap_or(1);
    if worker_threads == 0 || worker_threads > 64 {
        problems.push("--worker-threads must be between 1 and 64".into());
    }

    struct RawRole {
        name: String,
        role_arn: Option<String>,
        token_file: Option<PathBuf>,
        region: Option<String>,
        endpoint: Option<String>,
        regional: Option<String>,
        session_name: Option<String>,
        duration: Option<i64>,
        policy: Option<String>,
        policy_arns: Vec<String>,
        auth_token_file: Option<PathBuf>,
    }
    let mut raw_roles = Vec::new();
    let default_role;
    match file {
        Some(f) => {
            if f.roles.is_empty() {
                problems.push("--config: `roles` must name at least one role".into());
            }
            for (name, r) in f.roles {
                raw_roles.push(RawRole {
                    name,
                    role_arn: r.role_arn,
                    token_file: r.web_identity_token_file,
                    region: r.region.or_else(|| default_region.clone()),
                    endpoint: r.sts_endpoint.or_else(|| default_endpoint.clone()),
                    regional: r
                        .sts_regional_endpoints
                        .or_else(|| default_regional.clone()),
                    session_name: r.session_name.or_else(|| o.role_session_name.clone()),
                    duration: r.duration_seconds.or(o.duration_seconds),
                    policy: r.policy,
                    policy_arns: r.policy_arns,
                    auth_token_file: r.auth_token_file,
                });
            }
            default_role = match f.default_role {
                Some(d) => Some(d),
                None if raw_roles.len() == 1 => Some(raw_roles[0].name.clone()),
                None => None,
            };
            if let Some(d) = &default_role {
                if !raw_roles.iter().any(|r| &r.name == d) {
                    problems.push(format!(
                        "--config: default_role `{d}` is not one of the roles"
                    ));
                }
            }
        }
        None => {
            raw_roles.push(RawRole {
                name: DEFAULT_ROLE.into(),
                role_arn: o.role_arn.clone().filter(|s| !s.is_empty()),
                token_file: o
                    .web_identity_token_file
                    .clone()
                    .filter(|p| !p.as_os_str().is_empty()),
                region: default_region.clone(),
                endpoint: default_endpoint.clone(),
                regional: default_regional.clone(),
                session_name: o.role_session_name.clone().filter(|s| !s.is_empty()),
                duration: o.duration_seconds,
                policy: o.session_policy.clone(),
                policy_arns: o.policy_arn.clone(),
                auth_token_file: None,
            });
            default_role = Some(DEFAULT_ROLE.into());
        }
    }

    let mut roles = Vec::new();
    for r in raw_roles {
        let p = if r.name == DEFAULT_ROLE && o.config.is_none() {
            String::new()
        } else {
            format!("role `{}`: ", r.name)
        };
        if r.name.is_empty()
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push(format!(
                "{p}role names may use only letters, digits, `-`, `_` and `.`"
            ));
        }
        let role_arn = match r.role_arn {
            None => {
                problems.push(format!(
                    "{p}no role ARN: set AWS_ROLE_ARN or --role-arn (role_arn in --config)"
                ));
                String::new()
            }
            Some(a) if !valid_role_arn(&a) => {
                problems.push(format!(
                    "{p}role ARN `{a}` is not of the form arn:aws:iam::123456789012:role/NAME"
                ));
                a
            }
            Some(a) => a,
        };
        let token_file = r.token_file.unwrap_or_else(|| {
            problems.push(format!("{p}no web identity token file: set AWS_WEB_IDENTITY_TOKEN_FILE or --web-identity-token-file"));
            PathBuf::new()
        });
        let regional = match r.regional.as_deref().map(str::trim) {
            None | Some("") | Some("regional") => true,
            Some("legacy") => false,
            Some(other) => {
                problems.push(format!(
                    "{p}AWS_STS_REGIONAL_ENDPOINTS `{other}`: use regional or legacy"
                ));
                true
            }
        };
        let region = match r.region {
            Some(reg)
                if reg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
            {
                reg
            }
            Some(reg) => {
                problems.push(format!(
                    "{p}region `{reg}` is not a region name like us-east-1"
                ));
                reg
            }
            None => {
                problems.push(format!(
                    "{p}no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, --region)"
                ));
                String::new()
            }
        };
        let mut url = r.endpoint.filter(|e| !e.trim().is_empty());
        if let Some(u) = &url {
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
                problems.push(format!(
                    "{p}STS endpoint `{u}` must be an http:// or https:// URL"
                ));
            }
        } else if !regional && LEGACY_GLOBAL_REGIONS.contains(&region.as_str()) {
            url = Some("https://sts.amazonaws.com".into());
        }
        let session_name = r.session_name.unwrap_or_else(default_session_name);
        if !valid_session_name(&session_name) {
            problems.push(format!("{p}session name `{session_name}` must be 2-64 characters of letters, digits and _+=,.@-"));
        }
        let duration_seconds = match r.duration {
            None => None,
            Some(d) if (1..=43200).contains(&d) => {
                if d < 900 {
                    tracing::warn!(duration_seconds = d, "DurationSeconds below 900 is rejected by AWS STS (fine for local test endpoints)");
                }
                Some(d as i32)
            }
            Some(d) => {
                problems.push(format!("{p}duration seconds {d} must be between 1 and 43200 (AWS STS accepts 900..43200)"));
                None
            }
        };
        if let Some(pol) = &r.policy {
            if pol.is_empty() || pol.len() > 2048 {
                problems.push(format!("{p}session policy must be 1-2048 characters"));
            } else if serde_json::from_str::<serde_json::Value>(pol).is_err() {
                problems.push(format!("{p}session policy is not valid JSON"));
            }
        }
        if r.policy_arns.len() > 10 {
            problems.push(format!(
                "{p}at most 10 policy ARNs are allowed, got {}",
                r.policy_arns.len()
            ));
        }
        for arn in &r.policy_arns {
            if !arn.starts_with("arn:aws") || !arn.contains(":policy/") {
                problems.push(format!(
                    "{p}policy ARN `{arn}` is not of the form arn:aws:iam::aws:policy/NAME"
                ));
            }
        }
        let auth_token_file = r.auth_token_file.or_else(|| shared_token_file.clone());
        if auth_token_file.is_none() && mode == Mode::Serve {
            problems.push(format!(
                "{p}no auth token file: set --auth-token-file (CREDPROXY_AUTH_TOKEN_FILE)"
            ));
        }
        if let Some(f) = &auth_token_file {
            match f.parent() {
                Some(dir) if dir.as_os_str().is_empty() || dir.is_dir() => {}
                Some(dir) => problems.push(format!(
                    "{p}auth token file directory {} does not exist",
                    dir.display()
                )),
                None => problems.push(format!(
                    "{p}auth token file {} has no file name",
                    f.display()
                )),
            }
        }
        roles.push(RoleConfig {
            settings: RoleSettings {
                name: r.name,
                role_arn: role_arn.clone(),
                token_file,
                policy: policy.clone(),
                margin,
                ready_min_life,
                serve_role_arn: o.serve_role_arn,
            },
            endpoint: StsEndpoint {
                region,
                url,
                attempt_timeout: sts_timeout,
                connect_timeout: sts_timeout.min(Duration::from_secs(2)),
            },
            request: AssumeRequest {
                role_arn,
                session_name,
                duration_seconds,
                policy: r.policy,
                policy_arns: r.policy_arns,
            },
            auth_token_file,
        });
    }

    if problems.is_empty() {
        Ok(Settings {
            listen,
            metrics_listen,
            allowed_hosts,
            roles,
            default_role,
            auth_token_file_mode,
            cold_start_wait,
            drain,
            log_format,
            log_filter,
            worker_threads,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar_options(dir: &std::path::Path) -> Options {
        Options {
            role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            web_identity_token_file: Some(dir.join("token")),
            region: Some("eu-west-1".into()),
            auth_token_file: Some(dir.join("auth")),
            sts_endpoint: Some("http://127.0.0.1:5000".into()),
            ..Options::default()
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("20m").unwrap(), Duration::from_secs(1200));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sidecar_defaults_match_the_webhook_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(&sidecar_options(dir.path()), Mode::Serve).unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:9911".parse().unwrap()]);
        assert_eq!(s.metrics_listen, Some("0.0.0.0:9912".parse().unwrap()));
        assert_eq!(s.auth_token_file_mode, 0o640);
        assert_eq!(s.default_role.as_deref(), Some("default"));
        assert_eq!(s.roles.len(), 1);
        assert!(s.allowed_hosts.contains(&"localhost".to_string()));
        assert_eq!(s.roles[0].endpoint.region, "eu-west-1");
        assert!(s.roles[0].request.session_name.starts_with("credproxy"));
    }

    #[test]
    fn every_problem_is_reported_on_its_own_line() {
        let o = Options {
            listen: vec!["nonsense".into()],
            role_arn: Some("arn:aws:s3:::bucket".into()),
            auth_token_file_mode: Some("999".into()),
            expiry_margin: Some("soon".into()),
            role_session_name: Some("has space".into()),
            ..Options::default()
        };
        let problems = resolve(&o, Mode::Serve).unwrap_err();
        let text = problems.join("\n");
        for needle in [
            "--listen `nonsense`",
            "role ARN `arn:aws:s3:::bucket`",
            "--auth-token-file-mode 999",
            "--expiry-margin",
            "session name `has space`",
            "no web identity token file",
            "no AWS region",
            "no auth token file",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
        assert!(problems.iter().all(|p| !p.contains('\n')));
    }

    #[test]
    fn legacy_regional_setting_selects_the_global_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = sidecar_options(dir.path());
        o.sts_endpoint = None;
        o.region = Some("us-east-1".into());
        o.sts_regional_endpoints = Some("legacy".into());
        let s = resolve(&o, Mode::Serve).unwrap();
        assert_eq!(
            s.roles[0].endpoint.url.as_deref(),
            Some("https://sts.amazonaws.com")
        );
        o.region = Some("af-south-1".into());
        let s = resolve(&o, Mode::Serve).unwrap();
        assert_eq!(s.roles[0].endpoint.url, None);
    }

    #[test]
    fn yaml_config_defines_named_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!(
                "listen: ['127.0.0.1:7000']\nmetrics_listen: 'off'\nauth_token_file: {d}/shared\nroles:\n  dev:\n    role_arn: arn:aws:iam::123456789012:role/dev\n    web_identity_token_file: {d}/t1\n    region: us-west-2\n  prod:\n    role_arn: arn:aws:iam::210987654321:role/prod\n    web_identity_token_file: {d}/t2\n    region: eu-central-1\n    auth_token_file: {d}/prod-token\n    duration_seconds: 900\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let o = Options {
            config: Some(path),
            ..Options::default()
        };
        let s = resolve(&o, Mode::Serve).unwrap();
        assert_eq!(s.roles.len(), 2);
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.default_role, None);
        let prod = s.roles.iter().find(|r| r.settings.name == "prod").unwrap();
        assert_eq!(prod.auth_token_file, Some(dir.path().join("prod-token")));
        assert_eq!(prod.request.duration_seconds, Some(900));
        let dev = s.roles.iter().find(|r| r.settings.name == "dev").unwrap();
        assert_eq!(dev.auth_token_file, Some(dir.path().join("shared")));
    }

    #[test]
    fn yaml_typos_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "roles:\n  dev:\n    role_ar: x\n").unwrap();
        let o = Options {
            config: Some(path),
            ..Options::default()
        };
        let problems = resolve(&o, Mode::Serve).unwrap_err();
        assert!(
            problems[0].contains("unknown field `role_ar`"),
            "{problems:?}"
        );
    }

    #[test]
    fn exec_mode_defaults_to_an_ephemeral_port_and_no_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = sidecar_options(dir.path());
        o.auth_token_file = None;
        let s = resolve(&o, Mode::Exec).unwrap();
        assert_eq!(s.listen[0].port(), 0);
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.roles[0].auth_token_file, None);
    }
}
