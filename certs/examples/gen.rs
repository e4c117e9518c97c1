//! Write a CA and a serving certificate for bootstrapping (deploy/, demos):
//! `cargo run -p certs --example gen -- OUT_DIR DNS_NAME [DNS_NAME|IP ...]`
//! writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` into OUT_DIR (keys with mode 0600). An existing
//! `ca.crt` + `ca.key` pair in OUT_DIR is reused, so re-running only renews the serving certificate.

use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

fn write(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

fn run(args: &[String]) -> Result<(), String> {
    let [out, names @ ..] = args else {
        return Err("usage: gen OUT_DIR DNS_NAME [DNS_NAME|IP ...]".into());
    };
    if names.is_empty() {
        return Err("usage: gen OUT_DIR DNS_NAME [DNS_NAME|IP ...] (at least one name)".into());
    }
    let out = Path::new(out);
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let (ca_crt, ca_key) = (out.join("ca.crt"), out.join("ca.key"));
    let ca = if ca_crt.exists() && ca_key.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        certs::CertificateAuthority::from_pem(&read(&ca_crt)?, &read(&ca_key)?)
            .map_err(|e| e.to_string())?
    } else {
        let ca = certs::generate_ca("podcred-ca").map_err(|e| e.to_string())?;
        write(&ca_crt, ca.cert_pem(), false).map_err(|e| e.to_string())?;
        write(&ca_key, ca.key_pem(), true).map_err(|e| e.to_string())?;
        ca
    };
    let ips: Vec<IpAddr> = names.iter().filter_map(|n| n.parse().ok()).collect();
    let dns: Vec<&str> = names
        .iter()
        .filter(|n| n.parse::<IpAddr>().is_err())
        .map(String::as_str)
        .collect();
    let pair = certs::issue_serving_cert(&ca, &dns, &ips).map_err(|e| e.to_string())?;
    write(&out.join("tls.crt"), &pair.cert_pem, false).map_err(|e| e.to_string())?;
    write(&out.join("tls.key"), &pair.key_pem, true).map_err(|e| e.to_string())?;
    println!("wrote ca.crt ca.key tls.crt tls.key to {}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gen: {message}");
            ExitCode::from(2)
        }
    }
}
