//! The backend: one store per namespace, in this process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cachier_core::{Backend, Core, Error, Namespace};
use parking_lot::Mutex;

use crate::blocking::MemoryCore;
use crate::budget::Budget;
use crate::MemoryBackendBuilder;

/// The in-process store: one map per namespace. Clones share the same stores.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    cores: Arc<Mutex<HashMap<Namespace, Arc<MemoryCore>>>>,
    /// The capacity shared by every namespace, if the store has one.
    budget: Option<Arc<Budget>>,
}

impl MemoryBackend {
    /// A new, empty, unbounded store, private to whoever holds it.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with options: a capacity in entries and/or bytes.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder::default()
    }

    pub(crate) fn with_budget(budget: Option<Arc<Budget>>) -> Self {
        MemoryBackend {
            cores: Arc::default(),
            budget,
        }
    }

    /// The process-wide store (the default when the global backend is `"memory"`); unbounded.
    pub fn global() -> Self {
        static GLOBAL: LazyLock<MemoryBackend> = LazyLock::new(MemoryBackend::new);
        GLOBAL.clone()
    }

    /// How many values the store's capacity has evicted so far (0 for an unbounded store).
    pub fn evictions(&self) -> u64 {
        self.budget.as_ref().map_or(0, |budget| budget.evictions())
    }

    /// The values stored over every function and their encoded bytes, as the capacity counts
    /// them (a bounded store counts as it goes; an unbounded one is walked).
    pub fn usage(&self) -> (u64, u64) {
        match &self.budget {
            Some(budget) => budget.usage(),
            None => self
                .cores
                .lock()
                .values()
                .map(|core| core.usage())
                .fold((0, 0), |(n, b), (cn, cb)| (n + cn, b + cb)),
        }
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        let mut cores = self.cores.lock();
        if let Some(core) = cores.get(namespace) {
            return Ok(core.clone());
        }
        let core = Arc::new(MemoryCore::new(self.budget.clone()));
        if let Some(budget) = &self.budget {
            budget.register(&core);
        }
        cores.insert(namespace.clone(), core.clone());
        Ok(core)
    }

    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let cores = self.cores.lock();
        let mut names: Vec<Namespace> = cores
            .iter()
            .filter(|(_, core)| core.holds_entries())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        Ok(names)
    }
}
