//! Test support shared by every crate's tests (a dev-dependency only; std only).
//!
//! - [`skip`]: the project's one skip rule. A test that needs something a machine may lack
//!   (a wgpu adapter, a Python module, the shared data folder) skips only on the specific
//!   "resource missing" condition, prints one line naming it, and fails instead when `CI` is
//!   set, because CI (`bash .ci/run` with `CI=true`) installs every such resource and a skip
//!   there would hide a broken setup.
//! - [`mutate`] and [`fuzz`]: structure-aware mutations of real files and the property every
//!   reader must keep on them (never panic, never allocate far beyond the input); the
//!   `fuzz/` crate runs the same readers under libFuzzer.

pub mod fuzz;
pub mod mutate;
pub mod skip;

pub use fuzz::{Outcome, PeakAlloc, check_reader};
pub use skip::{Missing, ci, missing, python_with, shared_data, shared_data_dir};
