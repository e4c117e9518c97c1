use clap::Parser as _;

// glibc malloc showed up as ~15% of the proxy hot path in profiles; mimalloc keeps per-thread heaps.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = gateway::Args::parse();
    init_tracing(args.log_format());
    // Several rustls providers may be compiled in (aws-config brings its own); pick aws-lc-rs explicitly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Err(error) = gateway::run(args) {
        eprintln!("gateway: {error}");
        std::process::exit(error.exit_code());
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn")
    });
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
