//! The simulator's configuration: listener, seed, each provider's credentials
//! and wire quirks, and the scenario. Defaults are the commented file
//! `crates/sim/sim.toml`, embedded as [`DEFAULT_CONFIG`]; a file given with
//! `--config` overrides them key by key.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::model::Provider;
use crate::scenario::{Scenario, ScenarioPatch};

/// The fully commented default configuration, also the file format's reference.
pub const DEFAULT_CONFIG: &str = include_str!("../sim.toml");

/// Everything the simulator needs to start. `SimConfig::default()` equals
/// [`DEFAULT_CONFIG`] (a test holds them together).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Listener address; port 0 picks a free port (what tests want).
    pub bind: SocketAddr,
    /// Seed of every random draw, so a run can be repeated.
    pub seed: u64,
    /// Base URL for redirects; empty means `http://{bound address}`.
    pub public_base_url: String,
    /// Outbound callback settings.
    pub callbacks: CallbackSettings,
    /// Steady payment creation for the demo.
    pub autopilot: AutopilotConfig,
    /// The scenario every provider follows unless its own section replaces part.
    pub scenario: Scenario,
    /// Portmanat's side.
    pub portmanat: PortmanatConfig,
    /// PaySys's side.
    pub paysys: PaysysConfig,
    /// Plutu's side.
    pub plutu: PlutuConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8090)),
            seed: 1,
            public_base_url: String::new(),
            callbacks: CallbackSettings::default(),
            autopilot: AutopilotConfig::default(),
            scenario: Scenario::default(),
            portmanat: PortmanatConfig::default(),
            paysys: PaysysConfig::default(),
            plutu: PlutuConfig::default(),
        }
    }
}

impl SimConfig {
    /// A configuration for in-process tests: port 0 on loopback, short
    /// pending times, everything else default. Callback URLs still need
    /// pointing at the test's receiver.
    pub fn for_tests() -> SimConfig {
        let mut config = SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..SimConfig::default()
        };
        config.scenario.pending.min_ms = 50;
        config.scenario.pending.max_ms = 200;
        config.callbacks.timeout_ms = 2_000;
        config
    }

    /// Parses a TOML document over the defaults and validates the result.
    pub fn from_toml(text: &str) -> Result<SimConfig, SimError> {
        let config: SimConfig =
            toml::from_str(text).map_err(|err| SimError::Config(err.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<SimConfig, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| SimError::Config(format!("cannot read {}: {err}", path.display())))?;
        SimConfig::from_toml(&text)
            .map_err(|err| SimError::Config(format!("{}: {err}", path.display())))
    }

    /// Checks what serde cannot: rates, bounds, URLs, non-empty credentials.
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |msg: String| Err(SimError::Config(msg));
        if let Err(msg) = self.scenario.validate() {
            return invalid(format!("scenario: {msg}"));
        }
        for provider in Provider::ALL {
            if let Err(msg) = self.scenario.patched(self.patch(provider)).validate() {
                return invalid(format!("{provider}.scenario: {msg}"));
            }
        }
        if !self.public_base_url.is_empty() && !is_http_url(&self.public_base_url) {
            return invalid(format!(
                "public_base_url {:?} is not an http(s) URL",
                self.public_base_url
            ));
        }
        if !(self.autopilot.rate_per_sec.is_finite() && self.autopilot.rate_per_sec >= 0.0) {
            return invalid("autopilot.rate_per_sec must be 0 or more".to_owned());
        }
        let urls = [
            ("portmanat.callback_url", &self.portmanat.callback_url),
            ("paysys.notify_url", &self.paysys.notify_url),
            ("plutu.default_return_url", &self.plutu.default_return_url),
        ];
        for (key, url) in urls {
            if !is_http_url(url) {
                return invalid(format!("{key} {url:?} is not an http(s) URL"));
            }
        }
        for (key, url) in [
            ("paysys.partner_notify_url", &self.paysys.partner_notify_url),
            ("plutu.callback_url", &self.plutu.callback_url),
        ] {
            if !url.is_empty() && !is_http_url(url) {
                return invalid(format!("{key} {url:?} is not an http(s) URL"));
            }
        }
        let secrets = [
            ("portmanat.secret_key", &self.portmanat.secret_key),
            ("paysys.secret_key", &self.paysys.secret_key),
            ("paysys.vendor_method", &self.paysys.vendor_method),
            ("paysys.vendor_secret_key", &self.paysys.vendor_secret_key),
            ("plutu.access_token", &self.plutu.access_token),
            ("plutu.api_key", &self.plutu.api_key),
            ("plutu.secret_key", &self.plutu.secret_key),
        ];
        for (key, secret) in secrets {
            if secret.expose_secret().is_empty() {
                return invalid(format!("{key} is empty"));
            }
        }
        for (key, value) in [
            ("portmanat.service_id", &self.portmanat.service_id),
            ("paysys.service_id", &self.paysys.service_id),
            ("paysys.vendor_id", &self.paysys.vendor_id),
        ] {
            if value.is_empty() {
                return invalid(format!("{key} is empty"));
            }
        }
        Ok(())
    }

    /// The scenario sections a provider's own config replaces.
    pub fn patch(&self, provider: Provider) -> &ScenarioPatch {
        match provider {
            Provider::Portmanat => &self.portmanat.scenario,
            Provider::Paysys => &self.paysys.scenario,
            Provider::Plutu => &self.plutu.scenario,
        }
    }
}

pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    matches!(rest, Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace))
}

/// Outbound callback settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackSettings {
    /// How long one callback waits for an answer.
    pub timeout_ms: u64,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        CallbackSettings { timeout_ms: 5_000 }
    }
}

/// The demo's steady stream of payments.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutopilotConfig {
    /// Payments per second across all providers; 0 is off.
    pub rate_per_sec: f64,
}

/// How a numeric field is written where a provider is inconsistent about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberStyle {
    /// Always a JSON number (`0`).
    Number,
    /// Always a JSON string (`"0"`).
    String,
    /// Drawn per answer, as live traffic does.
    Mixed,
}

/// HTTP method of Portmanat's browser return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackMethod {
    /// Query string.
    #[serde(rename = "GET")]
    Get,
    /// Form body.
    #[serde(rename = "POST")]
    Post,
}

/// Name of the date object in Portmanat's `/check` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateField {
    /// What live responses use.
    CreatedAt,
    /// What the document shows.
    Date,
}

/// How the zone of Portmanat's date objects is written (PHP's
/// `timezone_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimezoneStyle {
    /// Type 3, an IANA name: `Asia/Baku`.
    Name,
    /// Type 1, an offset: `+04:00`.
    Offset,
    /// Type 2, an abbreviation: `+04` (what tzdata calls Baku time today).
    Abbreviation,
}

/// Portmanat's side: the service the shop registered.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortmanatConfig {
    /// `service_id` the shop must send.
    pub service_id: String,
    /// Key of the `/process` hash.
    pub secret_key: SecretString,
    /// Where the customer's browser returns.
    pub callback_url: String,
    /// GET or POST return.
    pub callback_method: CallbackMethod,
    /// `created_at` or `date`.
    pub date_field: DateField,
    /// How `code` is written.
    pub code_style: NumberStyle,
    /// How the date object's zone is written.
    pub timezone_style: TimezoneStyle,
    /// Sections replacing the global scenario's for Portmanat.
    pub scenario: ScenarioPatch,
}

impl Default for PortmanatConfig {
    fn default() -> Self {
        PortmanatConfig {
            service_id: "1001".to_owned(),
            secret_key: SecretString::from("demo-portmanat-secret"),
            callback_url: "http://127.0.0.1:8080/callbacks/portmanat".to_owned(),
            callback_method: CallbackMethod::Get,
            date_field: DateField::CreatedAt,
            code_style: NumberStyle::Mixed,
            timezone_style: TimezoneStyle::Name,
            scenario: ScenarioPatch::default(),
        }
    }
}

/// What the `amount` of a PaySys refund notification is (PaySys does not
/// document it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundAmount {
    /// The total refunded so far.
    #[default]
    Total,
    /// This refund's own amount.
    ThisRefund,
}

/// PaySys's side: the partner account.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaysysConfig {
    /// First part of the `Auth` header.
    pub service_id: String,
    /// Secret hashed into the `Auth` header.
    pub secret_key: SecretString,
    /// `vendor_id` that prepare_payment must carry.
    pub vendor_id: String,
    /// Largest accepted distance of an `Auth` timestamp from now.
    pub auth_max_skew_ms: u64,
    /// Basic-auth user of notifications.
    pub vendor_method: SecretString,
    /// Basic-auth password of notifications.
    pub vendor_secret_key: SecretString,
    /// Where status notifications go.
    pub notify_url: String,
    /// Where `partner.notify` goes; empty means `notify_url`.
    pub partner_notify_url: String,
    /// Whether status 1 is notified.
    pub notify_pending: bool,
    /// How `status` is written in RPC results.
    pub status_style: NumberStyle,
    /// What a refund notification's `amount` is.
    pub refund_amount: RefundAmount,
    /// Sections replacing the global scenario's for PaySys.
    pub scenario: ScenarioPatch,
}

impl Default for PaysysConfig {
    fn default() -> Self {
        PaysysConfig {
            service_id: "2001".to_owned(),
            secret_key: SecretString::from("demo-paysys-secret"),
            vendor_id: "100381".to_owned(),
            auth_max_skew_ms: 300_000,
            vendor_method: SecretString::from("demo-vendor"),
            vendor_secret_key: SecretString::from("demo-vendor-secret"),
            notify_url: "http://127.0.0.1:8080/callbacks/paysys".to_owned(),
            partner_notify_url: String::new(),
            notify_pending: true,
            status_style: NumberStyle::Mixed,
            refund_amount: RefundAmount::Total,
            scenario: ScenarioPatch::default(),
        }
    }
}

/// Plutu's side: the merchant account.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlutuConfig {
    /// Bearer token of the confirm call.
    pub access_token: SecretString,
    /// `X-API-KEY` of the confirm call.
    pub api_key: SecretString,
    /// Key of the callback's `hashed`.
    pub secret_key: SecretString,
    /// Callback destination; empty means each payment's `return_url`.
    pub callback_url: String,
    /// `return_url` of payments created by the control API or the autopilot
    /// without one.
    pub default_return_url: String,
    /// Sections replacing the global scenario's for Plutu.
    pub scenario: ScenarioPatch,
}

impl Default for PlutuConfig {
    fn default() -> Self {
        PlutuConfig {
            access_token: SecretString::from("demo-plutu-access-token"),
            api_key: SecretString::from("demo-plutu-api-key"),
            secret_key: SecretString::from("sk_demo_plutu_secret"),
            callback_url: String::new(),
            default_return_url: "http://127.0.0.1:8080/callbacks/plutu".to_owned(),
            scenario: ScenarioPatch::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed(config: &SimConfig) -> Vec<String> {
        vec![
            config.portmanat.secret_key.expose_secret().to_owned(),
            config.paysys.secret_key.expose_secret().to_owned(),
            config.paysys.vendor_method.expose_secret().to_owned(),
            config.paysys.vendor_secret_key.expose_secret().to_owned(),
            config.plutu.access_token.expose_secret().to_owned(),
            config.plutu.api_key.expose_secret().to_owned(),
            config.plutu.secret_key.expose_secret().to_owned(),
        ]
    }

    #[test]
    fn the_embedded_file_is_the_default() {
        let parsed = SimConfig::from_toml(DEFAULT_CONFIG).unwrap();
        let default = SimConfig::default();
        // Debug hides the secrets, so compare them separately.
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
        assert_eq!(exposed(&parsed), exposed(&default));
        default.validate().unwrap();
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let config = SimConfig::default();
        let debug = format!("{config:?}");
        for secret in exposed(&config) {
            assert!(!debug.contains(&secret), "{secret} leaked");
        }
    }

    #[test]
    fn a_file_overrides_key_by_key() {
        let config = SimConfig::from_toml(
            r#"
            seed = 99
            [paysys]
            notify_url = "http://127.0.0.1:9/n"
            [paysys.scenario.faults]
            http_500 = 0.5
            [scenario.pending]
            min_ms = 10
            max_ms = 20
            "#,
        )
        .unwrap();
        assert_eq!(config.seed, 99);
        assert_eq!(config.paysys.notify_url, "http://127.0.0.1:9/n");
        assert_eq!(config.paysys.service_id, "2001");
        assert_eq!(config.scenario.pending.max_ms, 20);
        let paysys = config.scenario.patched(config.patch(Provider::Paysys));
        assert_eq!(paysys.faults.http_500, 0.5);
        let plutu = config.scenario.patched(config.patch(Provider::Plutu));
        assert_eq!(plutu.faults.http_500, 0.0);
    }

    #[test]
    fn bad_files_are_refused_with_the_key() {
        let unknown = SimConfig::from_toml("[paysys]\nnotify_ur = \"x\"").unwrap_err();
        assert!(unknown.to_string().contains("notify_ur"), "{unknown}");
        let rate = SimConfig::from_toml("[plutu.scenario.callbacks]\nlost = 2.0").unwrap_err();
        assert!(rate.to_string().contains("plutu.scenario"), "{rate}");
        let url = SimConfig::from_toml("[portmanat]\ncallback_url = \"ftp://x\"").unwrap_err();
        assert!(url.to_string().contains("portmanat.callback_url"), "{url}");
        let secret = SimConfig::from_toml("[plutu]\nsecret_key = \"\"").unwrap_err();
        assert!(secret.to_string().contains("plutu.secret_key"), "{secret}");
    }

    #[test]
    fn url_check() {
        assert!(is_http_url("http://127.0.0.1:8080/x"));
        assert!(is_http_url("https://shop.example/cb?a=1"));
        assert!(!is_http_url("http://"));
        assert!(!is_http_url("http:///x"));
        assert!(!is_http_url("ftp://x"));
        assert!(!is_http_url("http://a b"));
    }
}
