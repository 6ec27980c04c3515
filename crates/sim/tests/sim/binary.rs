//! The `paysettle-sim` binary: the simulator as the demo, the benchmarks
//! and the compose example start it.

use std::process::Command;

#[test]
fn the_simulator_is_its_own_binary_with_help_and_its_reference_configuration() {
    let out = Command::new(env!("CARGO_BIN_EXE_paysettle-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--port", "--autopilot-rate", "--print-config", "Example"] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_paysettle-sim"))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        paysettle_sim::config::DEFAULT_CONFIG
    );
}
