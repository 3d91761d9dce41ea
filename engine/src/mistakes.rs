//! Past mistakes of the apply path, kept so that the simulation can put each back, one at a
//! time, and show that it finds it (`testing::sim`). Only a test build can turn one on: in
//! every other build [`on`] is a constant `false` and the old code is compiled out.

/// A mistake the engine once made, or could have made, on its data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mistake {
    /// A partition's commit point moves past offsets whose events are still being applied
    /// (the highest offset seen, not the lowest one pending): a crash then loses them.
    CommitBeforeDurable,
    /// A revoked partition's workers write on (no fence, as before the fence existed): the
    /// next owner applies the same keys at the same time.
    WritesAfterRevocation,
}

#[cfg(test)]
thread_local! {
    /// The mistake made on this thread (a simulation runs on one thread).
    static MADE: std::cell::Cell<Option<Mistake>> = const { std::cell::Cell::new(None) };
}

/// Whether `mistake` is made on this thread.
#[cfg(test)]
pub fn on(mistake: Mistake) -> bool {
    MADE.with(|m| m.get() == Some(mistake))
}

/// Whether `mistake` is made: never, outside tests.
#[cfg(not(test))]
#[inline(always)]
pub const fn on(_mistake: Mistake) -> bool {
    false
}

/// Makes `mistake` (or none) on this thread from now on.
#[cfg(test)]
pub fn make(mistake: Option<Mistake>) {
    MADE.with(|m| m.set(mistake));
}
