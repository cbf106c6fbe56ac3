//! The VM stage: choose an accelerator, build QEMU's command line, run it.

pub mod accel;
pub mod args;
pub mod runner;

pub use args::AccelKind;
pub use runner::{
    find_qemu, run, Cancel, Output, RunOutcome, StopPolicy, StopReason, VmConfig, VmError, Watch,
};
