//! The payload's telemetry: one JSON object per line on the guest's second
//! serial port. Defined once, in the `oomlab-protocol` crate that the
//! payload writes it with (protocol/PROTOCOL.md).

pub use oomlab_protocol::telemetry::{parse_line, Event as TelemetryEvent, Role, Telemetry};
