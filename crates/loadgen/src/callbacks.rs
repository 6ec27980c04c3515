//! Genuine callbacks of the three providers as the bytes of HTTP/1.1
//! requests, authenticated or signed the way each provider does it.
//!
//! Written from the provider documents (`providers/*.txt`, NOTES.md), with no
//! code shared with the product: a signing mistake in `paysettle-core` makes
//! the receiver refuse these requests instead of hiding behind the same
//! mistake here.
//!
//! - PaySys: a transaction status notification, JSON, `Authorization: Basic
//!   base64(VENDOR_METHOD:VENDOR_SECRET_KEY)`.
//! - Plutu: an MPGS callback, GET, `hashed` = uppercase hex HMAC-SHA256 keyed
//!   with the merchant's secret key over the whitelisted parameters in the
//!   order sent, encoded as PHP's `http_build_query`.
//! - Portmanat: the browser's unsigned return, GET with `psp_rrn` and
//!   `client_rrn`.

use std::fmt::Write as _;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The providers, in the order the generator takes turns with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Paysys,
    Plutu,
    Portmanat,
}

impl Provider {
    /// Parses a name as the command line spells it.
    pub fn parse(name: &str) -> Option<Provider> {
        match name {
            "paysys" => Some(Provider::Paysys),
            "plutu" => Some(Provider::Plutu),
            "portmanat" => Some(Provider::Portmanat),
            _ => None,
        }
    }
}

/// What the requests are signed with and sent to. The defaults are the
/// simulator's demo credentials (`deploy/demo.toml`), which protect nothing.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub paysys_user: String,
    pub paysys_password: String,
    pub plutu_secret: String,
    /// `None` for the default account (`/callbacks/{provider}`).
    pub account: Option<String>,
}

/// The parameters of an MPGS callback that `hashed` covers, in NOTES.md's
/// order.
const MPGS_WHITELIST: [&str; 7] = [
    "gateway",
    "approved",
    "canceled",
    "amount",
    "currency",
    "invoice_no",
    "transaction_id",
];

/// The `n`-th callback for `provider`, as a complete HTTP/1.1 request for
/// `host`. `n` makes the reference and the provider's transaction id unique.
pub fn request(provider: Provider, n: u64, credentials: &Credentials, host: &str) -> Vec<u8> {
    let path = |name: &str| match &credentials.account {
        None => format!("/callbacks/{name}"),
        Some(account) => format!("/callbacks/{name}/{account}"),
    };
    let reference = format!("LG-{n:010}");
    let text = match provider {
        Provider::Paysys => {
            let body = serde_json::json!({
                "id": format!("{}", 9_000_000_000_u64 + n),
                "account": reference,
                "amount": 150_000,
                "card_masked": "860049******1234",
                "currency": 860,
                "currency_name": "uzs",
                "status": 2,
                "date": "24.06.2022 07:49:16",
            })
            .to_string();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                credentials.paysys_user, credentials.paysys_password
            ));
            format!(
                "POST {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {basic}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                path("paysys"),
                body.len()
            )
        }
        Provider::Plutu => {
            let transaction_id = format!("{}", 700_000_000_u64 + n);
            let params = [
                ("gateway", "mpgs"),
                ("approved", "1"),
                ("amount", "12.50"),
                ("currency", "USD"),
                ("invoice_no", reference.as_str()),
                ("transaction_id", transaction_id.as_str()),
            ];
            let hashed = plutu_hash(&credentials.plutu_secret, &plutu_message(&params));
            format!(
                "GET {}?{}&hashed={hashed} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                path("plutu"),
                http_build_query(&params)
            )
        }
        Provider::Portmanat => format!(
            "GET {}?psp_rrn=PM-{n:010}&client_rrn={reference} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            path("portmanat")
        ),
    };
    text.into_bytes()
}

/// The message Plutu's `hashed` is computed over: the whitelisted
/// parameters in the order sent, encoded as `http_build_query` does.
fn plutu_message(params: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(k, _)| MPGS_WHITELIST.contains(k))
        .collect();
    http_build_query(&kept)
}

/// Uppercase hex HMAC-SHA256 of `message` keyed with `secret`.
fn plutu_hash(secret: &str, message: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(message.as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// `k=v` pairs joined by `&`, each side encoded as PHP's `urlencode`:
/// letters, digits and `-_.` kept, space as `+`, everything else `%XX`.
fn http_build_query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        urlencode(&mut out, k);
        out.push('=');
        urlencode(&mut out, v);
    }
    out
}

fn urlencode(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plutu_hash_matches_the_worked_example_of_the_notes() {
        let message = plutu_message(&[
            ("gateway", "mpgs"),
            ("approved", "1"),
            ("amount", "12.50"),
            ("currency", "USD"),
            ("invoice_no", "INV-1001"),
            ("transaction_id", "200431"),
            ("shop_param", "ignored"),
        ]);
        assert_eq!(
            message,
            "gateway=mpgs&approved=1&amount=12.50&currency=USD&invoice_no=INV-1001&transaction_id=200431"
        );
        assert_eq!(
            plutu_hash("sk_example_0123456789abcdef", &message),
            "F1BC626CFDC4E6A5A464570053B42F5673F431950BDE64665EC3A56B33A2F681"
        );
        assert_ne!(
            plutu_hash("sk_example_0123456789abcdeF", &message),
            "F1BC626CFDC4E6A5A464570053B42F5673F431950BDE64665EC3A56B33A2F681",
            "another key, another hash"
        );
    }

    #[test]
    fn values_are_encoded_as_php_does() {
        assert_eq!(
            http_build_query(&[("a b", "x&y=z/é"), ("k", "A-Z_0.9~")]),
            "a+b=x%26y%3Dz%2F%C3%A9&k=A-Z_0.9%7E"
        );
    }

    #[test]
    fn requests_are_complete_and_name_the_account() {
        let credentials = Credentials {
            paysys_user: "u".into(),
            paysys_password: "p".into(),
            plutu_secret: "s".into(),
            account: Some("shop-2".into()),
        };
        let paysys = String::from_utf8(request(Provider::Paysys, 7, &credentials, "h")).unwrap();
        let (head, body) = paysys.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /callbacks/paysys/shop-2 HTTP/1.1\r\n"));
        assert!(head.contains("Authorization: Basic dTpw\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("\"account\":\"LG-0000000007\""));
        let plutu = String::from_utf8(request(Provider::Plutu, 7, &credentials, "h")).unwrap();
        assert!(plutu.starts_with("GET /callbacks/plutu/shop-2?gateway=mpgs&approved=1&"));
        assert!(plutu.contains("&hashed="));
        assert!(plutu.ends_with("\r\n\r\n"));
    }
}
