//! Events: what the kernel printed and what the payload reported, typed and
//! put on one guest-time line.

pub mod kernel;
pub mod prefix;
pub mod supervisor;
pub mod telemetry;
pub mod timeline;
