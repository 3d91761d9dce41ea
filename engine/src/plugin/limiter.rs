//! What one plugin instance may hold, enforced by wasmtime as it grows: linear memory over all
//! its memories together, table elements, and how many core instances, memories and tables
//! the component may create. Every figure follows from the pipeline's `plugin_memory_mib`.

use wasmtime::ResourceLimiter;

/// Core instances one component instance may create (a Rust component uses a handful; one
/// built by componentize-py links a few dozen modules).
pub const MAX_CORE_INSTANCES: usize = 64;
/// Linear memories one instance may create; their sizes together stay within the budget.
pub const MAX_MEMORIES: usize = 4;
/// Tables one instance may create.
pub const MAX_TABLES: usize = 16;
/// Bytes of memory budget per table element allowed: each element costs the host a pointer,
/// so a table at the cap costs the host an eighth of the memory budget.
const BYTES_PER_TABLE_ELEMENT: usize = 64;
/// Table elements allowed whatever the budget (a component's function tables need some).
const MIN_TABLE_ELEMENTS: usize = 10_000;

/// Which limit an instance hit.
#[derive(Debug, thiserror::Error)]
pub enum LimitHit {
    /// Its memories together would pass the budget.
    #[error("memory would grow to {wanted} bytes, past the budget of {budget}")]
    Memory {
        /// Bytes all memories would hold.
        wanted: usize,
        /// The budget.
        budget: usize,
    },
    /// A table would pass the element cap.
    #[error("a table would grow to {wanted} elements, past the cap of {cap}")]
    Table {
        /// Elements asked for.
        wanted: usize,
        /// The cap.
        cap: usize,
    },
}

/// The limits of one instance and what it holds now.
#[derive(Debug)]
pub struct SandboxLimiter {
    /// Bytes all linear memories may hold together.
    memory_budget: usize,
    /// Bytes they hold now.
    memory_used: usize,
    /// Elements one table may hold.
    table_elements: usize,
}

impl SandboxLimiter {
    /// Limits for an instance whose memories may hold `memory_budget` bytes together.
    pub fn new(memory_budget: usize) -> Self {
        Self {
            memory_budget,
            memory_used: 0,
            table_elements: table_elements_for(memory_budget),
        }
    }
}

impl SandboxLimiter {
    /// Bytes the instance's linear memories hold now (they never shrink).
    pub fn memory_used(&self) -> usize {
        self.memory_used
    }
}

/// The table element cap that follows from a memory budget.
pub fn table_elements_for(memory_budget: usize) -> usize {
    (memory_budget / BYTES_PER_TABLE_ELEMENT).max(MIN_TABLE_ELEMENTS)
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self
            .memory_used
            .saturating_sub(current)
            .saturating_add(desired);
        if wanted > self.memory_budget || maximum.is_some_and(|m| desired > m) {
            // A trap, not a failed `memory.grow`: a guest that ignores the failure and goes on
            // would only fail later, less clearly.
            return Err(LimitHit::Memory {
                wanted,
                budget: self.memory_budget,
            }
            .into());
        }
        self.memory_used = wanted;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements || maximum.is_some_and(|m| desired > m) {
            return Err(LimitHit::Table {
                wanted: desired,
                cap: self.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_share_one_budget() {
        let mut limiter = SandboxLimiter::new(4 << 20);
        // Two memories of 2 MiB fit; growing either past the budget traps.
        assert!(limiter.memory_growing(0, 2 << 20, None).is_ok());
        assert!(limiter.memory_growing(0, 2 << 20, None).is_ok());
        let err = limiter
            .memory_growing(2 << 20, 3 << 20, None)
            .expect_err("past the budget");
        assert!(matches!(
            err.downcast_ref::<LimitHit>(),
            Some(LimitHit::Memory { .. })
        ));
        assert!(limiter
            .table_growing(0, table_elements_for(4 << 20) + 1, None)
            .is_err());
        assert_eq!(table_elements_for(16 << 20), 262_144);
    }
}
