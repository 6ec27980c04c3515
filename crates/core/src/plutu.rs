//! Plutu (Libya): the card gateways' signed callbacks.
//!
//! `hashed` is the uppercase hex HMAC-SHA256, keyed with the merchant's secret
//! key, of the callback's parameters filtered to the gateway's whitelist, in
//! the order received, re-encoded as PHP's `http_build_query` does. Parameters
//! outside the whitelist (the shop's own, `hashed` itself) are not signed, so
//! they are ignored, exactly as Plutu's SDK ignores them — and never read.
//!
//! Plutu has no status API and never resends a callback: a verified callback
//! is the only evidence a Plutu payment will ever have.

use hmac::Mac;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::answer;
use crate::crypto;
use crate::form;
use crate::ids::{Account, Provider, ProviderTxnId, Reference, Source};
use crate::money::{Currency, Money};
use crate::observation::Observation;
use crate::state::ObservedStatus;
use crate::verify::{CallbackKind, VerifiedCallback, VerifyError};

/// A Plutu card gateway whose callbacks paysettle verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gateway {
    /// Mastercard Payment Gateway Services (international cards, USD).
    Mpgs,
    /// Libyan local bank cards (LYD).
    Localbankcards,
    /// T-Lync (LYD); also POSTs a JSON callback.
    Tlync,
}

impl Gateway {
    /// The gateway's name as Plutu writes it in `gateway=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Gateway::Mpgs => "mpgs",
            Gateway::Localbankcards => "localbankcards",
            Gateway::Tlync => "tlync",
        }
    }

    /// Parses `gateway=`.
    pub fn parse(name: &str) -> Option<Gateway> {
        [Gateway::Mpgs, Gateway::Localbankcards, Gateway::Tlync]
            .into_iter()
            .find(|g| g.as_str() == name)
    }

    /// The signed parameters, per Plutu's SDKs.
    pub fn whitelist(self) -> &'static [&'static str] {
        match self {
            Gateway::Mpgs => &[
                "gateway",
                "approved",
                "canceled",
                "amount",
                "currency",
                "invoice_no",
                "transaction_id",
            ],
            Gateway::Localbankcards => &[
                "gateway",
                "approved",
                "canceled",
                "invoice_no",
                "amount",
                "transaction_id",
            ],
            Gateway::Tlync => &[
                "gateway",
                "approved",
                "invoice_no",
                "amount",
                "transaction_id",
                "payment_method",
            ],
        }
    }

    /// The currency the gateway settles in when the callback does not sign one.
    pub fn default_currency(self) -> Currency {
        match self {
            Gateway::Mpgs => Currency::Usd,
            Gateway::Localbankcards | Gateway::Tlync => Currency::Lyd,
        }
    }
}

/// The message `hashed` is computed over: the whitelisted pairs, in order,
/// `http_build_query`-encoded.
pub fn signed_message<'a>(
    gateway: Gateway,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let whitelist = gateway.whitelist();
    form::php_build_query(pairs.into_iter().filter(|(key, _)| whitelist.contains(key)))
}

/// `hashed` for a message: uppercase hex HMAC-SHA256 keyed with the secret key.
pub fn sign(secret_key: &SecretString, message: &str) -> String {
    let mut mac = crypto::hmac_sha256(secret_key.expose_secret().as_bytes());
    mac.update(message.as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// Verifies Plutu callbacks for one merchant account.
pub struct CallbackVerifier {
    secret_key: SecretString,
}

impl std::fmt::Debug for CallbackVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackVerifier").finish_non_exhaustive()
    }
}

/// A secret key that would make every signature forgeable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Plutu secret key is empty")]
pub struct EmptyKey;

impl CallbackVerifier {
    /// A verifier keyed with the merchant's secret key (`sk_…`, not the access
    /// token).
    pub fn new(secret_key: SecretString) -> Result<CallbackVerifier, EmptyKey> {
        if secret_key.expose_secret().is_empty() {
            return Err(EmptyKey);
        }
        Ok(CallbackVerifier { secret_key })
    }

    /// Verifies a GET callback (mpgs, localbankcards) from its raw query string.
    pub fn verify_query(
        &self,
        query: &[u8],
        account: &Account,
        received_at: Timestamp,
    ) -> Result<VerifiedCallback, VerifyError> {
        let pairs = form::parse_pairs(query).map_err(|e| VerifyError::malformed(e.to_string()))?;
        self.verify_pairs(&pairs, account, received_at)
    }

    /// Verifies T-Lync's JSON callback: the message is built from the JSON
    /// object's keys in the order they appear in the body.
    pub fn verify_json(
        &self,
        body: &[u8],
        account: &Account,
        received_at: Timestamp,
    ) -> Result<VerifiedCallback, VerifyError> {
        let doc = crate::json::parse_callback(body)?;
        let object = doc
            .as_object()
            .ok_or_else(|| VerifyError::malformed("body is not a JSON object"))?;
        let mut pairs = Vec::with_capacity(object.len());
        for (key, value) in object {
            // http_build_query's reading of a decoded JSON value.
            let text = match value {
                Value::Null => continue,
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => if *flag { "1" } else { "0" }.to_owned(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(VerifyError::malformed(format!(
                        "{} is not a plain value",
                        answer::bounded(key)
                    )));
                }
            };
            pairs.push((key.clone(), text));
        }
        self.verify_pairs(&pairs, account, received_at)
    }

    fn verify_pairs(
        &self,
        pairs: &[(String, String)],
        account: &Account,
        received_at: Timestamp,
    ) -> Result<VerifiedCallback, VerifyError> {
        let single = |name: &str| -> Result<Option<&str>, VerifyError> {
            let mut values = pairs
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let first = values.next();
            if values.next().is_some() {
                return Err(VerifyError::malformed(format!(
                    "{name} is given more than once"
                )));
            }
            Ok(first)
        };
        let hashed = single("hashed")?.ok_or(VerifyError::MissingSignature)?;
        let gateway_name =
            single("gateway")?.ok_or_else(|| VerifyError::malformed("gateway is missing"))?;
        let gateway = Gateway::parse(gateway_name).ok_or_else(|| {
            VerifyError::malformed(format!("unknown gateway {}", answer::bounded(gateway_name)))
        })?;
        let whitelist = gateway.whitelist();
        for name in whitelist {
            single(name)?;
        }

        let message = signed_message(gateway, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // Plutu's SDK compares with `hash_equals` against the uppercase hex:
        // any other spelling of the same bytes is refused there, so here too.
        if !hashed
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            return Err(VerifyError::BadSignature);
        }
        let presented = hex::decode(hashed).map_err(|_| VerifyError::BadSignature)?;
        let mut mac = crypto::hmac_sha256(self.secret_key.expose_secret().as_bytes());
        mac.update(message.as_bytes());
        mac.verify_slice(&presented)
            .map_err(|_| VerifyError::BadSignature)?;

        // Only signed parameters are read from here on.
        let signed = |name: &str| {
            if whitelist.contains(&name) {
                single(name).ok().flatten()
            } else {
                None
            }
        };
        let bad = |name: &str, problem: &dyn std::fmt::Display| {
            VerifyError::malformed(format!("{name}: {problem}"))
        };
        let reference = Reference::parse(
            signed("invoice_no").ok_or_else(|| VerifyError::malformed("invoice_no is missing"))?,
        )
        .map_err(|e| bad("invoice_no", &e))?;
        let provider_txn_id = signed("transaction_id")
            .filter(|t| !t.is_empty())
            .map(ProviderTxnId::parse)
            .transpose()
            .map_err(|e| bad("transaction_id", &e))?;
        let currency = match signed("currency") {
            Some(code) => Currency::from_code(code).map_err(|e| bad("currency", &e))?,
            None => gateway.default_currency(),
        };
        let amount = signed("amount").ok_or_else(|| VerifyError::malformed("amount is missing"))?;
        let money = Money::parse_decimal(amount, currency).map_err(|e| bad("amount", &e))?;
        let approved = signed("approved") == Some("1");
        let canceled = signed("canceled") == Some("1");
        let (status, word) = match (approved, canceled) {
            (true, true) => return Err(VerifyError::malformed("approved and canceled at once")),
            (true, false) => (ObservedStatus::Succeeded, "approved"),
            (false, true) => (ObservedStatus::Canceled, "canceled"),
            (false, false) => (ObservedStatus::Failed, "declined"),
        };
        Ok(VerifiedCallback::new(CallbackKind::Payment(Observation {
            provider: Provider::Plutu,
            account: account.clone(),
            reference,
            provider_txn_id,
            status,
            money: Some(money),
            provider_status: format!("{}:{word}", gateway.as_str()),
            provider_time: None,
            observed_at: received_at,
            source: Source::Callback,
            test: false,
            refund_part: None,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_example_0123456789abcdef";
    const WORKED_MESSAGE: &str = "gateway=mpgs&approved=1&amount=12.50&currency=USD&invoice_no=INV-1001&transaction_id=200431";
    const WORKED_HASH: &str = "F1BC626CFDC4E6A5A464570053B42F5673F431950BDE64665EC3A56B33A2F681";

    fn verifier() -> CallbackVerifier {
        CallbackVerifier::new(SecretString::from(KEY)).unwrap()
    }

    fn verify(query: &str) -> Result<Observation, VerifyError> {
        verifier()
            .verify_query(query.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH)
            .map(|v| v.observation().unwrap().clone())
    }

    /// Signs a query as Plutu would, from pairs in order.
    fn signed_query(pairs: &[(&str, &str)], gateway: Gateway) -> String {
        let hash = sign(
            &SecretString::from(KEY),
            &signed_message(gateway, pairs.iter().copied()),
        );
        format!(
            "{}&hashed={hash}",
            form::php_build_query(pairs.iter().copied())
        )
    }

    #[test]
    fn the_worked_example_verifies() {
        assert_eq!(sign(&SecretString::from(KEY), WORKED_MESSAGE), WORKED_HASH);
        let o = verify(&format!("{WORKED_MESSAGE}&hashed={WORKED_HASH}")).unwrap();
        assert_eq!(o.status, ObservedStatus::Succeeded);
        assert_eq!(o.reference.as_str(), "INV-1001");
        assert_eq!(o.provider_txn_id.unwrap().as_str(), "200431");
        assert_eq!(
            o.money,
            Some(Money::from_minor(1250, Currency::Usd).unwrap())
        );
        assert_eq!(o.provider_status, "mpgs:approved");
    }

    #[test]
    fn hashed_is_accepted_only_in_uppercase_hex_as_the_sdk_compares_it() {
        assert!(verify(&format!("{WORKED_MESSAGE}&hashed={WORKED_HASH}")).is_ok());
        let lower = WORKED_HASH.to_ascii_lowercase();
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&hashed={lower}")).unwrap_err(),
            VerifyError::BadSignature
        );
        let mixed = format!("{}{}", &WORKED_HASH[..32], &lower[32..]);
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&hashed={mixed}")).unwrap_err(),
            VerifyError::BadSignature
        );
    }

    #[test]
    fn the_shops_own_parameters_do_not_disturb_verification() {
        let query =
            format!("order=77&{WORKED_MESSAGE}&lang=ar&hashed={WORKED_HASH}&utm_source=x%20y");
        assert!(verify(&query).is_ok());
    }

    #[test]
    fn every_tampering_fails_with_its_own_error() {
        // A changed field.
        let changed = WORKED_MESSAGE.replace("12.50", "125.0");
        assert_eq!(
            verify(&format!("{changed}&hashed={WORKED_HASH}")).unwrap_err(),
            VerifyError::BadSignature
        );
        // Reordered parameters.
        let reordered = "approved=1&gateway=mpgs&amount=12.50&currency=USD&invoice_no=INV-1001&transaction_id=200431";
        assert_eq!(
            verify(&format!("{reordered}&hashed={WORKED_HASH}")).unwrap_err(),
            VerifyError::BadSignature
        );
        // An added whitelisted parameter.
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&canceled=1&hashed={WORKED_HASH}")).unwrap_err(),
            VerifyError::BadSignature
        );
        // A wrong key.
        let wrong = sign(&SecretString::from("sk_other"), WORKED_MESSAGE);
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&hashed={wrong}")).unwrap_err(),
            VerifyError::BadSignature
        );
        // The access token is not the key.
        // A missing signature.
        assert_eq!(
            verify(WORKED_MESSAGE).unwrap_err(),
            VerifyError::MissingSignature
        );
        // Not hex, or truncated.
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&hashed=XYZ")).unwrap_err(),
            VerifyError::BadSignature
        );
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&hashed={}", &WORKED_HASH[..32])).unwrap_err(),
            VerifyError::BadSignature
        );
        assert_eq!(
            verify(&format!("{WORKED_MESSAGE}&hashed=")).unwrap_err(),
            VerifyError::BadSignature
        );
        // Duplicate keys are refused rather than guessed at.
        assert!(matches!(
            verify(&format!(
                "{WORKED_MESSAGE}&hashed={WORKED_HASH}&hashed={WORKED_HASH}"
            )),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify(&format!(
                "{WORKED_MESSAGE}&amount=12.50&hashed={WORKED_HASH}"
            )),
            Err(VerifyError::Malformed(_))
        ));
        // Unknown gateway, bad encoding.
        assert!(matches!(
            verify(&format!("gateway=paypal&hashed={WORKED_HASH}")),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify(&format!("{WORKED_MESSAGE}&x=%ff&hashed={WORKED_HASH}")),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn outcomes_map_from_approved_and_canceled() {
        let base = [
            ("gateway", "mpgs"),
            ("amount", "5.00"),
            ("currency", "USD"),
            ("invoice_no", "INV-7"),
            ("transaction_id", "9"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = vec![base[0]];
            pairs.extend_from_slice(extra);
            pairs.extend_from_slice(&base[1..]);
            verify(&signed_query(&pairs, Gateway::Mpgs))
        };
        assert_eq!(
            with(&[("canceled", "1")]).unwrap().status,
            ObservedStatus::Canceled
        );
        assert_eq!(with(&[]).unwrap().status, ObservedStatus::Failed);
        assert_eq!(
            with(&[("approved", "0")]).unwrap().status,
            ObservedStatus::Failed
        );
        assert!(matches!(
            with(&[("approved", "1"), ("canceled", "1")]),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn local_bank_cards_settle_in_dinars_and_sign_no_currency() {
        let pairs = [
            ("gateway", "localbankcards"),
            ("approved", "1"),
            ("invoice_no", "INV-8"),
            ("amount", "5.25"),
            ("transaction_id", "10"),
        ];
        let query = signed_query(&pairs, Gateway::Localbankcards);
        let o = verify(&query).unwrap();
        assert_eq!(
            o.money,
            Some(Money::from_minor(5250, Currency::Lyd).unwrap())
        );
        // An unsigned currency is ignored, not trusted.
        let o = verify(&format!("{query}&currency=USD")).unwrap();
        assert_eq!(o.money.unwrap().currency(), Currency::Lyd);
    }

    #[test]
    fn signed_but_invalid_values_are_malformed() {
        for (amount, invoice) in [
            ("-5.00", "INV-1"),
            ("5.001", "INV-1"),
            ("5.00", "x\ny"),
            ("abc", "INV-1"),
        ] {
            let pairs = [
                ("gateway", "mpgs"),
                ("approved", "1"),
                ("amount", amount),
                ("currency", "USD"),
                ("invoice_no", invoice),
            ];
            assert!(
                matches!(
                    verify(&signed_query(&pairs, Gateway::Mpgs)),
                    Err(VerifyError::Malformed(_))
                ),
                "{amount} {invoice}"
            );
        }
        let pairs = [
            ("gateway", "mpgs"),
            ("approved", "1"),
            ("amount", "5.00"),
            ("currency", "XXX"),
            ("invoice_no", "I"),
        ];
        assert!(matches!(
            verify(&signed_query(&pairs, Gateway::Mpgs)),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn tlync_json_callbacks_verify_in_key_order() {
        let pairs = [
            ("gateway", "tlync"),
            ("approved", "1"),
            ("invoice_no", "INV-9"),
            ("amount", "12.5"),
            ("transaction_id", "77"),
            ("payment_method", "sadad"),
        ];
        let hash = sign(
            &SecretString::from(KEY),
            &signed_message(Gateway::Tlync, pairs.iter().copied()),
        );
        let body = format!(
            r#"{{"gateway":"tlync","approved":1,"invoice_no":"INV-9","amount":12.5,"transaction_id":77,"payment_method":"sadad","note":null,"hashed":"{hash}"}}"#
        );
        let verified = verifier()
            .verify_json(body.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH)
            .unwrap();
        let o = verified.observation().unwrap();
        assert_eq!(o.status, ObservedStatus::Succeeded);
        assert_eq!(
            o.money,
            Some(Money::from_minor(12500, Currency::Lyd).unwrap())
        );
        let reordered = body.replace(
            r#""gateway":"tlync","approved":1"#,
            r#""approved":1,"gateway":"tlync""#,
        );
        assert_eq!(
            verifier()
                .verify_json(
                    reordered.as_bytes(),
                    &Account::default(),
                    Timestamp::UNIX_EPOCH
                )
                .unwrap_err(),
            VerifyError::BadSignature
        );
        let nested = body.replace(r#""note":null"#, r#""note":{"a":1}"#);
        assert!(matches!(
            verifier().verify_json(
                nested.as_bytes(),
                &Account::default(),
                Timestamp::UNIX_EPOCH
            ),
            Err(VerifyError::Malformed(_))
        ));
        let twice = body.replacen(r#""approved":1"#, r#""approved":1,"approved":0"#, 1);
        assert_eq!(
            verifier()
                .verify_json(twice.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH)
                .unwrap_err(),
            VerifyError::Malformed("approved is given more than once".into())
        );
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            verifier().verify_json(deep.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn an_empty_key_is_refused() {
        assert!(CallbackVerifier::new(SecretString::from("")).is_err());
        assert!(!format!("{:?}", verifier()).contains(KEY));
    }
}
