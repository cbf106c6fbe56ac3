//! The YAML side of scenario files that serde cannot do alone: the
//! mitigation entries (read through the protocol crate's own parser) and
//! the line of a field for errors found after parsing.

use oomlab_protocol::Mitigation;
use serde::Deserialize;

use super::ScenarioError;
use std::path::Path;

/// One `mitigations:` entry of a scenario file, read through the protocol
/// crate's own field parser, so YAML and `scenario.conf` accept exactly the
/// same values.
fn mitigation_from_yaml(v: &serde_yaml::Value) -> Result<Mitigation, (String, String)> {
    use serde_yaml::Value;
    let scalar = |field: &str, v: &Value| -> Result<String, (String, String)> {
        match v {
            Value::String(s) if crate::text::first_unsafe(s, &[]).is_some() => Err((
                field.to_string(),
                format!(
                    "control characters are not allowed (`{}`)",
                    crate::text::printable(s)
                ),
            )),
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err((field.to_string(), "expected a single value".to_string())),
        }
    };
    let (kind, fields) = match v {
        Value::String(kind) => (kind.clone(), None),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, f) = m.iter().next().expect("one entry");
            let kind = scalar("mitigation", k)?;
            (kind, Some(f))
        }
        _ => {
            return Err((
                "mitigations".to_string(),
                "expected `- kind: {field: value, ...}` (one kind per entry) or `- kind`".into(),
            ))
        }
    };
    let mut pairs = Vec::new();
    match fields {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let k = scalar("field name", k)?;
                let v = scalar(&format!("{kind}.{k}"), v)?;
                pairs.push((k, v));
            }
        }
        Some(_) => return Err((kind, "expected a map of fields".to_string())),
    }
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Mitigation::from_pairs(&kind, &refs).map_err(|e| (e.field, e.msg))
}

/// serde_yaml places custom errors at the start of the document, so the
/// entry's index and field travel in the message, and [`Scenario::parse`]
/// finds the line itself.
pub(super) struct MitigationAt {
    index: usize,
    field: String,
    msg: String,
}

const MITIGATION_ERR: &str = "\u{1}mitigation\u{1}";

impl MitigationAt {
    fn to_error_text(&self) -> String {
        format!(
            "{MITIGATION_ERR}{}\u{1}{}\u{1}{}\u{1}",
            self.index, self.field, self.msg
        )
    }

    pub(super) fn from_error(text: &str) -> Option<MitigationAt> {
        let rest = &text[text.find(MITIGATION_ERR)? + MITIGATION_ERR.len()..];
        let mut parts = rest.split('\u{1}');
        Some(MitigationAt {
            index: parts.next()?.parse().ok()?,
            field: parts.next()?.to_string(),
            msg: parts.next()?.to_string(),
        })
    }

    pub(super) fn into_error(self, path: &Path, text: &str) -> ScenarioError {
        ScenarioError::Invalid {
            path: path.to_path_buf(),
            line: line_of_list_item(text, "mitigations", self.index, &self.field),
            field: format!("mitigations.{}", self.field),
            msg: self.msg,
        }
    }
}

pub(super) fn de_mitigations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Mitigation>, D::Error> {
    let raw: Vec<serde_yaml::Value> = Deserialize::deserialize(d)?;
    raw.iter()
        .enumerate()
        .map(|(index, v)| {
            mitigation_from_yaml(v).map_err(|(field, msg)| {
                serde::de::Error::custom(MitigationAt { index, field, msg }.to_error_text())
            })
        })
        .collect()
}

/// Line of the `index`-th item of the top-level list `key`, or of its
/// `field` (last dotted part) when that is written in the item. 0 when
/// not found.
pub fn line_of_list_item(text: &str, key: &str, index: usize, field: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    }) else {
        return 0;
    };
    let items: Vec<usize> = (start + 1..lines.len())
        .take_while(|&i| {
            let l = lines[i];
            l.trim().is_empty() || l.starts_with([' ', '-', '#'])
        })
        .filter(|&i| lines[i].trim_start().starts_with('-'))
        .collect();
    let Some(&at) = items.get(index) else {
        return start + 1;
    };
    let end = items.get(index + 1).copied().unwrap_or(lines.len());
    let last = field.rsplit('.').next().unwrap_or(field);
    (at..end)
        .find(|&i| {
            lines[i]
                .find(last)
                .is_some_and(|p| lines[i][p + last.len()..].trim_start().starts_with(':'))
        })
        .unwrap_or(at)
        + 1
}

/// Best-effort line of a (possibly dotted) field in the YAML text, for
/// semantic errors that serde cannot locate: the line of the last path
/// component found after its parent's line. 0 when not written at all
/// (a default was used).
pub fn line_of_field(text: &str, dotted: &str) -> usize {
    let mut from = 0usize;
    let mut found = 0usize;
    for part in dotted.split('.') {
        let hit = text.lines().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(part)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        });
        match hit {
            Some((i, _)) => {
                found = i + 1;
                from = i;
            }
            None => return found,
        }
    }
    found
}
