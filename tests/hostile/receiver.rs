//! The callback listener's rows: every route, each provider's credentials
//! and signatures, malformed and oversized bodies, slow clients, path
//! tricks and replays.

use base64::Engine as _;
use paysettle_core::form;
use paysettle_core::plutu::{Gateway, sign, signed_message};
use secrecy::SecretString;
use serde_json::json;

use crate::support::*;
use crate::table::Case;

/// The genuine Plutu MPGS callback for the payment the shop registered
/// before the table (`HOSTILE-INV-1`, 12.50 USD).
pub const MPGS: [(&str, &str); 6] = [
    ("gateway", "mpgs"),
    ("approved", "1"),
    ("amount", "12.50"),
    ("currency", "USD"),
    ("invoice_no", "HOSTILE-INV-1"),
    ("transaction_id", "900001"),
];

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn paysys_auth() -> String {
    basic(PAYSYS_USER, PAYSYS_SECRET)
}

/// A query string signed as Plutu signs it: the pairs in order, `hashed`
/// over the gateway's whitelist.
pub fn signed(pairs: &[(&str, &str)], key: &str) -> String {
    let gateway = pairs
        .iter()
        .find(|(k, _)| *k == "gateway")
        .and_then(|(_, v)| Gateway::parse(v))
        .unwrap_or(Gateway::Mpgs);
    let hashed = sign(
        &SecretString::from(key.to_owned()),
        &signed_message(gateway, pairs.iter().copied()),
    );
    format!(
        "{}&hashed={hashed}",
        form::php_build_query(pairs.iter().copied())
    )
}

/// MPGS pairs with one value replaced, signed with the right key: authentic,
/// so only the parser behind the signature can refuse it.
fn signed_with(name: &str, value: &str) -> String {
    let pairs: Vec<(&str, &str)> = MPGS
        .iter()
        .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
        .collect();
    signed(&pairs, PLUTU_SECRET)
}

/// A PaySys status notification (awaiting) for `reference`.
pub fn paysys_notification(reference: &str, txn: &str) -> serde_json::Value {
    json!({
        "id": txn,
        "account": reference,
        "amount": 100_000,
        "currency": 860,
        "currency_name": "uzs",
        "status": 1,
        "date": "24.06.2026 07:49:16"
    })
}

/// The notification with one field changed, sent with the right credentials.
fn paysys_with(field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut body = paysys_notification("HOSTILE-PS-9", "7700009");
    body[field] = value;
    post(
        "/callbacks/paysys",
        &[
            ("Authorization", &paysys_auth()),
            ("Content-Type", "application/json"),
        ],
        body.to_string(),
    )
}

fn paysys_raw(body: impl AsRef<[u8]>) -> Vec<u8> {
    post(
        "/callbacks/paysys",
        &[
            ("Authorization", &paysys_auth()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

fn plutu(query: &str) -> Vec<u8> {
    get(&format!("/callbacks/plutu?{query}"), &[])
}

fn nested(depth: usize) -> String {
    format!("{{\"id\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))
}

pub fn cases() -> Vec<Case> {
    let genuine = signed(&MPGS, PLUTU_SECRET);
    let hashed = genuine.rsplit_once("hashed=").unwrap().1.to_owned();
    let notification = paysys_notification("HOSTILE-PS-1", "7700001").to_string();
    let json_body = [("Content-Type", "application/json")];
    vec![
        // ---- PaySys: credentials -------------------------------------------
        Case::receiver(
            "paysys: no Authorization header",
            post("/callbacks/paysys", &json_body, &notification),
        )
        .answers(401, "missing_credentials")
        .with_header("www-authenticate", "Basic realm"),
        Case::receiver(
            "paysys: wrong password",
            post(
                "/callbacks/paysys",
                &[("Authorization", &basic(PAYSYS_USER, "wrong"))],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: partial credentials (user only, no colon)",
            post(
                "/callbacks/paysys",
                &[(
                    "Authorization",
                    &format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(PAYSYS_USER)
                    ),
                )],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: password missing its last character",
            post(
                "/callbacks/paysys",
                &[(
                    "Authorization",
                    &basic(PAYSYS_USER, &PAYSYS_SECRET[..PAYSYS_SECRET.len() - 1]),
                )],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: Basic scheme with no credentials",
            post("/callbacks/paysys", &[("Authorization", "Basic")], &notification),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: credentials that are not base64",
            post(
                "/callbacks/paysys",
                &[("Authorization", "Basic !!!not-base64!!!")],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: the secret as a Bearer token",
            post(
                "/callbacks/paysys",
                &[("Authorization", &format!("Bearer {PAYSYS_SECRET}"))],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: two Authorization headers, the genuine one first",
            post(
                "/callbacks/paysys",
                &[
                    ("Authorization", &paysys_auth()),
                    ("Authorization", &basic(PAYSYS_USER, "wrong")),
                ],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        Case::receiver(
            "paysys: credentials in the query string instead of the header",
            post(
                &format!("/callbacks/paysys?user={PAYSYS_USER}&password={PAYSYS_SECRET}"),
                &json_body,
                &notification,
            ),
        )
        .answers(401, "missing_credentials"),
        Case::receiver(
            "paysys: the default account's credentials on account shop2",
            post(
                "/callbacks/paysys/shop2",
                &[("Authorization", &paysys_auth())],
                &notification,
            ),
        )
        .answers(401, "wrong_credentials"),
        // ---- PaySys: authentic but malformed -----------------------------
        Case::receiver("paysys: body is not JSON", paysys_raw("{\"id\": "))
            .answers(400, "body is not JSON"),
        Case::receiver(
            "paysys: invalid UTF-8 inside a JSON string",
            paysys_raw(b"{\"id\":\"\xff\xfe\",\"account\":\"A\"}"),
        )
        .answers(400, "body is not JSON"),
        Case::receiver("paysys: JSON nested 5000 deep", paysys_raw(nested(5000)))
            .answers(400, "recursion limit"),
        Case::receiver("paysys: a JSON array, not an object", paysys_raw("[1,2,3]"))
            .answers(400, "not a JSON object"),
        Case::receiver(
            "paysys: amount past i64 (2^64 - 1)",
            paysys_raw(
                notification.replace("100000", "18446744073709551615"),
            ),
        )
        .answers(400, "larger than paysettle accepts"),
        Case::receiver(
            "paysys: amount 1e30",
            paysys_with("amount", json!(1e30)),
        )
        .answers(400, "not a plain decimal number"),
        Case::receiver(
            "paysys: negative amount",
            paysys_with("amount", json!(-100)),
        )
        .answers(400, "amount is negative"),
        Case::receiver(
            "paysys: fractional minor units",
            paysys_with("amount", json!(10.5)),
        )
        .answers(400, "amount: amount"),
        Case::receiver(
            "paysys: unknown currency code",
            paysys_with("currency", json!(999)),
        )
        .answers(400, "unknown currency"),
        Case::receiver(
            "paysys: currency and currency_name disagree",
            paysys_with("currency_name", json!("usd")),
        )
        .answers(400, "disagree"),
        Case::receiver(
            "paysys: unknown status code",
            paysys_with("status", json!(7)),
        )
        .answers(400, "unknown status 7"),
        Case::receiver(
            "paysys: status past i64",
            paysys_with("status", json!(1e300)),
        )
        .answers(400, "status is not an integer"),
        Case::receiver(
            "paysys: reference with a control character (a path trick is just text)",
            paysys_with("account", json!("ORDER\n42")),
        )
        .answers(400, "account: reference"),
        Case::receiver(
            "paysys: unknown JSON-RPC method",
            paysys_raw(r#"{"method":"partner.refund","params":{}}"#),
        )
        .answers(400, "unknown method"),
        Case::receiver("paysys: GET instead of POST", get("/callbacks/paysys", &[]))
            .answers(405, "method_not_allowed")
            .with_header("allow", "POST"),
        // ---- Bodies: size and pace ----------------------------------------
        Case::receiver(
            "paysys: declared body over 64 KiB (refused before it is sent)",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 70000\r\n\r\n",
                paysys_auth()
            )
            .into_bytes(),
        )
        .answers(413, "body_too_large")
        .with_header("connection", "close"),
        // ---- heads judged before bodies (issue 17) ----------------------------
        // Each sends only its head with `Expect: 100-continue`: the answer
        // must come without `100 Continue` (the status read is the first
        // one) and without the body.
        Case::receiver(
            "paysys: no credentials, 64 KiB declared, nothing sent",
            b"POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\nExpect: 100-continue\r\n\r\n".to_vec(),
        )
        .answers(401, "missing_credentials")
        .with_header("connection", "close"),
        Case::receiver(
            "paysys: wrong credentials with Expect: 100-continue",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n",
                basic(PAYSYS_USER, "not-the-secret")
            )
            .into_bytes(),
        )
        .answers(401, "wrong_credentials")
        .with_header("www-authenticate", "Basic"),
        Case::receiver(
            "paysys: account not configured with Expect: 100-continue",
            format!(
                "POST /callbacks/paysys/shop9 HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n",
                paysys_auth()
            )
            .into_bytes(),
        )
        .answers(404, "not_found"),
        Case::receiver(
            "plutu: PUT with Expect: 100-continue",
            b"PUT /callbacks/plutu HTTP/1.1\r\nHost: t\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n".to_vec(),
        )
        .answers(405, "method_not_allowed")
        .with_header("allow", "GET, POST"),
        Case::receiver(
            "portmanat: JSON POST with Expect: 100-continue",
            b"POST /callbacks/portmanat HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n".to_vec(),
        )
        .answers(415, "unsupported_media_type"),
        Case::receiver("paysys: chunked body past 64 KiB", {
            let mut request = format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
                paysys_auth()
            )
            .into_bytes();
            request.extend(std::iter::repeat_n(b' ', 0x10000));
            request.extend_from_slice(b"\r\n10\r\n                \r\n0\r\n\r\n");
            request
        })
        .answers(413, "body_too_large"),
        Case::receiver(
            "paysys: broken chunked encoding",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
                paysys_auth()
            )
            .into_bytes(),
        )
        .answers(400, "body_unreadable"),
        Case::receiver(
            "paysys: body stops short of its Content-Length",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 500\r\n\r\n{{\"id\":",
                paysys_auth()
            )
            .into_bytes(),
        )
        .paced(Pace::Stall)
        .answers(408, "body_timeout"),
        Case::receiver(
            "paysys: body trickles one byte at a time, never finishing",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 5000\r\n\r\n",
                paysys_auth()
            )
            .into_bytes(),
        )
        .paced(Pace::Trickle)
        .answers(408, "body_timeout"),
        Case::receiver(
            "slow headers: half a request head, then nothing",
            b"POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nContent-Le".to_vec(),
        )
        .paced(Pace::Stall)
        .closed_unanswered(),
        Case::receiver("a connection that sends nothing", Vec::new())
            .paced(Pace::Stall)
            .closed_unanswered(),
        // ---- Plutu: signatures --------------------------------------------
        Case::receiver(
            "plutu: no hashed parameter",
            plutu(&form::php_build_query(MPGS)),
        )
        .answers(401, "missing_signature")
        .with_header("www-authenticate", "hashed"),
        Case::receiver(
            "plutu: tampered amount",
            plutu(&genuine.replace("amount=12.50", "amount=1250.00")),
        )
        .answers(401, "bad_signature"),
        Case::receiver(
            "plutu: signed parameters reordered",
            plutu(&format!(
                "approved=1&gateway=mpgs&amount=12.50&currency=USD&invoice_no=HOSTILE-INV-1&transaction_id=900001&hashed={hashed}"
            )),
        )
        .answers(401, "bad_signature"),
        Case::receiver(
            "plutu: a signed parameter added (canceled=1)",
            plutu(&genuine.replace("&hashed=", "&canceled=1&hashed=")),
        )
        .answers(401, "bad_signature"),
        Case::receiver(
            "plutu: signed with another key",
            plutu(&signed(&MPGS, "sk_someone_else")),
        )
        .answers(401, "bad_signature"),
        Case::receiver(
            "plutu: half of the signature",
            plutu(&genuine[..genuine.len() - 32]),
        )
        .answers(401, "bad_signature"),
        Case::receiver(
            "plutu: signature that is not hex",
            plutu(&format!("{}&hashed=ZZZZ", form::php_build_query(MPGS))),
        )
        .answers(401, "bad_signature"),
        Case::receiver(
            "plutu: duplicate amount after the genuine one",
            plutu(&format!("{genuine}&amount=0.01")),
        )
        .answers(400, "amount is given more than once"),
        Case::receiver(
            "plutu: duplicate hashed",
            plutu(&format!("{genuine}&hashed={hashed}")),
        )
        .answers(400, "hashed is given more than once"),
        Case::receiver(
            "plutu: invalid UTF-8 in a parameter (%FF)",
            plutu(&format!("{genuine}&note=%FF")),
        )
        .answers(400, "not valid UTF-8"),
        Case::receiver(
            "plutu: bad percent-encoding (%zz)",
            plutu(&format!("{genuine}&note=%zz")),
        )
        .answers(400, "bad percent-encoding"),
        Case::receiver("plutu: 65 parameters", {
            let many = (0..65).map(|i| format!("p{i}=x")).collect::<Vec<_>>();
            plutu(&format!("{}&{genuine}", many.join("&")))
        })
        .answers(400, "more than 64 parameters"),
        Case::receiver(
            "plutu: signed, unknown gateway",
            plutu(&signed_with("gateway", "paypal")),
        )
        .answers(400, "unknown gateway"),
        Case::receiver(
            "plutu: signed, amount of 20 digits",
            plutu(&signed_with("amount", "99999999999999999999.00")),
        )
        .answers(400, "larger than paysettle accepts"),
        Case::receiver(
            "plutu: signed, negative amount",
            plutu(&signed_with("amount", "-12.50")),
        )
        .answers(400, "amount is negative"),
        Case::receiver(
            "plutu: signed, a tenth of a cent",
            plutu(&signed_with("amount", "12.505")),
        )
        .answers(400, "more decimals than USD allows"),
        Case::receiver(
            "plutu: signed, amount in exponent notation",
            plutu(&signed_with("amount", "1.25e1")),
        )
        .answers(400, "not a plain decimal number"),
        Case::receiver(
            "plutu: signed, unknown currency",
            plutu(&signed_with("currency", "XAU")),
        )
        .answers(400, "unknown currency"),
        Case::receiver(
            "plutu: signed, invoice_no with a control character",
            plutu(&signed_with("invoice_no", "INV\u{1b}[2J")),
        )
        .answers(400, "invoice_no: reference"),
        Case::receiver(
            "plutu: signed, approved and canceled at once",
            plutu(&signed(
                &[
                    ("gateway", "mpgs"),
                    ("approved", "1"),
                    ("canceled", "1"),
                    ("amount", "12.50"),
                    ("currency", "USD"),
                    ("invoice_no", "HOSTILE-INV-1"),
                    ("transaction_id", "900001"),
                ],
                PLUTU_SECRET,
            )),
        )
        .answers(400, "approved and canceled at once"),
        Case::receiver(
            "plutu t-lync: a nested value",
            post(
                "/callbacks/plutu",
                &json_body,
                r#"{"gateway":"tlync","amount":{"value":"5.000"},"hashed":"00"}"#,
            ),
        )
        .answers(400, "not a plain value"),
        Case::receiver(
            "plutu t-lync: JSON nested 5000 deep",
            post("/callbacks/plutu", &json_body, nested(5000)),
        )
        .answers(400, "recursion limit"),
        Case::receiver(
            "plutu t-lync: unsigned",
            post(
                "/callbacks/plutu",
                &json_body,
                r#"{"gateway":"tlync","approved":1,"invoice_no":"X-1","amount":"5.000"}"#,
            ),
        )
        .answers(401, "missing_signature"),
        Case::receiver("plutu: PUT", request("PUT", "/callbacks/plutu", &[], b"x"))
            .answers(405, "method_not_allowed")
            .with_header("allow", "GET, POST"),
        // ---- Replays: accepted, queued, deduplicated by the ledger --------
        Case::receiver("plutu: the genuine callback", plutu(&genuine))
            .answers(303, "accepted")
            .with_header("location", PLUTU_PAGE)
            .queues(1),
        Case::receiver("plutu: the same callback replayed", plutu(&genuine))
            .answers(303, "accepted")
            .queues(1),
        Case::receiver(
            "plutu: replayed with the shop's own unsigned parameters, twice",
            plutu(&format!("lang=ar&{genuine}&lang=en")),
        )
        .answers(303, "accepted")
        .queues(1),
        Case::receiver(
            "paysys: a genuine notification",
            paysys_raw(&notification),
        )
        .answers(200, r#"{"error":null}"#)
        .queues(1),
        Case::receiver(
            "paysys: the same notification replayed",
            paysys_raw(&notification),
        )
        .answers(200, r#"{"error":null}"#)
        .queues(1),
        // ---- Hints past their queue's bound (issue 17) ------------------------
        // The product's hints queue holds one (`queue.hints_max_length = 1`);
        // RabbitMQ's quorum queue takes one more before it refuses.
        Case::receiver(
            "portmanat: a hint, queued in the hints queue",
            get(
                "/callbacks/portmanat?psp_rrn=HOSTILE-FULL-1&client_rrn=HOSTILE-FULL-1",
                &[],
            ),
        )
        .answers(303, "")
        .with_header("location", PORTMANAT_PAGE)
        .queues(1),
        Case::receiver(
            "portmanat: another payment's hint, the hints queue now over its bound",
            get(
                "/callbacks/portmanat?psp_rrn=HOSTILE-FULL-2&client_rrn=HOSTILE-FULL-2",
                &[],
            ),
        )
        .answers(303, "")
        .with_header("location", PORTMANAT_PAGE)
        .queues(1),
        Case::receiver(
            "portmanat: a hint the full hints queue refuses: redirected, dropped, counted",
            get(
                "/callbacks/portmanat?psp_rrn=HOSTILE-FULL-3&client_rrn=HOSTILE-FULL-3",
                &[],
            ),
        )
        .answers(303, "")
        .with_header("location", PORTMANAT_PAGE),
        // ---- Portmanat ------------------------------------------------------
        Case::receiver(
            "portmanat: names no payment",
            get("/callbacks/portmanat?shop=1", &[]),
        )
        .answers(400, "neither psp_rrn nor client_rrn"),
        Case::receiver(
            "portmanat: client_rrn twice with different values",
            get("/callbacks/portmanat?client_rrn=A-1&client_rrn=B-2", &[]),
        )
        .answers(400, "client_rrn is given twice"),
        Case::receiver(
            "portmanat: query and form body disagree",
            post(
                "/callbacks/portmanat?client_rrn=A-1",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                "client_rrn=B-2",
            ),
        )
        .answers(400, "given twice"),
        Case::receiver(
            "portmanat: JSON instead of a form",
            post("/callbacks/portmanat", &json_body, r#"{"client_rrn":"A-1"}"#),
        )
        .answers(415, "unsupported_media_type"),
        Case::receiver(
            "portmanat: client_rrn with a control character",
            get("/callbacks/portmanat?client_rrn=ORDER%0D%0A42", &[]),
        )
        .answers(400, "client_rrn is invalid"),
        Case::receiver(
            "portmanat: client_rrn of 65 characters",
            get(
                &format!("/callbacks/portmanat?client_rrn={}", "R".repeat(65)),
                &[],
            ),
        )
        .answers(400, "longer than 64"),
        Case::receiver(
            "portmanat: invalid UTF-8 in the form body",
            post(
                "/callbacks/portmanat",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"client_rrn=%C3%28",
            ),
        )
        .answers(400, "not valid UTF-8"),
        // ---- Paths and accounts ----------------------------------------------
        Case::receiver("path: /", get("/", &[])).answers(404, "not_found"),
        Case::receiver(
            "path: dot segments into another provider",
            plutu_path("/callbacks/plutu/../paysys", &genuine),
        )
        .answers(404, "not_found"),
        Case::receiver(
            "path: percent-encoded provider name",
            plutu_path("/callbacks/%70lutu", &genuine),
        )
        .answers(404, "not_found"),
        Case::receiver(
            "path: percent-encoded slash in the account",
            plutu_path("/callbacks/plutu/..%2Fdefault", &genuine),
        )
        .answers(404, "not_found"),
        Case::receiver(
            "path: trailing slash",
            plutu_path("/callbacks/plutu/", &genuine),
        )
        .answers(404, "not_found"),
        Case::receiver("path: double slash", plutu_path("//callbacks/plutu", &genuine))
            .answers(404, "not_found"),
        Case::receiver(
            "path: matrix parameter",
            plutu_path("/callbacks/plutu;account=default", &genuine),
        )
        .answers(404, "not_found"),
        Case::receiver(
            "path: an account nobody configured",
            plutu_path("/callbacks/plutu/shop9", &genuine),
        )
        .answers(404, "not_found"),
        Case::receiver("path: upper case", plutu_path("/CALLBACKS/PLUTU", &genuine))
            .answers(404, "not_found"),
        Case::receiver(
            "path: a raw non-ASCII byte in the request line",
            b"GET /callbacks/plutu\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(),
        )
        .answers(400, ""),
        // `/metrics` tells the shop's payment volume: it has a listener of
        // its own (loopback), not the callback port (issue 17).
        Case::receiver("metrics: not on the callback port", get("/metrics", &[]))
            .answers(404, "not_found"),
        Case::receiver("metrics: POST", post("/metrics", &[], "x")).answers(404, "not_found"),
        // ---- HTTP framing ------------------------------------------------------
        Case::receiver(
            "framing: two different Content-Lengths",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}",
                paysys_auth()
            )
            .into_bytes(),
        )
        .answers(400, ""),
        Case::receiver(
            "framing: Content-Length and chunked together (smuggling)",
            format!(
                "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /callbacks/plutu?{genuine} HTTP/1.1\r\nHost: t\r\n\r\n",
                paysys_auth()
            )
            .into_bytes(),
        )
        .answers(400, ""),
        Case::receiver(
            "framing: negative Content-Length",
            b"POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(),
        )
        .answers(400, ""),
        Case::receiver("framing: a request head over 16 KiB", {
            let mut request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n".to_vec();
            for i in 0..40 {
                request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "a".repeat(500)).as_bytes());
            }
            request.extend_from_slice(b"\r\n");
            request
        })
        .answers(431, ""),
        Case::receiver("framing: not HTTP at all", b"HELLO\r\n\r\n".to_vec()).answers(400, ""),
    ]
}

fn plutu_path(path: &str, query: &str) -> Vec<u8> {
    get(&format!("{path}?{query}"), &[])
}
