//! Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "id.ts.body")),
//! one entry per active key so that keys rotate without downtime.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Decodes a `whsec_…` secret into its key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("secret must start with `whsec_`")?;
    let key = B64
        .decode(b64)
        .map_err(|e| format!("secret is not valid base64: {e}"))?;
    if key.len() < 16 {
        return Err("secret key is shorter than 16 bytes".into());
    }
    Ok(key)
}

fn mac(key: &[u8], id: &str, ts: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` header value for `body`, signed by every key.
pub fn sign(keys: &[Vec<u8>], id: &str, ts: i64, body: &[u8]) -> String {
    let mut out = String::new();
    for k in keys {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        out.push_str(&B64.encode(mac(k, id, ts, body).finalize().into_bytes()));
    }
    out
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed webhook headers")]
    Headers,
    #[error("timestamp is outside the tolerance window")]
    Timestamp,
    #[error("no signature matches")]
    Signature,
}

/// Verifies a request as a receiver would: timestamp within `tolerance_s` of
/// `now`, and at least one `v1` entry matching one key (constant-time compare).
pub fn verify(
    keys: &[Vec<u8>],
    id: &str,
    ts: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    if id.is_empty() || id.contains('.') {
        return Err(VerifyError::Headers);
    }
    let t: i64 = ts.parse().map_err(|_| VerifyError::Headers)?;
    if (now - t).abs() > tolerance_s {
        return Err(VerifyError::Timestamp);
    }
    for entry in signature.split(' ') {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = B64.decode(b64) else { continue };
        for k in keys {
            if mac(k, id, t, body).verify_slice(&given).is_ok() {
                return Ok(());
            }
        }
    }
    Err(VerifyError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance vector from the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_conformance_vector() {
        let key = decode_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("valid secret");
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let sig = sign(
            std::slice::from_ref(&key),
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        // The vector's message, verified with this body at this clock.
        let check = |body: &[u8], now: i64| {
            verify(
                std::slice::from_ref(&key),
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "1649367553",
                &sig,
                body,
                now,
                300,
            )
        };
        assert_eq!(check(body, 1649367553 + 10), Ok(()));
        assert_eq!(check(b"{}", 1649367553), Err(VerifyError::Signature));
        assert_eq!(check(body, 1649367553 + 301), Err(VerifyError::Timestamp));
    }

    #[test]
    fn every_key_signs_during_rotation() {
        let (a, b) = (vec![1u8; 24], vec![2u8; 24]);
        let sig = sign(&[a.clone(), b.clone()], "msg_1", 10, b"x");
        assert_eq!(sig.split(' ').count(), 2);
        assert_eq!(verify(&[b], "msg_1", "10", &sig, b"x", 10, 300), Ok(()));
    }
}
