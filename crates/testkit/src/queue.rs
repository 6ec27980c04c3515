//! One test's private queue, on either backend.

use std::time::Duration;

use paysettle_queue::{BackendKind, QueueConfig};

use crate::amqp;

/// A temporary directory for the SQLite files (embedded queue, spool) and,
/// on RabbitMQ, a unique prefix whose queues and exchanges are deleted when
/// this is dropped, whether the test passed or panicked.
#[derive(Debug)]
pub struct TestQueue {
    pub backend: BackendKind,
    pub prefix: String,
    pub amqp_url: String,
    pub dir: tempfile::TempDir,
}

impl TestQueue {
    /// A fresh prefix and directory; `amqp_url` is [`amqp::amqp_url`].
    pub fn new(backend: BackendKind) -> std::io::Result<TestQueue> {
        Ok(TestQueue {
            backend,
            prefix: format!("pstest-{}", uuid::Uuid::new_v4().simple()),
            amqp_url: amqp::amqp_url(),
            dir: tempfile::tempdir()?,
        })
    }

    /// Settings for this test: its own names and files, and short timeouts so
    /// failure paths stay fast. With RabbitMQ a spool is configured; set
    /// `spool_path` to `None` to test the broker alone.
    pub fn config(&self) -> QueueConfig {
        QueueConfig {
            backend: self.backend,
            amqp_url: self.amqp_url.clone(),
            prefix: self.prefix.clone(),
            prefetch: 256,
            delivery_limit: 3,
            hints_max_length: 1000,
            confirm_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            reconnect_max_delay: Duration::from_millis(300),
            recovery_grace: Duration::from_secs(2),
            spool_path: Some(self.dir.path().join("spool.sqlite")),
            forward_batch: 256,
            embedded_path: self.dir.path().join("queue.sqlite"),
            lease_duration: Duration::from_secs(30),
            finance_queue: false,
            embedded_event_queues: true,
        }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        if self.backend != BackendKind::RabbitMq {
            return;
        }
        let (url, prefix) = (self.amqp_url.clone(), self.prefix.clone());
        // Its own thread and runtime: Drop may run inside the test's runtime
        // (where blocking on it would deadlock) or after it ended.
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(amqp::delete_topology(&url, &prefix)),
                Err(e) => Err(amqp::AmqpError::from(e)),
            }
        });
        match cleaner.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleanup of {}: {e}", self.prefix),
            Err(_) => eprintln!("cleanup of {} panicked", self.prefix),
        }
    }
}
