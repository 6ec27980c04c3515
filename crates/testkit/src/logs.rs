//! Keeping a test binary's log output where a test can read it.
//!
//! The tracing subscriber is process-wide, so it is installed once per test
//! binary and every test's log lines land in the same buffer. That is the
//! point: a test that scans the buffer at the end of the suite sees what
//! every test logged, not only its own lines.

use std::io;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The captured output: JSON lines, one per event, as the fmt layer writes
/// them (fields, span fields and the target included).
#[derive(Debug, Clone)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

static CAPTURE: OnceLock<Result<LogCapture, String>> = OnceLock::new();

/// Installs the capturing subscriber for this process (once; later calls
/// return the same capture) with `filter` in `EnvFilter` syntax. Set
/// `PAYSETTLE_TEST_LOG=1` to also see the lines on stderr.
///
/// Fails when another global subscriber was installed first: a capture that
/// silently captured nothing would make every scan of it pass.
pub fn capture_logs(filter: &str) -> Result<&'static LogCapture, String> {
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture {
                buffer: Arc::default(),
                echo: std::env::var_os("PAYSETTLE_TEST_LOG").is_some(),
            };
            tracing_subscriber::fmt()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_env_filter(
                    // As the product's subscriber: the caps after the level.
                    paysettle_core::redact::LOG_CAPS
                        .iter()
                        .filter_map(|cap| cap.parse().ok())
                        .fold(EnvFilter::new(filter), EnvFilter::add_directive),
                )
                .with_writer(capture.clone())
                .try_init()
                .map_err(|e| format!("cannot install the log capture: {e}"))?;
            Ok(capture)
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl LogCapture {
    /// Everything captured so far.
    pub fn contents(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// One event's writer: appends to the shared buffer (and stderr if asked).
#[derive(Debug)]
pub struct CaptureWriter {
    capture: LogCapture,
}

impl io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.capture
            .buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        if self.capture.echo {
            let _ = io::stderr().write_all(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter {
            capture: self.clone(),
        }
    }
}
