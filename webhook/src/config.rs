//! Command line → validated configuration.
//!
//! Contract:
//! - [`parse`] takes the full argv (program name first) and returns a [`Command`]:
//!   `Serve(config)` (no subcommand), `Inject(inject_config)` (`webhook inject [flags] -f FILE…`), or
//!   `Print(text)` for `--help`/`--version` (print to stdout, exit 0).
//! - On failure it returns [`Rejected`]: `exit_code` 2 for a command-line syntax error (unknown flag,
//!   malformed number/bool/duration — like upstream's pflag), 64 (EX_USAGE) for values that parse but are
//!   not acceptable; `messages` holds one line per problem. Nothing is bound or read before this succeeds.
//! - Every upstream flag keeps its name, type and default (`reference/upstream-webhook.md` §2), Go-style:
//!   `--flag value` and `--flag=value`; booleans are `--flag`, `--flag=true|false|1|0|t|f…` (Go
//!   `strconv.ParseBool`); durations are Go durations (`100ms`, `1m0s`); integers follow Go's base-0 rules.
//!   The klog flags are accepted and mapped onto tracing ([`LogConfig`]).
//! - `--version` prints `v0.1.0`: upstream hard-codes that string and it is also this crate's version.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::go::{go_bool, go_duration, go_int, go_int32, go_uint, GoDuration};
use crate::mutate::{ContainerCredentialsSettings, MutateConfig};
use crate::sidecar::{SidecarConfig, SidecarMode};

/// What `webhook inject` prints for `--version` and what `--version` prints for the server.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

// `--token-expiration` and annotations are clamped to upstream's minimum token expiration.
pub use crate::mutate::MIN_TOKEN_EXPIRATION;

/// Default `--max-request-bytes`: the API server caps request bodies at 3 MiB, and an AdmissionReview may
/// carry the object twice (object + oldObject) plus the envelope.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The parsed command.
#[derive(Debug)]
pub enum Command {
    /// Run the admission webhook server.
    Serve(Box<Config>),
    /// Offline injection into manifests.
    Inject(Box<InjectConfig>),
    /// `--help` / `--version`: print this to stdout and exit 0.
    Print(String),
}

/// The command line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 2 = syntax/usage error, 64 = invalid values.
    pub exit_code: i32,
    /// One line per problem (a usage error may be a multi-line clap message in one entry).
    pub messages: Vec<String>,
}

/// Output format of the logs (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// klog flags mapped onto tracing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// klog `-v`. Upstream logs mutation decisions at 3 and access logs at 4.
    pub verbosity: i32,
    pub format: LogFormat,
    /// klog `--vmodule` (Go file patterns; kept only so main can report it is not applied).
    pub vmodule: String,
    /// klog flags that were given but have no effect here (we always log to stderr): one human line each,
    /// for main to log once at startup.
    pub ignored: Vec<String>,
}

impl LogConfig {
    /// The tracing level that corresponds to the klog verbosity: 0–2 info, 3–4 debug, 5+ trace.
    pub fn level(&self) -> tracing::Level {
        match self.verbosity {
            i32::MIN..=2 => tracing::Level::INFO,
            3..=4 => tracing::Level::DEBUG,
            _ => tracing::Level::TRACE,
        }
    }
}

/// The validated server configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub port: u16,
    pub metrics_port: u16,
    pub kubeconfig: Option<PathBuf>,
    pub kube_api: Option<String>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// `--tls-min-version` / `--tls-cipher-suites`, mapped by [`certs::parse_min_version`] and
    /// [`certs::parse_cipher_suites`]. A minimum of 1.0/1.1 is kept as given (it means TLS 1.2; main warns).
    pub tls: certs::TlsPolicy,
    /// `--in-cluster` (always false in a validated `Serve` config; may be true for `inject`, where it is unused).
    pub in_cluster: bool,
    pub service_name: String,
    /// `--namespace`: where the `pod-identity-webhook` ConfigMap lives.
    pub namespace: String,
    pub tls_secret: String,
    pub annotation_prefix: String,
    pub token_audience: String,
    pub token_mount_path: String,
    /// `--token-expiration`, clamped to ≥ 600.
    pub token_expiration: i64,
    /// Empty = no region injection.
    pub aws_default_region: String,
    pub sts_regional_endpoint: bool,
    pub watch_config_map: bool,
    pub compose_role_arn: bool,
    pub watch_container_credentials_config: Option<PathBuf>,
    pub container_credentials: ContainerCredentialsSettings,
    pub enable_debugging_handlers: bool,
    /// Zero disables waiting and the direct API lookup (negative Go durations become zero).
    pub service_account_lookup_grace_period: Duration,
    pub resync_period: Duration,
    pub max_request_bytes: usize,
    pub log: LogConfig,
    /// `Some` when `--sidecar-image` is set (sidecar injection enabled).
    pub sidecar: Option<SidecarConfig>,
}

impl Config {
    /// The part of the configuration the pure mutation needs.
    pub fn mutate_config(&self) -> MutateConfig {
        MutateConfig {
            annotation_prefix: self.annotation_prefix.clone(),
            token_mount_path: self.token_mount_path.clone(),
            aws_default_region: self.aws_default_region.clone(),
            container_credentials: self.container_credentials.clone(),
            sidecar: self.sidecar.clone(),
        }
    }
}

/// Where `webhook inject` reads a document stream from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

/// `webhook inject`: the server's configuration plus the inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectConfig {
    pub config: Config,
    /// In command-line order; `-f -` is stdin.
    pub inputs: Vec<InputSource>,
}

/// Flags (clap ids) that do nothing offline: serving, TLS, API access, logging. `webhook inject` accepts and
/// ignores them, and hides them from its `--help`.
const SERVER_ONLY_FLAGS: [&str; 31] = [
    "port",
    "metrics_port",
    "kubeconfig",
    "kube_api",
    "tls_key",
    "tls_cert",
    "tls_cipher_suites",
    "tls_min_version",
    "in_cluster",
    "service_name",
    "tls_secret",
    "compose_role_arn",
    "enable_debugging_handlers",
    "service_account_lookup_grace_period",
    "resync_period",
    "v",
    "vmodule",
    "logtostderr",
    "alsologtostderr",
    "stderrthreshold",
    "add_dir_header",
    "log_backtrace_at",
    "log_dir",
    "log_file",
    "log_file_max_size",
    "one_output",
    "skip_headers",
    "skip_log_headers",
    "legacy_stderr_threshold_behavior",
    "log_format",
    "max_request_bytes",
];

/// Parse and validate a full argv (program name first).
pub fn parse<I, T>(args: I) -> Result<Command, Rejected>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    // `webhook inject` accepts the server's flags (same command lines work), but its help lists only the
    // ones that change the mutation.
    let command = Cli::command().mut_subcommand("inject", |inject| {
        SERVER_ONLY_FLAGS
            .iter()
            .fold(inject, |inject, id| {
                inject.mut_arg(*id, |arg| arg.hide(true))
            })
            .mut_arg("namespace", |arg| {
                arg.help(
                    "Namespace of the pod-identity-webhook ConfigMap read with --watch-config-map",
                )
            })
    });
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    Ok(Command::Print(err.render().to_string()))
                }
                _ => Err(Rejected {
                    exit_code: 2,
                    messages: vec![err.render().to_string().trim_end().to_string()],
                }),
            };
        }
    };
    match cli.command {
        None => {
            if cli.flags.version {
                return Ok(Command::Print(format!("{VERSION}\n")));
            }
            let mut problems = Vec::new();
            let config = validate(&cli.flags, &mut problems);
            if cli.flags.in_cluster {
                problems.push(
                    "--in-cluster=true (the default) uses upstream's CSR certificate mode, which current Kubernetes \
                     clusters cannot sign (signer kubernetes.io/legacy-unknown); pass --in-cluster=false with \
                     --tls-cert and --tls-key (e.g. from cert-manager)"
                        .to_string(),
                );
            }
            finish(problems).map(|()| Command::Serve(Box::new(config)))
        }
        Some(SubcommandArgs::Inject(inject)) => {
            if inject.flags.version {
                return Ok(Command::Print(format!("{VERSION}\n")));
            }
            let mut problems = Vec::new();
            let config = validate(&inject.flags, &mut problems);
            if config.compose_role_arn {
                problems.push(
                    "--compose-role-arn needs the instance metadata service (account and partition), which \
                     `webhook inject` does not call: give full role ARNs in the role-arn annotations"
                        .to_string(),
                );
            }
            let inputs = inject
                .filenames
                .iter()
                .map(|f| {
                    if f == "-" {
                        InputSource::Stdin
                    } else {
                        InputSource::File(PathBuf::from(f))
                    }
                })
                .collect();
            finish(problems).map(|()| Command::Inject(Box::new(InjectConfig { config, inputs })))
        }
    }
}

fn finish(problems: Vec<String>) -> Result<(), Rejected> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Rejected {
            exit_code: 64,
            messages: problems,
        })
    }
}

fn validate(flags: &ServerFlags, problems: &mut Vec<String>) -> Config {
    let port = port_flag("--port", flags.port, problems);
    let metrics_port = port_flag("--metrics-port", flags.metrics_port, problems);
    let tls = certs::TlsPolicy {
        min_version: tls_flag(certs::parse_min_version(&flags.tls_min_version), problems),
        tls12_cipher_suites: tls_flag(
            certs::parse_cipher_suites(&flags.tls_cipher_suites),
            problems,
        ),
    };
    if flags.annotation_prefix.is_empty() {
        problems.push("--annotation-prefix must not be empty".to_string());
    }
    for (name, value) in [
        ("--token-mount-path", &flags.token_mount_path),
        (
            "--container-credentials-token-mount-path",
            &flags.container_credentials_token_mount_path,
        ),
    ] {
        if !value.starts_with('/') {
            problems.push(format!("{name}={value:?}: must be an absolute path"));
        }
    }
    for (name, value) in [
        (
            "--container-credentials-token-volume-name",
            &flags.container_credentials_token_volume_name,
        ),
        (
            "--container-credentials-token-path",
            &flags.container_credentials_token_path,
        ),
    ] {
        if value.is_empty() {
            problems.push(format!("{name} must not be empty"));
        }
    }
    if flags.max_request_bytes < 1024 {
        problems.push(format!(
            "--max-request-bytes={}: must be at least 1024 (default {DEFAULT_MAX_REQUEST_BYTES})",
            flags.max_request_bytes
        ));
    }
    let sidecar = sidecar_config(flags, problems);
    let log = log_config(flags);

    Config {
        port,
        metrics_port,
        kubeconfig: non_empty(&flags.kubeconfig).map(PathBuf::from),
        kube_api: non_empty(&flags.kube_api).map(str::to_string),
        tls_cert: PathBuf::from(&flags.tls_cert),
        tls_key: PathBuf::from(&flags.tls_key),
        tls,
        in_cluster: flags.in_cluster,
        service_name: flags.service_name.clone(),
        namespace: flags.namespace.clone(),
        tls_secret: flags.tls_secret.clone(),
        annotation_prefix: flags.annotation_prefix.clone(),
        token_audience: flags.token_audience.clone(),
        token_mount_path: flags.token_mount_path.clone(),
        token_expiration: flags.token_expiration.max(MIN_TOKEN_EXPIRATION),
        aws_default_region: flags.aws_default_region.clone(),
        sts_regional_endpoint: flags.sts_regional_endpoint,
        watch_config_map: flags.watch_config_map,
        compose_role_arn: flags.compose_role_arn,
        watch_container_credentials_config: non_empty(&flags.watch_container_credentials_config)
            .map(PathBuf::from),
        container_credentials: ContainerCredentialsSettings {
            audience: flags.container_credentials_audience.clone(),
            mount_path: flags.container_credentials_token_mount_path.clone(),
            volume_name: flags.container_credentials_token_volume_name.clone(),
            token_path: flags.container_credentials_token_path.clone(),
            full_uri: flags.container_credentials_full_uri.clone(),
        },
        enable_debugging_handlers: flags.enable_debugging_handlers,
        service_account_lookup_grace_period: flags.service_account_lookup_grace_period.clamped(),
        resync_period: flags.resync_period.clamped(),
        max_request_bytes: flags.max_request_bytes,
        log,
        sidecar,
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn port_flag(name: &str, value: i64, problems: &mut Vec<String>) -> u16 {
    match u16::try_from(value) {
        Ok(port) => port,
        Err(_) => {
            problems.push(format!("{name}={value}: not a TCP port (0–65535)"));
            0
        }
    }
}

/// A TLS flag parsed by the certs crate (the single mapping onto rustls): its error is one problem line.
fn tls_flag<T>(
    parsed: Result<Option<T>, certs::TlsPolicyError>,
    problems: &mut Vec<String>,
) -> Option<T> {
    parsed.unwrap_or_else(|err| {
        problems.push(err.to_string());
        None
    })
}

fn sidecar_config(flags: &ServerFlags, problems: &mut Vec<String>) -> Option<SidecarConfig> {
    let mode = match flags.sidecar_mode.as_str() {
        "native" => SidecarMode::Native,
        "container" => SidecarMode::Container,
        other => {
            problems.push(format!(
                "--sidecar-mode={other:?}: expected `native` or `container`"
            ));
            SidecarMode::Native
        }
    };
    let port = match u16::try_from(flags.sidecar_port) {
        Ok(p) if (1..u16::MAX).contains(&p) => p,
        _ => {
            problems.push(format!(
                "--sidecar-port={}: must be 1–65534 (the metrics/probe listener uses the next port)",
                flags.sidecar_port
            ));
            9911
        }
    };
    let pull_policy = match flags.sidecar_image_pull_policy.as_str() {
        "" => None,
        p @ ("Always" | "IfNotPresent" | "Never") => Some(p.to_string()),
        other => {
            problems.push(format!(
                "--sidecar-image-pull-policy={other:?}: expected Always, IfNotPresent or Never (or empty)"
            ));
            None
        }
    };
    let mut quantity = |name: &str, value: &str| -> Option<String> {
        if value.is_empty() {
            None
        } else if is_quantity(value) {
            Some(value.to_string())
        } else {
            problems.push(format!(
                "{name}={value:?}: not a Kubernetes quantity (e.g. 10m, 0.5, 64Mi)"
            ));
            None
        }
    };
    let cpu_request = quantity("--sidecar-cpu-request", &flags.sidecar_cpu_request);
    let memory_request = quantity("--sidecar-memory-request", &flags.sidecar_memory_request);
    let cpu_limit = quantity("--sidecar-cpu-limit", &flags.sidecar_cpu_limit);
    let memory_limit = quantity("--sidecar-memory-limit", &flags.sidecar_memory_limit);
    if flags.sidecar_annotation_prefix.is_empty() {
        problems.push("--sidecar-annotation-prefix must not be empty".to_string());
    }
    if flags.sidecar_run_as_user <= 0 {
        problems.push(format!(
            "--sidecar-run-as-user={}: the sidecar runs as non-root, use a UID > 0",
            flags.sidecar_run_as_user
        ));
    }
    let env = sidecar_env(&flags.sidecar_env, problems);
    if flags.sidecar_image.is_empty() {
        return None;
    }
    Some(SidecarConfig {
        image: flags.sidecar_image.clone(),
        port,
        mode,
        annotation_prefix: flags.sidecar_annotation_prefix.clone(),
        image_pull_policy: pull_policy,
        cpu_request,
        memory_request,
        cpu_limit,
        memory_limit,
        run_as_user: flags.sidecar_run_as_user,
        env,
    })
}

/// `--sidecar-env NAME=VALUE` (repeatable): extra env of the credproxy sidecar, e.g. the cluster's STS
/// endpoint (`AWS_ENDPOINT_URL_STS`). A later entry for the same name replaces an earlier one.
fn sidecar_env(entries: &[String], problems: &mut Vec<String>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in entries {
        let Some((name, value)) = entry.split_once('=') else {
            problems.push(format!("--sidecar-env={entry:?}: expected NAME=VALUE"));
            continue;
        };
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            problems.push(format!(
                "--sidecar-env={entry:?}: {name:?} is not an environment variable name"
            ));
        } else if crate::sidecar::RESERVED_ENV.contains(&name) {
            problems.push(format!(
                "--sidecar-env={entry:?}: {name} is set by the webhook (the sidecar contract) and cannot be overridden"
            ));
        } else {
            env.retain(|(n, _)| n != name);
            env.push((name.to_string(), value.to_string()));
        }
    }
    env
}

/// Kubernetes resource quantity grammar: `<signedNumber><suffix>`, suffix binary (Ki…Ei), decimal SI
/// (n u m "" k M G T P E) or decimal exponent (e3, E-2).
fn is_quantity(s: &str) -> bool {
    let digits_end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(digits_end);
    let unsigned = number.trim_start_matches(['+', '-']);
    let valid_number = !unsigned.is_empty()
        && unsigned != "."
        && unsigned.matches('.').count() <= 1
        && number.len() - unsigned.len() <= 1;
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || ((suffix.starts_with('e') || suffix.starts_with('E'))
        && suffix.len() > 1
        && suffix[1..]
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit())
        && !suffix[1..].trim_start_matches(['+', '-']).is_empty());
    valid_number && valid_suffix
}

fn log_config(flags: &ServerFlags) -> LogConfig {
    let mut ignored = Vec::new();
    if !flags.logtostderr {
        ignored.push("--logtostderr=false: podcred always logs to stderr".to_string());
    }
    for (name, value) in [
        ("--log_dir", &flags.log_dir),
        ("--log_file", &flags.log_file),
        ("--log_backtrace_at", &flags.log_backtrace_at),
        ("--vmodule", &flags.vmodule),
    ] {
        if !value.is_empty() {
            ignored.push(format!("{name}={value}: klog-only, not applied"));
        }
    }
    LogConfig {
        verbosity: flags.v,
        format: if flags.log_format == LogFormatArg::Json {
            LogFormat::Json
        } else {
            LogFormat::Plain
        },
        vmodule: flags.vmodule.clone(),
        ignored,
    }
}

// ---------------------------------------------------------------------------------------------
// clap surface

#[derive(Parser, Debug)]
#[command(
    name = "webhook",
    about = "podcred webhook: drop-in replacement for amazon-eks-pod-identity-webhook",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    flags: ServerFlags,
    #[command(subcommand)]
    command: Option<SubcommandArgs>,
}

#[derive(Subcommand, Debug)]
enum SubcommandArgs {
    /// Offline injection: mutate the pods and pod templates of multi-document YAML manifests (like
    /// `istioctl kube-inject`), using the ServiceAccounts in the input as the cache.
    Inject(InjectArgs),
}

#[derive(Args, Debug)]
struct InjectArgs {
    #[command(flatten)]
    flags: ServerFlags,
    /// Manifest file to read (repeatable); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    filenames: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    Plain,
    Json,
}

#[derive(Args, Debug)]
struct ServerFlags {
    // ---- upstream flags (reference §2)
    /// Port to listen on
    #[arg(long, default_value = "443", value_parser = go_int)]
    port: i64,
    /// Port to listen on for metrics (http)
    #[arg(long = "metrics-port", default_value = "9999", value_parser = go_int)]
    metrics_port: i64,
    /// (out-of-cluster) Absolute path to the kubeconfig file
    #[arg(long, default_value = "")]
    kubeconfig: String,
    /// (out-of-cluster) The url to the API server
    #[arg(long = "kube-api", default_value = "")]
    kube_api: String,
    /// (out-of-cluster) TLS key file path
    #[arg(long = "tls-key", default_value = "/etc/webhook/certs/tls.key")]
    tls_key: String,
    /// (out-of-cluster) TLS certificate file path
    #[arg(long = "tls-cert", default_value = "/etc/webhook/certs/tls.crt")]
    tls_cert: String,
    /// Comma-separated list of TLS 1.2 cipher suites (Go/IANA names; TLS 1.3 suites are always on). Only
    /// ECDHE AES-GCM/ChaCha20 suites are available. Empty = defaults
    #[arg(long = "tls-cipher-suites", default_value = "")]
    tls_cipher_suites: String,
    /// Minimum TLS version: 1.0, 1.1, 1.2, 1.3 or VersionTLS10…VersionTLS13 (1.0 and 1.1 mean 1.2, the
    /// lowest version rustls implements). Empty = default
    #[arg(long = "tls-min-version", default_value = "")]
    tls_min_version: String,
    /// Use in-cluster CSR certificates (upstream's broken mode: rejected; pass --in-cluster=false)
    #[arg(long = "in-cluster", default_value = "true", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    in_cluster: bool,
    /// (in-cluster) The service name fronting this webhook
    #[arg(long = "service-name", default_value = "pod-identity-webhook")]
    service_name: String,
    /// (in-cluster) The namespace name this webhook, the TLS secret, and configmap resides in
    #[arg(long, default_value = "eks")]
    namespace: String,
    /// (in-cluster) The secret name for storing the TLS serving cert
    #[arg(long = "tls-secret", default_value = "pod-identity-webhook")]
    tls_secret: String,
    /// The Service Account annotation to look for
    #[arg(long = "annotation-prefix", default_value = "eks.amazonaws.com")]
    annotation_prefix: String,
    /// The default audience for tokens. Can be overridden by annotation
    #[arg(long = "token-audience", default_value = "sts.amazonaws.com")]
    token_audience: String,
    /// The path to mount tokens
    #[arg(
        long = "token-mount-path",
        default_value = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    )]
    token_mount_path: String,
    /// The token expiration (seconds, minimum 600)
    #[arg(long = "token-expiration", default_value_t = crate::mutate::DEFAULT_TOKEN_EXPIRATION, value_parser = go_int)]
    token_expiration: i64,
    /// If set, AWS_DEFAULT_REGION and AWS_REGION will be set to this value in mutated containers
    #[arg(long = "aws-default-region", default_value = "")]
    aws_default_region: String,
    /// Whether to inject the AWS_STS_REGIONAL_ENDPOINTS=regional env var in mutated pods
    #[arg(long = "sts-regional-endpoint", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    sts_regional_endpoint: bool,
    /// Enables watching serviceaccount-to-role mappings in the pod-identity-webhook ConfigMap
    #[arg(long = "watch-config-map", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    watch_config_map: bool,
    /// If true, then the role name and path can be used instead of the full arn
    #[arg(long = "compose-role-arn", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    compose_role_arn: bool,
    /// Absolute path to the container credentials config file to watch
    #[arg(long = "watch-container-credentials-config", default_value = "")]
    watch_container_credentials_config: String,
    /// The audience for tokens in container credentials mode
    #[arg(
        long = "container-credentials-audience",
        default_value = "pods.eks.amazonaws.com"
    )]
    container_credentials_audience: String,
    /// The path to mount tokens in container credentials mode
    #[arg(
        long = "container-credentials-token-mount-path",
        default_value = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
    )]
    container_credentials_token_mount_path: String,
    /// The name of the volume to mount the token in container credentials mode
    #[arg(
        long = "container-credentials-token-volume-name",
        default_value = "eks-pod-identity-token"
    )]
    container_credentials_token_volume_name: String,
    /// The path of the token in container credentials mode
    #[arg(
        long = "container-credentials-token-path",
        default_value = "eks-pod-identity-token"
    )]
    container_credentials_token_path: String,
    /// The full URI of the container credentials endpoint
    #[arg(
        long = "container-credentials-full-uri",
        default_value = "http://169.254.170.23/v1/credentials"
    )]
    container_credentials_full_uri: String,
    /// Display the version and exit
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    version: bool,
    /// Enable debugging handlers on the metrics port and the webhook port
    #[arg(long = "enable-debugging-handlers", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    enable_debugging_handlers: bool,
    /// Time to wait for a service account missing from the cache (0 = no wait, no API lookup)
    #[arg(long = "service-account-lookup-grace-period", default_value = "0s", value_parser = go_duration)]
    service_account_lookup_grace_period: GoDuration,
    /// The resync period of the informers
    #[arg(long = "resync-period", default_value = "1m0s", value_parser = go_duration)]
    resync_period: GoDuration,

    // ---- klog flags (accepted; mapped onto tracing where meaningful)
    /// klog: log level for V logs (0–2 info, 3–4 debug, 5+ trace)
    #[arg(short = 'v', long = "v", default_value = "0", value_parser = go_int32)]
    v: i32,
    /// klog: comma-separated pattern=N settings (accepted, not applied)
    #[arg(long, default_value = "")]
    vmodule: String,
    /// klog: log to standard error instead of files (always true here)
    #[arg(long, default_value = "true", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    logtostderr: bool,
    /// klog: log to standard error as well as files (accepted)
    #[arg(long, default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    alsologtostderr: bool,
    /// klog: logs at or above this threshold go to stderr (accepted)
    #[arg(long, default_value = "2")]
    stderrthreshold: String,
    /// klog: if true, adds the file directory to the header (accepted)
    #[arg(long = "add_dir_header", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    add_dir_header: bool,
    /// klog: when logging hits line file:N, emit a stack trace (accepted, not applied)
    #[arg(long = "log_backtrace_at", default_value = "")]
    log_backtrace_at: String,
    /// klog: if non-empty, write log files in this directory (not applied: stderr only)
    #[arg(long = "log_dir", default_value = "")]
    log_dir: String,
    /// klog: if non-empty, use this log file (not applied: stderr only)
    #[arg(long = "log_file", default_value = "")]
    log_file: String,
    /// klog: maximum size a log file can grow to in MB (accepted)
    #[arg(long = "log_file_max_size", default_value = "1800", value_parser = go_uint)]
    log_file_max_size: u64,
    /// klog: only write logs to their native severity level (accepted)
    #[arg(long = "one_output", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    one_output: bool,
    /// klog: avoid header prefixes in the log messages (accepted)
    #[arg(long = "skip_headers", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    skip_headers: bool,
    /// klog: avoid headers when opening log files (accepted)
    #[arg(long = "skip_log_headers", default_value = "false", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    skip_log_headers: bool,
    /// klog: legacy stderrthreshold behaviour (accepted)
    #[arg(long = "legacy_stderr_threshold_behavior", default_value = "true", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    legacy_stderr_threshold_behavior: bool,

    // ---- podcred flags
    /// podcred: log format
    #[arg(long = "log-format", value_enum, default_value = "plain")]
    log_format: LogFormatArg,
    /// podcred: maximum /mutate request body in bytes (larger bodies get 413)
    #[arg(long = "max-request-bytes", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// podcred: credproxy sidecar image; setting it enables sidecar injection
    #[arg(long = "sidecar-image", default_value = "")]
    sidecar_image: String,
    /// podcred: sidecar loopback port (its probe/metrics listener uses port+1)
    #[arg(long = "sidecar-port", default_value = "9911", value_parser = go_int)]
    sidecar_port: i64,
    /// podcred: `native` (init container, restartPolicy Always) or `container`
    #[arg(long = "sidecar-mode", default_value = "native")]
    sidecar_mode: String,
    /// podcred: annotation domain of `<prefix>/inject`
    #[arg(long = "sidecar-annotation-prefix", default_value = "podcred.dev")]
    sidecar_annotation_prefix: String,
    /// podcred: sidecar imagePullPolicy (empty = Kubernetes default)
    #[arg(long = "sidecar-image-pull-policy", default_value = "")]
    sidecar_image_pull_policy: String,
    /// podcred: sidecar CPU request (empty = none)
    #[arg(long = "sidecar-cpu-request", default_value = "10m")]
    sidecar_cpu_request: String,
    /// podcred: sidecar memory request (empty = none)
    #[arg(long = "sidecar-memory-request", default_value = "16Mi")]
    sidecar_memory_request: String,
    /// podcred: sidecar CPU limit (empty = none)
    #[arg(long = "sidecar-cpu-limit", default_value = "")]
    sidecar_cpu_limit: String,
    /// podcred: sidecar memory limit (empty = none)
    #[arg(long = "sidecar-memory-limit", default_value = "64Mi")]
    sidecar_memory_limit: String,
    /// podcred: UID the sidecar runs as (non-root)
    #[arg(long = "sidecar-run-as-user", default_value = "65532", value_parser = go_int)]
    sidecar_run_as_user: i64,
    /// podcred: extra sidecar env NAME=VALUE, repeatable (e.g. AWS_ENDPOINT_URL_STS for a VPC, FIPS or
    /// local STS endpoint); the pod's own AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL and
    /// AWS_STS_REGIONAL_ENDPOINTS are carried over and win
    #[arg(long = "sidecar-env", value_name = "NAME=VALUE")]
    sidecar_env: Vec<String>,
}

#[cfg(test)]
mod tests;
