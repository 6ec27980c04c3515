//! The few cryptographic primitives the providers use, in one place.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A fresh HMAC-SHA256 keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC is defined for keys of every length (long keys are hashed
        // first), so the `hmac` crate never returns this error for it.
        #[allow(clippy::panic)]
        Err(_) => panic!("HMAC-SHA256 accepts keys of every length"),
    }
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex SHA-1 of `bytes` (PaySys's request signature).
pub(crate) fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}
