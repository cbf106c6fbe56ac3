//! The kernel catalogue, `images/kernels.yaml`, compiled in so the binary
//! needs no source tree to know its kernels.

use serde::Deserialize;

use crate::image::ImageError;

/// The catalogue kernel a scenario boots when it names none.
pub const DEFAULT_KERNEL: &str = "debian-bookworm-cloud-6.1";

const CATALOGUE_YAML: &str = include_str!("../../../../images/kernels.yaml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub default: String,
    pub kernels: Vec<CatalogueEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntry {
    pub name: String,
    /// Debian suite (codename) the package comes from.
    pub suite: String,
    pub package: String,
    /// Exact Debian version: `apt-get download package=version`.
    pub version: String,
    /// `uname -r` of that kernel, i.e. the `boot/vmlinuz-<release>` suffix.
    pub release: String,
    /// sha256 of the extracted vmlinuz.
    pub sha256: String,
    /// The Debian metapackage this entry follows (e.g.
    /// `linux-image-cloud-amd64`): when the pinned version has left the
    /// mirror, its current dependency is used instead, loudly (see
    /// [`PinPolicy`]). Without it a vanished pin is an error.
    #[serde(default)]
    pub track: Option<String>,
}

/// Parses and sanity-checks a catalogue text.
pub fn parse_catalogue(text: &str) -> Result<Catalogue, ImageError> {
    let cat: Catalogue =
        serde_yaml::from_str(text).map_err(|e| ImageError::Catalogue(e.to_string()))?;
    let bad = |m: String| Err(ImageError::Catalogue(m));
    for (i, k) in cat.kernels.iter().enumerate() {
        if !is_sha256_hex(&k.sha256) {
            return bad(format!(
                "entry `{}`: sha256 is not 64 lowercase hex digits",
                k.name
            ));
        }
        if cat.kernels[..i].iter().any(|o| o.name == k.name) {
            return bad(format!("entry `{}` appears twice", k.name));
        }
        if let Some(t) = &k.track {
            if !t.starts_with("linux-image-") || !is_package_name(t) {
                return bad(format!(
                    "entry `{}`: track `{t}` is not a linux-image-* package name",
                    k.name
                ));
            }
        }
        if k.name.contains('/') || k.name.starts_with('.') || k.name.is_empty() {
            return bad(format!(
                "entry `{}`: name must be a plain file name",
                k.name
            ));
        }
    }
    if !cat.kernels.iter().any(|k| k.name == cat.default) {
        return bad(format!("default `{}` is not an entry", cat.default));
    }
    Ok(cat)
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The compiled-in catalogue.
pub fn catalogue() -> Result<Catalogue, ImageError> {
    parse_catalogue(CATALOGUE_YAML)
}

impl Catalogue {
    pub fn get(&self, name: &str) -> Option<&CatalogueEntry> {
        self.kernels.iter().find(|k| k.name == name)
    }
    pub fn names(&self) -> String {
        let names: Vec<_> = self.kernels.iter().map(|k| k.name.as_str()).collect();
        names.join(", ")
    }
}

pub(crate) fn is_package_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

pub(crate) fn is_version(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalogue_is_valid() {
        let c = catalogue().unwrap();
        assert_eq!(c.default, DEFAULT_KERNEL);
        let d = c.get(DEFAULT_KERNEL).unwrap();
        assert_eq!(d.suite, "bookworm");
        assert!(d.package.starts_with("linux-image-"));
        assert!(d.package.contains(&d.release));
    }

    #[test]
    fn catalogue_rejects_bad_entries() {
        let entry = |name: &str, sha: &str| {
            format!(
                "  - {{name: {name}, suite: s, package: p, version: v, release: r, sha256: {sha}}}\n"
            )
        };
        let ok = "a".repeat(64);
        let good = format!("default: k\nkernels:\n{}", entry("k", &ok));
        assert!(parse_catalogue(&good).is_ok());
        let bad_sha = format!("default: k\nkernels:\n{}", entry("k", "abc"));
        assert!(parse_catalogue(&bad_sha)
            .unwrap_err()
            .to_string()
            .contains("`k`"));
        let dup = format!(
            "default: k\nkernels:\n{}{}",
            entry("k", &ok),
            entry("k", &ok)
        );
        assert!(parse_catalogue(&dup).is_err());
        let no_default = format!("default: z\nkernels:\n{}", entry("k", &ok));
        assert!(parse_catalogue(&no_default).is_err());
        let slash = format!("default: a/b\nkernels:\n{}", entry("a/b", &ok));
        assert!(parse_catalogue(&slash).is_err());
    }

    #[test]
    fn catalogue_track_field() {
        let text = |track: &str| {
            format!(
                "default: k\nkernels:\n  - {{name: k, suite: s, package: p, version: v, \
                 release: r, sha256: {}, track: {track}}}\n",
                "a".repeat(64)
            )
        };
        let c = parse_catalogue(&text("linux-image-cloud-amd64")).unwrap();
        assert_eq!(
            c.kernels[0].track.as_deref(),
            Some("linux-image-cloud-amd64")
        );
        assert!(parse_catalogue(&text("bash")).is_err());
        assert!(catalogue()
            .unwrap()
            .kernels
            .iter()
            .all(|k| k.track.is_some()));
    }
}
