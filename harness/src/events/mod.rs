//! Events: what the kernel printed and what the payload reported, typed.

pub mod kernel;
