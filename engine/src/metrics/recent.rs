//! The last dead letters of each pipeline, for the operator page: when, where in the topic,
//! the key as logs show it and the reason's code and field. Never a record's fields or a
//! plugin's words.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Dead letters kept per pipeline; older ones are dropped (the dead-letter topic keeps all).
pub const KEPT: usize = 20;

/// One dead letter, as the operator page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterNote {
    /// When it was written to the dead-letter topic.
    pub at: SystemTime,
    /// The event's partition.
    pub partition: i32,
    /// The event's offset.
    pub offset: i64,
    /// The event's key as logs write it ([`crate::redact::key`]: a keyed hash by default).
    pub key: String,
    /// Why: the reason's code and field ([`crate::pipeline::Reason`]'s `Display`).
    pub reason: String,
}

/// The last [`KEPT`] dead letters of one pipeline, newest last. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct RecentDeadLetters(Arc<Mutex<VecDeque<DeadLetterNote>>>);

impl RecentDeadLetters {
    /// Keeps `note`, dropping the oldest beyond [`KEPT`].
    pub fn push(&self, note: DeadLetterNote) {
        if let Ok(mut notes) = self.0.lock() {
            if notes.len() == KEPT {
                notes.pop_front();
            }
            notes.push_back(note);
        }
    }

    /// The notes kept, newest first.
    pub fn newest_first(&self) -> Vec<DeadLetterNote> {
        self.0
            .lock()
            .map(|notes| notes.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(offset: i64) -> DeadLetterNote {
        DeadLetterNote {
            at: SystemTime::UNIX_EPOCH,
            partition: 0,
            offset,
            key: "k:ab".into(),
            reason: "r".into(),
        }
    }

    #[test]
    fn keeps_the_newest_and_shows_them_first() {
        let recent = RecentDeadLetters::default();
        for offset in 0..(KEPT as i64 + 5) {
            recent.clone().push(note(offset));
        }
        let shown = recent.newest_first();
        assert_eq!(shown.len(), KEPT);
        assert_eq!(shown[0].offset, KEPT as i64 + 4);
        assert_eq!(shown[KEPT - 1].offset, 5);
    }
}
