//! `podcred-whoami`: a real AWS SDK app for the node tests' pods. It loads credentials with aws-config's
//! default chain (web identity under IRSA, the container-credentials endpoint with the credproxy sidecar),
//! calls STS `GetCallerIdentity` (`aws sts get-caller-identity`) and prints the caller's ARN; exit 1 with the
//! error otherwise. It never prints credentials.

use std::io::Write as _;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sts = aws_sdk_sts::Client::new(&config);
    match sts.get_caller_identity().send().await {
        Ok(identity) => {
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                identity.arn().unwrap_or("(no ARN)")
            );
        }
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "get-caller-identity failed: {}",
                aws_sdk_sts::error::DisplayErrorContext(&error)
            );
            std::process::exit(1);
        }
    }
}
