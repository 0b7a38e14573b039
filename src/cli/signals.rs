//! Stop requests: Ctrl-C (SIGINT) and, on Unix, SIGTERM, which CI runners send when a job is
//! cancelled.
//!
//! The handlers are installed when [`Interrupts::install`] returns, not when the first wait is
//! polled: `tokio::signal::ctrl_c()` only registers on its first poll, so a signal that arrives
//! between announcing readiness (the sandbox printing its address) and that poll would kill the
//! process with the default action instead of stopping it cleanly.

use std::io;

pub struct Interrupts {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Installs the handlers now. Must be called inside the tokio runtime.
    pub fn install() -> io::Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next stop request.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
