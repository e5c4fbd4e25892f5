//! The stdout sink: one JSON line per event.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::SinkError;
use crate::metrics::Metrics;

/// Writes events as JSON lines to standard output, one whole line at a time.
#[derive(Debug)]
pub struct StdoutSink {
    out: Mutex<tokio::io::Stdout>,
    metrics: Arc<Metrics>,
}

impl StdoutSink {
    /// A sink on this process's standard output.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        StdoutSink {
            out: Mutex::new(tokio::io::stdout()),
            metrics,
        }
    }

    /// Writes `line` and a newline, and flushes.
    pub async fn write(&self, line: &str) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        let mut out = self.out.lock().await;
        let result = async {
            out.write_all(&buf).await?;
            out.flush().await
        }
        .await;
        match result {
            Ok(()) => {
                self.metrics.sink_delivery("stdout", "delivered");
                Ok(())
            }
            Err(e) => {
                self.metrics.sink_delivery("stdout", "failed");
                Err(SinkError::Stdout(e))
            }
        }
    }
}
