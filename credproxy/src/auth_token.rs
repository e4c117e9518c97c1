//! The caller auth token: load it from `--auth-token-file`, or generate and write it there.
//!
//! Contract: an existing non-empty file is used as is (so a restarted sidecar keeps the token the
//! app already read); a trailing newline is a configuration error because every SDK rejects such a
//! header value. Otherwise 32 random bytes (hex, 64 characters) are written atomically (temporary
//! file in the same directory, fsync, rename) with the requested mode and no trailing newline.
//! The token never appears in logs or errors.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::RngCore;
use subtle::ConstantTimeEq;

/// The required `Authorization` value.
#[derive(Clone)]
pub struct AuthToken(Vec<u8>);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(** redacted **)")
    }
}

impl AuthToken {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A fresh random 256-bit token, hex-encoded.
    pub fn generate() -> Self {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        Self(hex.into_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time check of an `Authorization` header value. The raw token is the contract
    /// (SDKs send the file's bytes verbatim); `Bearer <token>` is tolerated.
    pub fn matches(&self, header: &[u8]) -> bool {
        let candidate = header.strip_prefix(b"Bearer ").unwrap_or(header);
        bool::from(candidate.ct_eq(&self.0))
    }
}

/// Loads the token from `path`, or generates one and writes it there with `mode`.
/// Returns the token and whether it was generated.
pub fn load_or_create(path: &Path, mode: u32) -> Result<(AuthToken, bool), String> {
    match std::fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => {
            if bytes.iter().any(|b| *b == b'\n' || *b == b'\r') {
                return Err(format!(
                    "auth token file {} contains a newline; SDKs reject such Authorization values (write it with printf, not echo)",
                    path.display()
                ));
            }
            if bytes.iter().any(|b| !(0x21..=0x7e).contains(b)) {
                return Err(format!(
                    "auth token file {} must hold printable ASCII without spaces",
                    path.display()
                ));
            }
            Ok((AuthToken(bytes), false))
        }
        Ok(_) => write_new(path, mode).map(|t| (t, true)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_new(path, mode).map(|t| (t, true))
        }
        Err(e) => Err(format!(
            "cannot read auth token file {}: {}",
            path.display(),
            e.kind()
        )),
    }
}

fn write_new(path: &Path, mode: u32) -> Result<AuthToken, String> {
    let token = AuthToken::generate();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("auth token file {} has no file name", path.display()))?;
    let mut suffix = [0u8; 6];
    rand::rng().fill_bytes(&mut suffix);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits the caller asked for (e.g. 0644 for other users).
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write auth token file {}: {e}", path.display())
    })?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_256_bit_token_without_newline_and_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let (token, generated) = load_or_create(&path, 0o640).unwrap();
        assert!(generated);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk, token.as_bytes());
        assert_eq!(on_disk.len(), 64);
        assert!(!on_disk.ends_with(b"\n"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A second start reuses it.
        let (again, generated) = load_or_create(&path, 0o640).unwrap();
        assert!(!generated);
        assert_eq!(again.as_bytes(), token.as_bytes());
    }

    #[test]
    fn mode_override_is_applied_despite_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        load_or_create(&path, 0o644).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn empty_file_gets_a_generated_token_and_newline_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "").unwrap();
        assert!(load_or_create(&path, 0o600).unwrap().1);
        std::fs::write(&path, "abc\n").unwrap();
        let err = load_or_create(&path, 0o600).unwrap_err();
        assert!(err.contains("newline"));
        assert!(!err.contains("abc"));
    }

    #[test]
    fn matching_is_exact_and_tolerates_bearer() {
        let t = AuthToken::from_bytes(b"s3cret".to_vec());
        assert!(t.matches(b"s3cret"));
        assert!(t.matches(b"Bearer s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cret "));
        assert!(!t.matches(b""));
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
