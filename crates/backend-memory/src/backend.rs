//! The backend: one store per namespace, in this process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cachier_core::{Backend, Core, Error, Namespace};
use parking_lot::Mutex;

use crate::blocking::MemoryCore;

/// The in-process store: one map per namespace. Clones share the same stores.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    cores: Arc<Mutex<HashMap<Namespace, Arc<MemoryCore>>>>,
}

impl MemoryBackend {
    /// A new, empty store, private to whoever holds it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide store (the default when the global backend is `"memory"`).
    pub fn global() -> Self {
        static GLOBAL: LazyLock<MemoryBackend> = LazyLock::new(MemoryBackend::new);
        GLOBAL.clone()
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        let core = self
            .cores
            .lock()
            .entry(namespace.clone())
            .or_default()
            .clone();
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
