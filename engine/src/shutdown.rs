//! A shutdown signal every task can await and clone.

use tokio::sync::watch;

/// Resolves once shutdown has been requested; clone it into each task.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Flips to `true` once; a dropped sender also counts as shutdown.
    rx: watch::Receiver<bool>,
}

/// Requests shutdown of every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct Trigger {
    /// The sending half.
    tx: watch::Sender<bool>,
}

/// A connected trigger and signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Requests shutdown.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// Waits until shutdown is requested (or the trigger is gone).
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped, which also means: stop.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
