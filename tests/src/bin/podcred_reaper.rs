//! `podcred-reaper RUN_DIR [--bridge NAME] [--cni-network NAME] [--remove-var-lib-kubelet] [--keep-run-dir]`:
//! waits until its stdin reaches end-of-file — the test process that started it dropped its handle or died,
//! SIGKILL included — then tears the run down (`integration::reaper::teardown`) and exits.

use std::io::{Read as _, Write as _};

fn main() {
    let scope = match integration::reaper::Scope::from_args(std::env::args().skip(1)) {
        Ok(scope) => scope,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "podcred-reaper: {message}");
            std::process::exit(2);
        }
    };
    let mut ignored = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut ignored);
    for line in integration::reaper::teardown(&scope) {
        // The test process may be gone (stderr closed): never fail on logging.
        let _ = writeln!(
            std::io::stderr(),
            "podcred-reaper {}: {line}",
            scope.run_dir.display()
        );
    }
}
