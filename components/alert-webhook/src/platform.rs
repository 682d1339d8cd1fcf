//! Spin glue shared by the components (see the `dol-spin-platform` crate).

pub use dol_spin_platform::*;
