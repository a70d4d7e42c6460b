//! SSH key material for SFTP sources: decoding the client's private key at
//! load (so `hubsync check` catches a bad key or passphrase), and SHA256
//! fingerprints as `ssh-keygen -l` prints them. Setup calls this while it
//! validates a connector; the SFTP client uses the decoded key and compares
//! fingerprints when it checks the server's host key.

use std::path::Path;
use std::sync::Arc;

use russh::keys::{HashAlg, PrivateKey, PublicKey};

use crate::config::Secret;

/// A decoded client key; its Debug shows only the public fingerprint.
#[derive(Clone)]
pub struct ClientKey(pub Arc<PrivateKey>);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({})", fingerprint(self.0.public_key()))
    }
}

/// A key file that cannot be used: its path and why (never its contents).
#[derive(Debug, thiserror::Error)]
#[error("cannot use key file {path}: {reason}")]
pub struct KeyError {
    pub path: String,
    pub reason: String,
}

/// Loads an OpenSSH ed25519 private key (decrypting it with `passphrase`).
/// Other key types are refused: ed25519 is the one this build supports.
pub fn load_key(path: &Path, passphrase: Option<&Secret>) -> Result<ClientKey, KeyError> {
    let refuse = |reason: String| KeyError {
        path: path.display().to_string(),
        reason,
    };
    let key = russh::keys::load_secret_key(path, passphrase.map(|p| p.0.as_str()))
        .map_err(|e| refuse(e.to_string()))?;
    if key.algorithm() != russh::keys::Algorithm::Ed25519 {
        return Err(refuse(format!(
            "{} keys are not supported; use ed25519",
            key.algorithm()
        )));
    }
    Ok(ClientKey(Arc::new(key)))
}

/// Whether `s` looks like `SHA256:` followed by an unpadded base64 sha256.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

/// The `SHA256:…` fingerprint of a public key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
