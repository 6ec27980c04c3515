//! The shop API's real answers, checked against `docs/openapi.yaml`: every
//! answer a shop can get (registered, again, conflict, invalid, unauthorised,
//! not found, wrong method; a payment the provider reported first, one whose
//! checks fail, one settled; the list and the feeds) must be allowed by the
//! description of its route, method and status, field by field.

use super::feed::{CARD_TOKEN, SHOP_TOKEN, embedded_config, free_port, fresh_client, ready, start};
use super::*;

/// The description, as JSON.
struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Spec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        Spec {
            doc: serde_yaml::from_str(&text).unwrap(),
        }
    }

    /// `node` with its `$ref` followed.
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let mut target = &self.doc;
            for part in reference.trim_start_matches("#/").split('/') {
                target = &target[part];
            }
            assert!(!target.is_null(), "{reference} is not in the description");
            node = target;
        }
        node
    }

    /// The JSON schema of an answer.
    fn answer_schema(&self, path: &str, method: &str, status: u16) -> &Value {
        let operation = &self.doc["paths"][path][method];
        assert!(!operation.is_null(), "{method} {path} is not described");
        let response = &operation["responses"][status.to_string()];
        assert!(
            !response.is_null(),
            "{method} {path} answered {status}, which the description does not list"
        );
        let schema = &self.resolve(response)["content"]["application/json"]["schema"];
        assert!(
            !schema.is_null(),
            "{method} {path} {status} has no JSON schema"
        );
        schema
    }

    /// Every way `value` breaks `schema`, each with where.
    fn problems(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if value.is_null() {
            if schema["nullable"] != true {
                out.push(format!("{at}: null, but not nullable"));
            }
            return;
        }
        if let Some(options) = schema["oneOf"].as_array() {
            let fits = options.iter().any(|option| {
                let mut inner = Vec::new();
                self.problems(option, value, at, &mut inner);
                inner.is_empty()
            });
            if !fits {
                out.push(format!("{at}: {value} fits none of oneOf"));
            }
            return;
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        match schema["type"].as_str() {
            Some("object") => {
                let Some(object) = value.as_object() else {
                    out.push(format!("{at}: {value} is not an object"));
                    return;
                };
                for key in schema["required"].as_array().into_iter().flatten() {
                    let key = key.as_str().unwrap();
                    if !object.contains_key(key) {
                        out.push(format!("{at}: {key} is missing"));
                    }
                }
                for (key, field) in object {
                    match schema["properties"].get(key) {
                        Some(property) => {
                            self.problems(property, field, &format!("{at}.{key}"), out)
                        }
                        None if schema["additionalProperties"] == false => {
                            out.push(format!("{at}: {key} is not described"))
                        }
                        None => {}
                    }
                }
            }
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.problems(&schema["items"], item, &format!("{at}[{i}]"), out);
                    }
                }
                None => out.push(format!("{at}: {value} is not an array")),
            },
            Some("string") => match value.as_str() {
                Some(text) => {
                    if schema["format"] == "date-time" && text.parse::<jiff::Timestamp>().is_err() {
                        out.push(format!("{at}: {text:?} is not a date-time"));
                    }
                }
                None => out.push(format!("{at}: {value} is not a string")),
            },
            Some("integer") => match value.as_i64() {
                Some(n) => {
                    if schema["minimum"].as_i64().is_some_and(|min| n < min)
                        || schema["maximum"].as_i64().is_some_and(|max| n > max)
                    {
                        out.push(format!("{at}: {n} is out of range"));
                    }
                }
                None => out.push(format!("{at}: {value} is not an integer")),
            },
            Some("boolean") if !value.is_boolean() => {
                out.push(format!("{at}: {value} is not a boolean"))
            }
            Some("number") if !value.is_number() => {
                out.push(format!("{at}: {value} is not a number"))
            }
            _ => {}
        }
    }
}

/// Sends a request and checks its answer against the description of
/// `template` (the route as the description names it).
struct Client {
    spec: Spec,
    base: String,
    http: reqwest::Client,
    checked: Vec<String>,
}

impl Client {
    async fn call(
        &mut self,
        method: reqwest::Method,
        template: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap();
        let schema = self
            .spec
            .answer_schema(template, &method.as_str().to_lowercase(), status)
            .clone();
        let mut problems = Vec::new();
        self.spec.problems(&schema, &body, "answer", &mut problems);
        assert!(
            problems.is_empty(),
            "{method} {path} → {status} breaks the description:\n  {}\n{body:#}",
            problems.join("\n  ")
        );
        self.checked.push(format!("{method} {template} {status}"));
        (status, body)
    }
}

#[tokio::test]
async fn every_shop_api_answer_is_allowed_by_the_openapi_description() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, shop) = (free_port(), free_port());
    let mut sim_config = SimConfig::for_tests();
    sim_config.portmanat.callback_url = format!("http://127.0.0.1:{receiver}/callbacks/portmanat");
    sim_config.paysys.notify_url = format!("http://127.0.0.1:{receiver}/callbacks/paysys");
    sim_config.plutu.callback_url = format!("http://127.0.0.1:{receiver}/callbacks/plutu");
    sim_config.plutu.default_return_url = format!("http://127.0.0.1:{receiver}/callbacks/plutu");
    let sim = Sim::start(sim_config).await.unwrap();
    let config = embedded_config(dir.path(), sim.base_url(), receiver, shop);
    let mut child = start(&config);
    ready(shop).await;
    let mut api = Client {
        spec: Spec::load(),
        base: format!("http://127.0.0.1:{shop}"),
        http: fresh_client(),
        checked: Vec::new(),
    };
    use reqwest::Method;
    let payments = "/v1/payments";
    let one = "/v1/payments/{provider}/{reference}";

    // Registered by the shop, then paid: settled.
    let paid = sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "OAS-PAID", 1990)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(100)),
        )
        .unwrap();
    let registration = json!({"provider": "portmanat", "reference": "OAS-PAID", "amount": 1990,
        "currency": "AZN", "provider_transaction_id": paid.provider_txn_id});
    let (status, _) = api
        .call(
            Method::POST,
            payments,
            payments,
            SHOP_TOKEN,
            Some(registration.clone()),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = api
        .call(
            Method::POST,
            payments,
            payments,
            SHOP_TOKEN,
            Some(registration.clone()),
        )
        .await;
    assert_eq!(status, 200);
    let mut conflicting = registration.clone();
    conflicting["amount"] = json!(2000);
    assert_eq!(
        api.call(
            Method::POST,
            payments,
            payments,
            SHOP_TOKEN,
            Some(conflicting)
        )
        .await
        .0,
        409
    );
    assert_eq!(
        api.call(
            Method::POST,
            payments,
            payments,
            SHOP_TOKEN,
            Some(json!({"provider": "nope"}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(Method::GET, payments, payments, "wrong-token", None)
            .await
            .0,
        401
    );
    assert_eq!(
        api.call(
            Method::GET,
            payments,
            "/v1/payments?limit=0",
            SHOP_TOKEN,
            None
        )
        .await
        .0,
        400
    );

    // Reported by the provider first (never registered).
    sim.create_payment(
        NewPayment::new(SimProvider::Paysys, "OAS-FIRST", 150_000)
            .outcome(Outcome::Success)
            .pending(Duration::from_millis(100)),
    )
    .unwrap();
    // Registered with a provider id the provider does not know: its checks fail.
    let (status, _) = api
        .call(
            Method::POST,
            payments,
            payments,
            SHOP_TOKEN,
            Some(
                json!({"provider": "portmanat", "reference": "OAS-UNKNOWN", "amount": 500,
                "currency": "AZN", "provider_transaction_id": "no-such-rrn"}),
            ),
        )
        .await;
    assert_eq!(status, 201);

    let http = fresh_client();
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{shop}{path}"))
                .bearer_auth(SHOP_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    paysettle_testkit::eventually(
        Duration::from_secs(60),
        "the payments reach their states",
        || async {
            let settled = get("/v1/payments/portmanat/OAS-PAID".into()).await;
            let first = get("/v1/payments/paysys/OAS-FIRST".into()).await;
            let failing = get("/v1/payments/portmanat/OAS-UNKNOWN".into()).await;
            settled["payment"]["status"] == "succeeded"
                && first["payment"]["status"] == "succeeded"
                && !failing["check"]["last_failure"].is_null()
        },
    )
    .await;

    // A browser return that arrives after the payment settled asks for one
    // re-check of it (a reversal would be a conflict): the payment leaves the
    // schedule again once that check is done.
    paysettle_testkit::eventually(
        Duration::from_secs(30),
        "the settled payment leaves the schedule",
        || async { get("/v1/payments/portmanat/OAS-PAID".into()).await["check"].is_null() },
    )
    .await;
    let (_, settled) = api
        .call(
            Method::GET,
            one,
            "/v1/payments/portmanat/OAS-PAID",
            SHOP_TOKEN,
            None,
        )
        .await;
    assert!(
        settled["check"].is_null(),
        "a final payment is off the schedule"
    );
    let (_, first) = api
        .call(
            Method::GET,
            one,
            "/v1/payments/paysys/OAS-FIRST",
            SHOP_TOKEN,
            None,
        )
        .await;
    assert_eq!(first["payment"]["registered"], false);
    // What the description says `amount` is for a payment the provider
    // reported first.
    assert_eq!(
        first["payment"]["amount"], first["payment"]["paid"],
        "{first:#}"
    );
    assert!(
        first["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| !h["provider_time"].is_null() && !h["provider_time_raw"].is_null()),
        "PaySys gives its time: {first:#}"
    );
    let (_, failing) = api
        .call(
            Method::GET,
            one,
            "/v1/payments/portmanat/OAS-UNKNOWN",
            SHOP_TOKEN,
            None,
        )
        .await;
    let failure = &failing["check"]["last_failure"];
    assert!(failure["at"].is_string(), "{failing:#}");
    assert!(
        failure["error"].as_str().unwrap().contains("RRN"),
        "{failing:#}"
    );
    assert!(failing["check"]["next_check_at"].is_string());
    assert_eq!(
        api.call(
            Method::GET,
            one,
            "/v1/payments/portmanat/NOPE",
            SHOP_TOKEN,
            None
        )
        .await
        .0,
        404
    );

    let (_, list) = api
        .call(
            Method::GET,
            payments,
            "/v1/payments?status=succeeded,pending",
            SHOP_TOKEN,
            None,
        )
        .await;
    assert!(list["payments"].as_array().unwrap().len() >= 2);
    let (_, feed) = api
        .call(Method::GET, "/v1/events", "/v1/events", SHOP_TOKEN, None)
        .await;
    assert!(!feed["events"].as_array().unwrap().is_empty());
    assert_eq!(
        api.call(
            Method::GET,
            "/v1/events",
            "/v1/events?wait=x",
            SHOP_TOKEN,
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(Method::GET, "/v1/cards", "/v1/cards", CARD_TOKEN, None)
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(Method::GET, "/v1/cards", "/v1/cards", SHOP_TOKEN, None)
            .await
            .0,
        401
    );

    child.kill().unwrap();
    child.wait().unwrap();
    sim.shutdown().await;
    assert!(api.checked.len() >= 16, "{:?}", api.checked);
}
