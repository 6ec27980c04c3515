//! The provider accounts of the product's configuration, pointed at the
//! provider simulator with its demo credentials (`crates/sim/sim.toml`), for
//! the tests that run the real binary against it.

/// `[handoff]` with the tests' key ([`crate::handoff`]): what a product
/// configuration on RabbitMQ needs so the receiver signs what the worker,
/// and a test, verify.
pub fn handoff() -> String {
    format!(
        "[handoff]\nsign_with = \"{id}\"\n\n[[handoff.keys]]\nid = \"{id}\"\nsecret = \"{secret}\"\n",
        id = crate::handoff::KEY_ID,
        secret = crate::handoff::SECRET,
    )
}

/// `[portmanat.default]`, `[paysys.default]` with one notify credential and
/// `[plutu.default]`, every API under `sim_base` (the simulator's URL), and
/// the tests' [`handoff`] key.
pub fn sim_accounts(sim_base: &str) -> String {
    let base = sim_base.trim_end_matches('/');
    format!(
        r#"[portmanat.default]
base_url = "{base}/portmanat"

[paysys.default]
gateway_url = "{base}/paysys/gateway"
service_id = "2001"
secret_key = "demo-paysys-secret"

[[paysys.default.notify_credentials]]
user = "demo-vendor"
password = "demo-vendor-secret"

[plutu.default]
secret_key = "sk_demo_plutu_secret"

{handoff}"#,
        handoff = handoff(),
    )
}
