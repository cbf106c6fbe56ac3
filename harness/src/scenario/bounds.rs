//! Bounds on scenario files, checked before and while the YAML is parsed,
//! so that no input file can make `oomlab check` or `run` hang or eat the
//! machine's memory.
//!
//! serde_yaml (0.9) limits recursion to 128 levels and alias jumps to 100
//! times the number of events, but only while deserializing, after libyaml
//! has turned the whole input into a list of events: the input's size, its
//! flow nesting (libyaml's scanner is quadratic in it) and the total size
//! that aliases expand to are not bounded. Here:
//!
//! 1. [`read_capped`]: at most [`MAX_FILE_BYTES`] are read, from any kind
//!    of file (`/dev/zero` is refused after 256 KiB, a FIFO is read once).
//! 2. [`prescan`]: no control characters, flow collections (`[`, `{`)
//!    nested at most [`MAX_FLOW_DEPTH`] deep and at most
//!    [`MAX_FLOW_OPENERS`] of them in the file: a bound on libyaml's work
//!    that no quoting can hide, as every bracket counts.
//! 3. [`walk_budget`]: a dry run over the parsed document that stores
//!    nothing and stops at [`MAX_NODES`] values, [`MAX_EXPANDED_BYTES`] of
//!    scalar text or [`MAX_DEPTH`] levels, counting what aliases expand to.
//!    Only then is the scenario deserialized for real.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Visitor};

use super::ScenarioError;

/// A scenario is a few KB. libyaml turns the whole file into events
/// before anything else can look at it, up to 1.5 events per byte (`? `
/// indicators), some 150 bytes each: at 1 MiB that is over 200 MB; at
/// 256 KiB the worst file stays near 55 MB.
pub const MAX_FILE_BYTES: usize = 256 << 10;
/// Nesting of `[...]` and `{...}` (a scenario needs 2).
pub const MAX_FLOW_DEPTH: usize = 32;
/// `[` and `{` characters in the whole file, wherever they are.
pub const MAX_FLOW_OPENERS: usize = 256;
/// Values (scalars, lists, maps) in the document, aliases expanded.
pub const MAX_NODES: usize = 10_000;
/// Bytes of scalar text in the document, aliases expanded.
pub const MAX_EXPANDED_BYTES: usize = MAX_FILE_BYTES;
/// Nesting of any collection, block or flow (a scenario needs 4).
pub const MAX_DEPTH: usize = 32;
/// Entries of `mitigations`.
pub const MAX_MITIGATIONS: usize = 32;
/// Words of `vm.cmdline`.
pub const MAX_CMDLINE_WORDS: usize = 64;
/// Bytes of one `vm.cmdline` word.
pub const MAX_CMDLINE_WORD: usize = 256;
/// The kernel's own limit (x86 `COMMAND_LINE_SIZE` is 2048, with the NUL):
/// a longer command line is cut without a word.
pub const MAX_KERNEL_CMDLINE: usize = 2047;
/// Bytes of `description`.
pub const MAX_DESCRIPTION: usize = 4096;

fn limit(path: &Path, line: usize, limit: &'static str, detail: String) -> ScenarioError {
    ScenarioError::Limit {
        path: path.to_path_buf(),
        line,
        limit,
        detail,
    }
}

/// The file's bytes, reading at most [`MAX_FILE_BYTES`] + 1 of them: a
/// regular file too large is refused from its size, anything else (a
/// FIFO, a device, `/proc`) after the cap. Each input is opened and read
/// exactly once, so a FIFO works.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, ScenarioError> {
    let read_err = |source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if meta.is_dir() {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        )));
    }
    let too_big = |what: String| {
        limit(
            path,
            0,
            "file size",
            format!("{what}; a scenario file may have at most {MAX_FILE_BYTES} bytes (256 KiB)"),
        )
    };
    if meta.is_file() && meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_big(format!("the file has {} bytes", meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_big(if meta.is_file() {
            "the file grew past the limit while being read".into()
        } else {
            "it is not a regular file and gave more than the limit".into()
        }));
    }
    Ok(bytes)
}

/// `bytes` as UTF-8 text, or an error naming the line of the first bad byte.
pub fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, ScenarioError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let column = 1 + at
            - bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
        ScenarioError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            msg: format!(
                "not UTF-8 text (byte 0x{:02x}); a scenario file is YAML text",
                bytes[at]
            ),
        }
    })
}

/// Checks on the raw text, before any YAML parser sees it: its size, no
/// control characters (tab, CR and LF excepted), and bounded flow nesting.
pub fn prescan(path: &Path, text: &str) -> Result<(), ScenarioError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(limit(
            path,
            0,
            "file size",
            format!(
                "the text has {} bytes; a scenario file may have at most {MAX_FILE_BYTES} bytes (256 KiB)",
                text.len()
            ),
        ));
    }
    let mut line = 1usize;
    let mut line_start = 0usize;
    let mut depth = 0usize;
    let mut openers = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '\n' => {
                line += 1;
                line_start = i + 1;
            }
            '[' | '{' => {
                depth += 1;
                openers += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(limit(
                        path,
                        line,
                        "nesting depth",
                        format!("`[`/`{{` nested more than {MAX_FLOW_DEPTH} levels deep"),
                    ));
                }
                if openers > MAX_FLOW_OPENERS {
                    return Err(limit(
                        path,
                        line,
                        "flow collections",
                        format!(
                            "more than {MAX_FLOW_OPENERS} `[`/`{{` characters in the file \
                             (every one counts, quoted or not; a scenario needs a few)"
                        ),
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '\t' | '\r' => {}
            c if crate::text::is_unsafe(c) => {
                return Err(ScenarioError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column: text[line_start..i].chars().count() + 1,
                    msg: format!(
                        "control character {} is not allowed in a scenario file",
                        crate::text::printable(c.encode_utf8(&mut [0; 4]))
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Which budget a dry run ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exceeded {
    Nodes,
    Bytes,
    Depth,
}

#[derive(Default)]
struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
    exceeded: Cell<Option<Exceeded>>,
}

/// Visits every value of a document, storing nothing.
#[derive(Clone, Copy)]
struct Walk<'a> {
    budget: &'a Budget,
    depth: usize,
}

impl Walk<'_> {
    fn fail<E: de::Error>(&self, why: Exceeded) -> E {
        self.budget.exceeded.set(Some(why));
        E::custom("oomlab scenario budget exceeded")
    }

    fn node<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let b = self.budget;
        b.nodes.set(b.nodes.get() + 1);
        b.bytes.set(b.bytes.get().saturating_add(bytes));
        if b.nodes.get() > MAX_NODES {
            return Err(self.fail(Exceeded::Nodes));
        }
        if b.bytes.get() > MAX_EXPANDED_BYTES {
            return Err(self.fail(Exceeded::Bytes));
        }
        Ok(())
    }

    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        self.node(0)?;
        if self.depth >= MAX_DEPTH {
            return Err(self.fail(Exceeded::Depth));
        }
        Ok(Walk {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.node(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.node(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.node(0)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.node(0)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.node(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.node(0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.node(v.len())
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.node(v.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.node(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.node(0)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
    /// A `!tag value` (serde_yaml hands tagged values over as enums).
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        let ((), variant) = data.variant_seed(inner)?;
        de::VariantAccess::newtype_variant_seed(variant, inner)
    }
}

/// A dry run over the whole document: `Ok(Err(e))` is a YAML error (the
/// caller words it with its location), `Err` a budget that ran out.
pub fn walk_budget(
    path: &Path,
    text: &str,
) -> Result<Result<(), serde_yaml::Error>, ScenarioError> {
    let budget = Budget::default();
    let walk = Walk {
        budget: &budget,
        depth: 0,
    };
    let result = walk.deserialize(serde_yaml::Deserializer::from_str(text));
    let Some(why) = budget.exceeded.get() else {
        return Ok(result);
    };
    Err(match why {
        Exceeded::Nodes => limit(
            path,
            0,
            "value count",
            format!(
                "more than {MAX_NODES} values, each alias counted as all it stands for \
                 (a scenario has a few hundred at most)"
            ),
        ),
        Exceeded::Bytes => limit(
            path,
            0,
            "expanded text",
            format!(
                "more than {MAX_EXPANDED_BYTES} bytes of text, each alias counted as all it \
                 stands for"
            ),
        ),
        Exceeded::Depth => limit(
            path,
            0,
            "nesting depth",
            format!("values nested more than {MAX_DEPTH} levels deep"),
        ),
    })
}
