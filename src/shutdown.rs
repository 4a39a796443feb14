//! Signals. The first SIGINT or SIGTERM cancels the run's token: stop taking work, drain, report,
//! exit 130/143. A second one exits at once (nothing is lost: a CSV can be rerun, SQS
//! redelivers).

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// Which signal stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Ctrl-C.
    Interrupt,
    /// `kill`, Kubernetes, systemd.
    Terminate,
}

impl Signal {
    /// The conventional exit status: 128 + signal number.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }
}

/// The run's shutdown token and the signal that cancelled it.
#[derive(Clone)]
pub(crate) struct Shutdown {
    /// Cancelled by the first signal.
    pub token: CancellationToken,
    signal: Arc<OnceLock<Signal>>,
}

impl Shutdown {
    /// The signal received, if any.
    pub(crate) fn signal(&self) -> Option<Signal> {
        self.signal.get().copied()
    }

    /// Starts listening for SIGINT and SIGTERM.
    pub(crate) fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let me = Self {
            token: CancellationToken::new(),
            signal: Arc::new(OnceLock::new()),
        };
        let (token, slot) = (me.token.clone(), me.signal.clone());
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    _ = int.recv() => Signal::Interrupt,
                    _ = term.recv() => Signal::Terminate,
                };
                if slot.set(got).is_ok() {
                    tracing::warn!(
                        "received {}: no new jobs; finishing calls in flight (send it again to exit at once)",
                        got.name()
                    );
                    token.cancel();
                } else {
                    tracing::warn!("received {} again: exiting now", got.name());
                    std::process::exit(i32::from(got.exit_code()));
                }
            }
        });
        Ok(me)
    }
}
