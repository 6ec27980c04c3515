//! Hand-off keys for tests: the receiver, the worker and any test that
//! publishes a callback message of its own share these.

use paysettle_core::handoff::HandoffKeys;
use paysettle_queue::Message;
use secrecy::SecretString;

/// The id of the tests' key.
pub const KEY_ID: &str = "test-1";
/// The tests' secret (never used outside tests).
pub const SECRET: &str = "paysettle-tests-hand-off-key-0000000001";

/// A key ring of the tests' one key, signing with it.
pub fn keys() -> HandoffKeys {
    ring(&[(KEY_ID, SECRET)], KEY_ID)
}

/// A key ring of `(id, secret)` pairs signing with `sign_with`; panics on a
/// ring the product would refuse (a test's own mistake).
#[allow(clippy::expect_used)]
pub fn ring(keys: &[(&str, &str)], sign_with: &str) -> HandoffKeys {
    HandoffKeys::new(
        keys.iter()
            .map(|(id, secret)| ((*id).to_owned(), SecretString::from(*secret))),
        sign_with,
    )
    .expect("a valid test key ring")
}

/// `message`, signed with the tests' key as the receiver signs.
pub fn sign(message: Message) -> Message {
    sign_with(&keys(), message)
}

/// `message`, signed with `keys`.
pub fn sign_with(keys: &HandoffKeys, mut message: Message) -> Message {
    for (name, value) in keys.sign(&message.body) {
        message = message.with_header(name, value);
    }
    message
}
