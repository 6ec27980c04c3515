//! Signed hand-offs: what one part of paysettle gives another through the
//! broker carries proof that paysettle made it.
//!
//! The receiver signs every callback message it publishes, and the worker
//! applies only messages whose signature verifies: anyone else who may
//! publish to the callbacks queue cannot book a "verified" payment. The
//! worker signs every settled event the same way, so finance can tell
//! paysettle's events from anyone else's.
//!
//! The signature is HMAC-SHA256 over the exact message body bytes, in
//! lowercase hex, in the [`SIGNATURE_HEADER`] header; the [`KEY_ID_HEADER`]
//! header names the key. Several keys may be active at once (a rotation:
//! add the new key everywhere, then sign with it, then remove the old one);
//! one of them signs.

use std::collections::BTreeMap;
use std::fmt;

use hmac::Mac;
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::hmac_sha256;

/// The header naming the key that signed a message.
pub const KEY_ID_HEADER: &str = "paysettle-key-id";
/// The header carrying the lowercase hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "paysettle-signature";
/// The shortest secret accepted, in bytes (HMAC-SHA256's own block of
/// strength: shorter keys are guessable).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a key ring or a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("no hand-off key is configured")]
    NoKeys,
    #[error("key id {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadKeyId(String),
    #[error("key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("key {id:?} is {len} bytes; at least {MIN_SECRET_BYTES} are needed")]
    ShortSecret { id: String, len: usize },
    #[error("sign_with names {0:?}, which is not among the keys")]
    UnknownSigningKey(String),
    #[error("the message carries no {KEY_ID_HEADER} or {SIGNATURE_HEADER} header")]
    Unsigned,
    #[error("the message is signed with key {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("the message's signature does not verify with key {0:?}")]
    BadSignature(String),
}

/// The active hand-off keys and the one that signs. Never prints a secret.
#[derive(Clone)]
pub struct HandoffKeys {
    keys: BTreeMap<String, SecretString>,
    sign_with: String,
}

impl fmt::Debug for HandoffKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoffKeys")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("sign_with", &self.sign_with)
            .finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl HandoffKeys {
    /// A key ring: every `(id, secret)` verifies, `sign_with` signs.
    pub fn new(
        keys: impl IntoIterator<Item = (String, SecretString)>,
        sign_with: &str,
    ) -> Result<HandoffKeys, HandoffError> {
        let mut map = BTreeMap::new();
        for (id, secret) in keys {
            if !valid_id(&id) {
                return Err(HandoffError::BadKeyId(id));
            }
            let len = secret.expose_secret().len();
            if len < MIN_SECRET_BYTES {
                return Err(HandoffError::ShortSecret { id, len });
            }
            if map.insert(id.clone(), secret).is_some() {
                return Err(HandoffError::DuplicateKey(id));
            }
        }
        if map.is_empty() {
            return Err(HandoffError::NoKeys);
        }
        if !map.contains_key(sign_with) {
            return Err(HandoffError::UnknownSigningKey(sign_with.to_owned()));
        }
        Ok(HandoffKeys {
            keys: map,
            sign_with: sign_with.to_owned(),
        })
    }

    /// The id of the key that signs.
    pub fn signing_key_id(&self) -> &str {
        &self.sign_with
    }

    /// The ids of every key that verifies.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn mac(secret: &SecretString, body: &[u8]) -> [u8; 32] {
        let mut mac = hmac_sha256(secret.expose_secret().as_bytes());
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The two headers that sign `body`: `(KEY_ID_HEADER, id)` and
    /// `(SIGNATURE_HEADER, hex)`.
    pub fn sign(&self, body: &[u8]) -> [(&'static str, String); 2] {
        let signature = self
            .keys
            .get(&self.sign_with)
            .map(|secret| hex::encode(Self::mac(secret, body)))
            .unwrap_or_default();
        [
            (KEY_ID_HEADER, self.sign_with.clone()),
            (SIGNATURE_HEADER, signature),
        ]
    }

    /// Checks `body` against its key id and signature headers (in constant
    /// time).
    pub fn verify(
        &self,
        key_id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), HandoffError> {
        let (Some(key_id), Some(signature)) = (key_id, signature) else {
            return Err(HandoffError::Unsigned);
        };
        let Some(secret) = self.keys.get(key_id) else {
            // The id is shown only when it is a plausible id: it came from
            // whoever published the message.
            let shown = if valid_id(key_id) {
                key_id
            } else {
                "(unreadable)"
            };
            return Err(HandoffError::UnknownKey(shown.to_owned()));
        };
        let given = hex::decode(signature.trim()).unwrap_or_default();
        let mut mac = hmac_sha256(secret.expose_secret().as_bytes());
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| HandoffError::BadSignature(key_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, &str)], sign_with: &str) -> HandoffKeys {
        HandoffKeys::new(
            keys.iter()
                .map(|(id, s)| ((*id).to_owned(), SecretString::from(*s))),
            sign_with,
        )
        .unwrap()
    }

    const A: &str = "a-secret-of-thirty-two-bytes-or-more-0001";
    const B: &str = "b-secret-of-thirty-two-bytes-or-more-0002";

    #[test]
    fn a_signature_verifies_and_one_changed_byte_does_not() {
        let keys = ring(&[("k1", A)], "k1");
        let body = br#"{"id":"m-1"}"#;
        let [(_, id), (_, sig)] = keys.sign(body);
        assert_eq!(id, "k1");
        assert_eq!(sig.len(), 64);
        assert_eq!(keys.verify(Some(&id), Some(&sig), body), Ok(()));
        assert_eq!(
            keys.verify(Some(&id), Some(&sig), br#"{"id":"m-2"}"#),
            Err(HandoffError::BadSignature("k1".into()))
        );
        assert_eq!(
            keys.verify(None, Some(&sig), body),
            Err(HandoffError::Unsigned)
        );
        assert_eq!(
            keys.verify(Some("k9"), Some(&sig), body),
            Err(HandoffError::UnknownKey("k9".into()))
        );
        assert_eq!(
            keys.verify(Some("k1"), Some("zz"), body),
            Err(HandoffError::BadSignature("k1".into()))
        );
    }

    #[test]
    fn the_signature_is_plain_hmac_sha256_hex() {
        // RFC 4231 test case 2's construction, with a long enough key.
        let keys = ring(&[("k", A)], "k");
        let [_, (_, sig)] = keys.sign(b"what do ya want for nothing?");
        let mut mac = hmac_sha256(A.as_bytes());
        mac.update(b"what do ya want for nothing?");
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn during_a_rotation_both_keys_verify_and_one_signs() {
        let old = ring(&[("old", A)], "old");
        let both = ring(&[("old", A), ("new", B)], "new");
        let body = b"event";
        let [(_, id), (_, sig)] = old.sign(body);
        assert_eq!(both.verify(Some(&id), Some(&sig), body), Ok(()));
        let [(_, id), (_, sig)] = both.sign(body);
        assert_eq!(id, "new");
        assert_eq!(
            old.verify(Some(&id), Some(&sig), body),
            Err(HandoffError::UnknownKey("new".into()))
        );
    }

    #[test]
    fn weak_or_inconsistent_key_rings_are_refused() {
        let new = |keys: &[(&str, &str)], sign: &str| {
            HandoffKeys::new(
                keys.iter()
                    .map(|(id, s)| ((*id).to_owned(), SecretString::from(*s))),
                sign,
            )
            .map(|_| ())
        };
        assert_eq!(new(&[], "x"), Err(HandoffError::NoKeys));
        assert!(matches!(
            new(&[("k", "short")], "k"),
            Err(HandoffError::ShortSecret { len: 5, .. })
        ));
        assert_eq!(
            new(&[("k", A), ("k", B)], "k"),
            Err(HandoffError::DuplicateKey("k".into()))
        );
        assert_eq!(
            new(&[("k", A)], "j"),
            Err(HandoffError::UnknownSigningKey("j".into()))
        );
        assert!(matches!(
            new(&[("a b", A)], "a b"),
            Err(HandoffError::BadKeyId(_))
        ));
        assert!(!format!("{:?}", ring(&[("k", A)], "k")).contains(A));
    }
}
