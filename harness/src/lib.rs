//! oomlab: reproduce, judge and compare Linux OOM-killer kill/respawn loops.
//!
//! The data's path, one module per stage:
//! `scenario` (YAML in) -> `image` (kernel + initramfs) -> `vm` (QEMU, console
//! and telemetry) -> `events` (typed kernel + payload events, one timeline) ->
//! `verdict` (livelock / recovered / ...) -> `report` (terminal, JSON).
//! `analyze` reuses `events` on logs from real machines. `probe_ssh` logs
//! into the guest from the host while it runs.

pub mod analyze;
pub mod atomic;
pub mod events;
pub mod experiment;
pub mod image;
pub mod matrix;
pub mod probe_ssh;
pub mod report;
pub mod scenario;
pub mod text;
pub mod verdict;
pub mod vm;
