//! oomlab's guest payload: `/init` of the test VM's initramfs. It plays the
//! seed incident's nginx (a master that re-forks workers the OOM killer
//! kills) and reports what happens on `/dev/ttyS1` (see protocol/PROTOCOL.md).

pub mod canary;
pub mod disk;
pub mod helpers;
pub mod init;
pub mod load;
pub mod master;
pub mod mitigate;
pub mod modules;
pub mod net;
pub mod program;
pub mod sample;
pub mod sys;
pub mod telemetry;
pub mod worker;

pub use init::run;
