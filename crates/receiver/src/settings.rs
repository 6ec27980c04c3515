//! [`ReceiverSettings`]: the limits the receiver enforces and, per provider,
//! the accounts it answers for with their credentials and result pages.
//!
//! A plain struct, so the binary fills it from its configuration and tests
//! build it directly. Credentials arrive already validated by their
//! constructors in `paysettle-core` (no empty key, no pair Basic auth cannot
//! carry); [`ReceiverSettings::validate`] checks the rest before anything
//! listens.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use paysettle_core::Account;
use paysettle_core::form;
use paysettle_core::handoff::HandoffKeys;
use paysettle_core::paysys::NotificationAuth;
use paysettle_core::plutu::CallbackVerifier;

use crate::error::ReceiverError;
use crate::hints::HintLimits;

/// Everything the receiver needs besides its listener and queue.
#[derive(Debug)]
pub struct ReceiverSettings {
    /// The largest request body read; a larger one is refused with 413
    /// without being read. The providers send well under 4 KiB.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers, from the
    /// moment the connection opens or becomes idle. Closes slowloris
    /// connections and idle keep-alive connections alike.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body once its headers
    /// are in; then 408.
    pub body_read_timeout: Duration,
    /// Connections served at once. At the limit the client holding the most
    /// gives way (its idle connections first), so a newcomer with fewer
    /// always finds a place.
    pub max_connections: usize,
    /// Connections one client address may hold; further ones are closed at
    /// once. A provider's server needs a few; a browser one.
    pub max_connections_per_client: usize,
    /// How long a connection may stay open with no request in flight
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// The oldest a connection may grow before it is closed gracefully.
    pub max_connection_age: Duration,
    /// HTTP/2 requests in flight on one connection.
    pub http2_max_concurrent_streams: u32,
    /// Request body bytes being read at once, all connections together: what
    /// bodies can cost in memory whatever the number of connections. Past it
    /// a request is answered 503 with `Retry-After` before its body is read.
    pub body_budget_bytes: usize,
    /// The part of `body_budget_bytes` one client address may hold.
    pub body_budget_per_client: usize,
    /// How many of Portmanat's unsigned return hints are queued: one per
    /// payment within a window, at a rate per client and overall.
    pub hints: HintLimits,
    /// After shutdown is requested, how long in-flight requests may take to
    /// finish before their connections are dropped.
    pub shutdown_grace: Duration,
    /// PaySys accounts: Basic credentials of notifications.
    pub paysys: BTreeMap<Account, PaysysAccount>,
    /// Plutu accounts: the merchant's secret key, and a result page.
    pub plutu: BTreeMap<Account, PlutuAccount>,
    /// Portmanat accounts: nothing to verify (returns are unsigned), a
    /// result page.
    pub portmanat: BTreeMap<Account, PortmanatAccount>,
    /// The keys that sign every callback message published, so the worker
    /// can tell them from anyone else's. Required: [`validate`] refuses
    /// settings without them.
    ///
    /// [`validate`]: ReceiverSettings::validate
    pub handoff: Option<HandoffKeys>,
}

impl Default for ReceiverSettings {
    /// The limits of issue 6 (64 KiB bodies) and no account at all: every
    /// callback route answers 404 until accounts are configured.
    fn default() -> Self {
        ReceiverSettings {
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_client: 64,
            idle_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
            http2_max_concurrent_streams: 16,
            body_budget_bytes: 8 * 1024 * 1024,
            body_budget_per_client: 2 * 1024 * 1024,
            hints: HintLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            paysys: BTreeMap::new(),
            plutu: BTreeMap::new(),
            portmanat: BTreeMap::new(),
            handoff: None,
        }
    }
}

impl ReceiverSettings {
    /// Refuses limits that cannot work.
    pub fn validate(&self) -> Result<(), ReceiverError> {
        let bad = |why: &str| Err(ReceiverError::InvalidSettings(why.to_owned()));
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes must be positive");
        }
        if self.header_read_timeout.is_zero() || self.body_read_timeout.is_zero() {
            return bad("header_read_timeout and body_read_timeout must be positive");
        }
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            return bad("max_connections and max_connections_per_client must be at least 1");
        }
        if self.idle_timeout.is_zero() || self.max_connection_age.is_zero() {
            return bad("idle_timeout and max_connection_age must be positive");
        }
        if self.http2_max_concurrent_streams == 0 {
            return bad("http2_max_concurrent_streams must be at least 1");
        }
        let rate = |r: f64| r.is_finite() && r > 0.0;
        if !rate(self.hints.per_sec)
            || !rate(self.hints.per_client_per_sec)
            || self.hints.dedupe_window.is_zero()
        {
            return bad("hint rates and the hint window must be positive");
        }
        if self.body_budget_per_client < self.max_body_bytes
            || self.body_budget_bytes < self.body_budget_per_client
        {
            return bad(
                "body_budget_bytes >= body_budget_per_client >= max_body_bytes: one body must fit",
            );
        }
        if self.handoff.is_none() {
            return bad("no hand-off key to sign callback messages with");
        }
        Ok(())
    }
}

/// A PaySys merchant account.
#[derive(Debug)]
pub struct PaysysAccount {
    /// Every accepted `VENDOR_METHOD:VENDOR_SECRET_KEY` pair (several while a
    /// secret is rotated).
    pub auth: NotificationAuth,
}

/// A Plutu merchant account.
#[derive(Debug)]
pub struct PlutuAccount {
    /// Keyed with the merchant's secret key (`sk_…`).
    pub verifier: CallbackVerifier,
    /// Where a customer's browser is sent after its callback is stored;
    /// `None` answers 200 instead.
    pub result_page: Option<ResultPage>,
}

/// A Portmanat service.
#[derive(Debug, Default)]
pub struct PortmanatAccount {
    /// Where a customer's browser is sent after the return is stored;
    /// `None` answers 200 instead.
    pub result_page: Option<ResultPage>,
}

/// The shop's page a customer's browser is redirected to, with parameters
/// appended to whatever query it already has.
#[derive(Clone, PartialEq, Eq)]
pub struct ResultPage {
    url: String,
}

impl ResultPage {
    /// Accepts an absolute `http` or `https` URL with a host and no fragment
    /// (parameters are appended to the query, which a fragment would end).
    pub fn parse(url: &str) -> Result<ResultPage, ReceiverError> {
        let bad = |why: &str| {
            Err(ReceiverError::InvalidSettings(format!(
                "result page {url:?}: {why}"
            )))
        };
        if url.contains('#') {
            return bad("a fragment cannot carry parameters");
        }
        let Ok(uri) = url.parse::<http::Uri>() else {
            return bad("not a valid URL");
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return bad("must be an http or https URL");
        }
        if uri.host().is_none_or(str::is_empty) {
            return bad("has no host");
        }
        Ok(ResultPage {
            url: url.to_owned(),
        })
    }

    /// The page with `pairs` appended to its query, PHP-urlencoded.
    pub fn with_params<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let query = form::php_build_query(pairs);
        if query.is_empty() {
            return self.url.clone();
        }
        let separator = match self.url.find('?') {
            None => "?",
            Some(_) if self.url.ends_with('?') || self.url.ends_with('&') => "",
            Some(_) => "&",
        };
        format!("{}{separator}{query}", self.url)
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl fmt::Debug for ResultPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResultPage").field(&self.url).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issues_limits_and_valid() {
        let settings = ReceiverSettings::default();
        assert_eq!(settings.max_body_bytes, 65_536);
        assert!(settings.paysys.is_empty() && settings.plutu.is_empty());
        assert!(
            matches!(settings.validate(), Err(ReceiverError::InvalidSettings(why)) if why.contains("hand-off key")),
            "nothing is published unsigned"
        );
        let keys = HandoffKeys::new(
            [(
                "k1".to_owned(),
                secrecy::SecretString::from("a-hand-off-secret-of-32-bytes-or-more"),
            )],
            "k1",
        )
        .unwrap();
        let signed = ReceiverSettings {
            handoff: Some(keys.clone()),
            ..ReceiverSettings::default()
        };
        signed.validate().unwrap();
        let zero = ReceiverSettings {
            max_connections: 0,
            handoff: Some(keys),
            ..ReceiverSettings::default()
        };
        assert!(
            matches!(zero.validate(), Err(ReceiverError::InvalidSettings(why)) if why.contains("max_connections"))
        );
    }

    #[test]
    fn result_pages_must_be_absolute_web_urls() {
        for ok in [
            "https://shop.example/thanks",
            "http://127.0.0.1:8080/r?lang=en",
        ] {
            assert!(ResultPage::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/relative",
            "ftp://shop.example/x",
            "https://shop.example/x#top",
            "not a url",
            "https:///nohost",
        ] {
            assert!(ResultPage::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_appended_encoded() {
        let page = ResultPage::parse("https://shop.example/thanks").unwrap();
        assert_eq!(
            page.with_params([("invoice_no", "INV 1"), ("outcome", "approved")]),
            "https://shop.example/thanks?invoice_no=INV+1&outcome=approved"
        );
        let page = ResultPage::parse("https://shop.example/r?lang=ar").unwrap();
        assert_eq!(
            page.with_params([("client_rrn", "A&B")]),
            "https://shop.example/r?lang=ar&client_rrn=A%26B"
        );
        assert_eq!(page.with_params([]), "https://shop.example/r?lang=ar");
    }
}
