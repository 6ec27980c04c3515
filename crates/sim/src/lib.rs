//! The provider simulator (placeholder until the "Provider simulator" issue lands).

/// Options of `paysettle sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Runs the simulator until it is stopped.
pub async fn run_cli(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("the simulator is not built yet")
}
