//! The shop API's rows: the bearer token, registrations that must not be
//! written, reads with tampered, duplicated and hostile parameters, and
//! slow or oversized requests.

use serde_json::{Value, json};

use crate::support::*;
use crate::table::Case;

/// The registration made before the table: Plutu `HOSTILE-INV-1`, 12.50 USD.
pub fn registration() -> Value {
    json!({
        "provider": "plutu",
        "reference": "HOSTILE-INV-1",
        "amount": 1250,
        "currency": "USD"
    })
}

fn bearer() -> String {
    format!("Bearer {SHOP_TOKEN}")
}

/// A registration of a new payment with one field changed.
fn register_with(field: &str, value: Value) -> Vec<u8> {
    let mut body = json!({
        "provider": "plutu",
        "reference": "HOSTILE-NEW-1",
        "amount": 990,
        "currency": "USD"
    });
    body[field] = value;
    register_raw(body.to_string())
}

fn register_raw(body: impl AsRef<[u8]>) -> Vec<u8> {
    post(
        "/v1/payments",
        &[
            ("Authorization", &bearer()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

fn read(target: &str) -> Vec<u8> {
    get(target, &[("Authorization", &bearer())])
}

pub fn cases() -> Vec<Case> {
    let new_payment = json!({
        "provider": "plutu",
        "reference": "HOSTILE-NEW-1",
        "amount": 990,
        "currency": "USD"
    })
    .to_string();
    vec![
        // ---- The bearer token ------------------------------------------------
        Case::shop(
            "shop: no token",
            post("/v1/payments", &[], &new_payment),
        )
        .answers(401, "unauthorized")
        .with_header("www-authenticate", "Bearer"),
        Case::shop(
            "shop: wrong token",
            post(
                "/v1/payments",
                &[("Authorization", "Bearer not-the-token")],
                &new_payment,
            ),
        )
        .answers(401, "unauthorized"),
        Case::shop(
            "shop: partial token (a prefix)",
            post(
                "/v1/payments",
                &[("Authorization", &format!("Bearer {}", &SHOP_TOKEN[..8]))],
                &new_payment,
            ),
        )
        .answers(401, "unauthorized"),
        Case::shop(
            "shop: token with one character more",
            post(
                "/v1/payments",
                &[("Authorization", &format!("Bearer {SHOP_TOKEN}x"))],
                &new_payment,
            ),
        )
        .answers(401, "unauthorized"),
        Case::shop(
            "shop: token under the Basic scheme",
            post(
                "/v1/payments",
                &[("Authorization", &format!("Basic {SHOP_TOKEN}"))],
                &new_payment,
            ),
        )
        .answers(401, "unauthorized"),
        Case::shop(
            "shop: token in the query string",
            post(
                &format!("/v1/payments?token={SHOP_TOKEN}"),
                &[],
                &new_payment,
            ),
        )
        .answers(401, "unauthorized"),
        Case::shop(
            "shop: two Authorization headers, the right one first",
            post(
                "/v1/payments",
                &[
                    ("Authorization", &bearer()),
                    ("Authorization", "Bearer not-the-token"),
                ],
                &new_payment,
            ),
        )
        .answers(401, "unauthorized"),
        Case::shop(
            "shop: reading a payment without the token",
            get("/v1/payments/plutu/HOSTILE-INV-1", &[]),
        )
        .answers(401, "unauthorized"),
        // ---- Registrations that must not be written ---------------------------
        Case::shop("shop: body is not JSON", register_raw("{\"provider\":"))
            .answers(400, r#""field":"body""#),
        Case::shop(
            "shop: invalid UTF-8 in a JSON string",
            register_raw(b"{\"provider\":\"plutu\",\"reference\":\"\xff\xfe\"}"),
        )
        .answers(400, "not JSON"),
        Case::shop("shop: JSON nested 5000 deep", {
            register_raw(format!(
                "{{\"provider\":{}1{}}}",
                "[".repeat(5000),
                "]".repeat(5000)
            ))
        })
        .answers(400, "recursion limit"),
        Case::shop("shop: a JSON array", register_raw("[]"))
            .answers(400, "not a JSON object"),
        Case::shop(
            "shop: amount 2^64 - 1",
            register_raw(new_payment.replace("990", "18446744073709551615")),
        )
        .answers(400, "larger than paysettle accepts"),
        Case::shop("shop: amount 1e30", register_with("amount", json!(1e30)))
            .answers(400, r#""field":"amount""#),
        Case::shop("shop: negative amount", register_with("amount", json!(-990)))
            .answers(400, "amount is negative"),
        Case::shop("shop: zero amount", register_with("amount", json!(0)))
            .answers(400, "must be more than zero"),
        Case::shop(
            "shop: fractional minor units",
            register_with("amount", json!(9.9)),
        )
        .answers(400, r#""field":"amount""#),
        Case::shop(
            "shop: amount as a string",
            register_with("amount", json!("990")),
        )
        .answers(400, "must be an integer number of minor units"),
        Case::shop(
            "shop: unknown currency",
            register_with("currency", json!("XAU")),
        )
        .answers(400, r#""field":"currency""#),
        Case::shop(
            "shop: a currency the provider does not settle in",
            register_with("currency", json!("AZN")),
        )
        .answers(400, "plutu does not settle in AZN"),
        Case::shop(
            "shop: unknown provider",
            register_with("provider", json!("paypal")),
        )
        .answers(400, "unknown provider"),
        Case::shop(
            "shop: provider as a number",
            register_with("provider", json!(3)),
        )
        .answers(400, "must be a string"),
        Case::shop(
            "shop: reference with a bidirectional override",
            register_with("reference", json!("ORDER-\u{202E}24")),
        )
        .answers(400, r#""field":"reference""#),
        Case::shop(
            "shop: reference of 65 characters",
            register_with("reference", json!("R".repeat(65))),
        )
        .answers(400, "longer than 64"),
        Case::shop(
            "shop: reference with a NUL byte",
            register_with("reference", json!("A\u{0}B")),
        )
        .answers(400, "has a character outside"),
        Case::shop(
            "shop: an account nobody configured",
            register_with("account", json!("shop9")),
        )
        .answers(400, "no plutu account shop9"),
        Case::shop(
            "shop: a provider transaction id with a line break",
            register_with("provider_transaction_id", json!("a\nb")),
        )
        .answers(400, r#""field":"provider_transaction_id""#),
        Case::shop(
            "shop: the registered payment again with another amount",
            register_raw(registration().to_string().replace("1250", "999")),
        )
        .answers(409, r#""field":"amount""#),
        Case::shop(
            "shop: amount given twice (the last would conflict)",
            register_raw(
                r#"{"provider":"plutu","reference":"HOSTILE-NEW-1","amount":990,"currency":"USD","amount":1}"#,
            ),
        )
        .answers(400, "amount is given more than once"),
        Case::shop(
            "shop: body over 16 KiB",
            register_raw(format!(
                "{{\"provider\":\"plutu\",\"pad\":\"{}\"}}",
                "x".repeat(20_000)
            )),
        )
        .answers(413, "body_too_large"),
        Case::shop(
            "shop: body stops short of its Content-Length",
            format!(
                "POST /v1/payments HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 400\r\n\r\n{{\"provider\":",
                bearer()
            )
            .into_bytes(),
        )
        .paced(Pace::Stall)
        .answers(408, "body_timeout"),
        Case::shop(
            "shop: slow headers",
            b"GET /v1/payments HTTP/1.1\r\nHost: t\r\nAuthoriz".to_vec(),
        )
        .paced(Pace::Stall)
        .closed_unanswered(),
        // Issue 17: such connections were never closed, and enough of them
        // took every file descriptor, the receiver's accept loop's too.
        Case::shop("shop: a connection that sends nothing", Vec::new())
            .paced(Pace::Stall)
            .closed_unanswered(),
        Case::shop(
            "shop: PUT on the collection",
            request("PUT", "/v1/payments", &[("Authorization", &bearer())], b"{}"),
        )
        .answers(405, "method_not_allowed")
        .with_header("allow", "GET, POST"),
        Case::shop(
            "shop: DELETE a payment",
            request(
                "DELETE",
                "/v1/payments/plutu/HOSTILE-INV-1",
                &[("Authorization", &bearer())],
                b"",
            ),
        )
        .answers(405, "method_not_allowed")
        .with_header("allow", "GET"),
        // ---- Reads with hostile paths and parameters --------------------------
        Case::shop(
            "shop: encoded dot segments in the reference",
            read("/v1/payments/plutu/..%2F..%2Fetc%2Fpasswd"),
        )
        .answers(404, "not_found"),
        Case::shop(
            "shop: a segment past the reference",
            read("/v1/payments/plutu/HOSTILE-INV-1/history"),
        )
        .answers(404, "not_found"),
        Case::shop(
            "shop: percent-encoded reference (decoded, as RFC 3986 says: the same payment)",
            read("/v1/payments/plutu/HOSTILE%2DINV-1"),
        )
        .answers(200, r#""reference":"HOSTILE-INV-1""#),
        Case::shop(
            "shop: a reference that is not UTF-8 once decoded",
            read("/v1/payments/plutu/HOSTILE%FF"),
        )
        .answers(400, r#""field":"reference""#),
        Case::shop("shop: unknown provider in the path", read("/v1/payments/paypal/X-1"))
            .answers(404, "not_found"),
        Case::shop(
            "shop: a doubled leading slash",
            read("//v1/payments/plutu/HOSTILE-INV-1"),
        )
        .answers(404, "not_found"),
        Case::shop(
            "shop: account with a path trick",
            read("/v1/payments/plutu/HOSTILE-INV-1?account=..%2Fdefault"),
        )
        .answers(400, r#""field":"account""#),
        Case::shop(
            "shop: account given twice",
            read("/v1/payments/plutu/HOSTILE-INV-1?account=default&account=shop2"),
        )
        .answers(400, "account is given more than once"),
        Case::shop(
            "shop: limit given twice",
            read("/v1/payments?limit=1&limit=1000"),
        )
        .answers(400, "limit is given more than once"),
        Case::shop(
            "shop: limit of 20 digits",
            read("/v1/payments?limit=99999999999999999999"),
        )
        .answers(400, "must be 1 to 1000"),
        Case::shop("shop: negative limit", read("/v1/payments?limit=-1"))
            .answers(400, "must be 1 to 1000"),
        Case::shop(
            "shop: after past i64",
            read("/v1/payments?after=9223372036854775808"),
        )
        .answers(400, "must be a payment id"),
        Case::shop(
            "shop: invalid UTF-8 in a parameter",
            read("/v1/payments?status=%FF"),
        )
        .answers(400, "not valid UTF-8"),
        Case::shop(
            "shop: bad percent-encoding",
            read("/v1/payments?status=%zz"),
        )
        .answers(400, "bad percent-encoding"),
        Case::shop("shop: unknown status", read("/v1/payments?status=paid"))
            .answers(400, r#""field":"status""#),
        Case::shop(
            "shop: since that is not a time",
            read("/v1/payments?since=yesterday"),
        )
        .answers(400, "must be an RFC 3339 time"),
        Case::shop(
            "shop: until out of range",
            read("/v1/payments?until=2026-13-45T99:00:00Z"),
        )
        .answers(400, "must be an RFC 3339 time"),
        Case::shop(
            "shop: unknown parameter",
            read("/v1/payments?drop=table"),
        )
        .answers(400, "unknown parameter drop"),
        Case::shop("shop: 65 parameters", {
            let many = (0..65).map(|_| "status=pending").collect::<Vec<_>>();
            read(&format!("/v1/payments?{}", many.join("&")))
        })
        .answers(400, "more than 64 parameters"),
        Case::shop("shop: upper-case path", read("/V1/PAYMENTS")).answers(404, "not_found"),
    ]
}
