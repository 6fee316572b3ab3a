//! Cases that change the global settings, per backend. Every test here holds the globals
//! lock, and no other test binary changes globals.

mod memory {
    cachier_conformance::global_conformance_tests!(|| Some("memory".to_string()));
}
