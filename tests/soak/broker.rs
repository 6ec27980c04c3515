//! Restarting the shared RabbitMQ node (`rabbitmqctl stop_app`, then
//! `start_app`). It disturbs every other test using the broker, so only the
//! long soak does it, and only when `PAYSETTLE_SOAK_BROKER_RESTART=1`.
//! Whatever happens to the run, the node is started again: [`Broker`]'s
//! `Drop` starts it if the harness fails while it is stopped (and
//! scripts/soak.sh does the same on exit).

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// The node, and whether the harness has stopped it.
#[derive(Debug, Default)]
pub struct Broker {
    stopped: bool,
}

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    // `timeout` bounds a node that does not answer.
    let output = Command::new("timeout")
        .arg("120")
        .arg("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Broker {
    /// Whether this machine lets the harness restart the broker.
    pub fn available() -> bool {
        rabbitmqctl(&["status"]).is_ok()
    }

    /// Stops the node's application (connections drop, queues stay on disk).
    pub async fn stop(&mut self) {
        self.stopped = true;
        let result = tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
            .await
            .unwrap();
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    /// Starts it again and waits until it takes AMQP connections.
    pub async fn start(&mut self) {
        let result = tokio::task::spawn_blocking(|| {
            rabbitmqctl(&["start_app"])?;
            rabbitmqctl(&["await_startup"])
        })
        .await
        .unwrap();
        if let Err(e) = result {
            panic!("{e}");
        }
        self.stopped = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(1))
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "RabbitMQ does not take connections a minute after start_app"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.stopped
            && let Err(e) = rabbitmqctl(&["start_app"])
        {
            eprintln!("soak: could not start RabbitMQ again: {e}");
        }
    }
}
