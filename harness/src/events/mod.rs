//! Events: what the kernel printed and what the payload reported, typed and
//! put on one guest-time line.

pub mod kernel;
pub mod prefix;
pub mod supervisor;
pub mod telemetry;
pub mod timeline;

/// Keywords of a message table, once each, in table order (the tables list
/// a word under several messages).
fn distinct<'a>(words: impl IntoIterator<Item = &'a &'static str>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for k in words {
        if !v.contains(k) {
            v.push(k);
        }
    }
    v
}
