//! The kernel catalogue, `images/kernels.yaml`, compiled in so the binary
//! needs no source tree to know its kernels.
//!
//! Every entry names a kernel (`name`), what `uname -r` will say
//! (`release`), the sha256 of its `vmlinuz`, and where it comes from
//! (`source:`): a Debian package fetched through the host's apt, a vendor
//! RPM (a URL or a local file, itself sha256-pinned), or a local bzImage.
//! The flat Debian form of older catalogues (`suite`, `package`, `version`,
//! `track` beside `name`) is still read, as a Debian source.

use serde::Deserialize;

use crate::image::ImageError;

/// The catalogue kernel a scenario boots when it names none.
pub const DEFAULT_KERNEL: &str = "debian-bookworm-cloud-6.1";

const CATALOGUE_YAML: &str = include_str!("../../../../images/kernels.yaml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    pub default: String,
    pub kernels: Vec<CatalogueEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub name: String,
    /// `uname -r` of that kernel.
    pub release: String,
    /// sha256 of the `vmlinuz` itself (not of the package holding it).
    pub sha256: String,
    pub source: KernelSource,
}

/// Where a catalogue kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    Debian(DebianSource),
    Rpm(RpmSource),
    File(FileSource),
}

/// A Debian kernel package, fetched with `apt-get download` through the
/// host's own mirror (or a private apt setup for other suites).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    /// Debian suite (codename) the package comes from.
    pub suite: String,
    /// The package holding the kernel: `linux-image-<rel>-unsigned` up to
    /// 6.12, `linux-binary-<rel>` from 7.x on.
    pub package: String,
    /// Exact Debian version: `apt-get download package=version`.
    pub version: String,
    /// The Debian metapackage this entry follows (e.g.
    /// `linux-image-cloud-amd64`): when the pinned version has left the
    /// mirror, its current dependency is used instead, loudly (see
    /// [`super::PinPolicy`]). Without it a vanished pin is an error.
    #[serde(default)]
    pub track: Option<String>,
}

/// A vendor kernel RPM (e.g. a CentOS `kernel-<version>.x86_64.rpm`): its
/// `/boot/vmlinuz-*` is extracted in-process (no rpm tools needed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpmSource {
    /// `http(s)://` (fetched with curl or wget) or `file://`.
    #[serde(default)]
    pub url: Option<String>,
    /// A local copy of the RPM (tried before `url`).
    #[serde(default)]
    pub path: Option<String>,
    /// sha256 of the RPM file: checked before anything is extracted.
    pub sha256: String,
}

/// A bzImage on this machine, used in place and checked on every use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Absolute, `~/...`, or relative to the current directory.
    pub path: String,
}

impl CatalogueEntry {
    /// The Debian source, if the kernel comes from Debian.
    pub fn debian(&self) -> Option<&DebianSource> {
        match &self.source {
            KernelSource::Debian(d) => Some(d),
            _ => None,
        }
    }

    /// One line saying where the kernel comes from.
    pub fn origin(&self) -> String {
        match &self.source {
            KernelSource::Debian(d) => format!("debian {} {}={}", d.suite, d.package, d.version),
            KernelSource::Rpm(r) => format!(
                "rpm {}",
                r.path.as_deref().or(r.url.as_deref()).unwrap_or("?")
            ),
            KernelSource::File(f) => format!("file {}", f.path),
        }
    }
}

/// `source:` as written: a map with exactly one of these keys (serde_yaml
/// reads enums as `!tags`; a one-key map is what people write).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default)]
    debian: Option<DebianSource>,
    #[serde(default)]
    rpm: Option<RpmSource>,
    #[serde(default)]
    file: Option<FileSource>,
}

impl RawSource {
    fn into_source(self) -> Result<KernelSource, &'static str> {
        match (self.debian, self.rpm, self.file) {
            (Some(d), None, None) => Ok(KernelSource::Debian(d)),
            (None, Some(r), None) => Ok(KernelSource::Rpm(r)),
            (None, None, Some(f)) => Ok(KernelSource::File(f)),
            _ => Err("`source:` takes exactly one of debian, rpm, file"),
        }
    }
}

/// The YAML shape: the `source:` form, or the flat Debian form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    default: String,
    kernels: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    release: String,
    sha256: String,
    #[serde(default)]
    source: Option<RawSource>,
    #[serde(default)]
    suite: Option<String>,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    track: Option<String>,
}

impl RawEntry {
    fn into_entry(self) -> Result<CatalogueEntry, String> {
        let flat = [&self.suite, &self.package, &self.version, &self.track]
            .iter()
            .any(|f| f.is_some());
        let source = match (self.source, flat) {
            (Some(_), true) => {
                return Err(format!(
                    "entry `{}`: give either `source:` or the flat suite/package/version/track \
                     fields, not both",
                    self.name
                ))
            }
            (Some(s), false) => s
                .into_source()
                .map_err(|e| format!("entry `{}`: {e}", self.name))?,
            (None, _) => match (self.suite, self.package, self.version) {
                (Some(suite), Some(package), Some(version)) => KernelSource::Debian(DebianSource {
                    suite,
                    package,
                    version,
                    track: self.track,
                }),
                _ => {
                    return Err(format!(
                        "entry `{}`: no `source:` (debian, rpm or file), and not the flat \
                         Debian form (suite, package, version)",
                        self.name
                    ))
                }
            },
        };
        Ok(CatalogueEntry {
            name: self.name,
            release: self.release,
            sha256: self.sha256,
            source,
        })
    }
}

/// Parses and sanity-checks a catalogue text.
pub fn parse_catalogue(text: &str) -> Result<Catalogue, ImageError> {
    let raw: RawCatalogue =
        serde_yaml::from_str(text).map_err(|e| ImageError::Catalogue(e.to_string()))?;
    let bad = |m: String| Err(ImageError::Catalogue(m));
    let mut kernels = Vec::with_capacity(raw.kernels.len());
    for r in raw.kernels {
        kernels.push(r.into_entry().map_err(ImageError::Catalogue)?);
    }
    for (i, k) in kernels.iter().enumerate() {
        if !is_sha256_hex(&k.sha256) {
            return bad(format!(
                "entry `{}`: sha256 is not 64 lowercase hex digits",
                k.name
            ));
        }
        if kernels[..i].iter().any(|o| o.name == k.name) {
            return bad(format!("entry `{}` appears twice", k.name));
        }
        if k.name.contains('/') || k.name.starts_with('.') || k.name.is_empty() {
            return bad(format!(
                "entry `{}`: name must be a plain file name",
                k.name
            ));
        }
        if !is_release(&k.release) {
            return bad(format!(
                "entry `{}`: release `{}` is not a kernel release",
                k.name, k.release
            ));
        }
        match &k.source {
            KernelSource::Debian(d) => {
                if let Some(t) = &d.track {
                    if !t.starts_with("linux-image-") || !is_package_name(t) {
                        return bad(format!(
                            "entry `{}`: track `{t}` is not a linux-image-* package name",
                            k.name
                        ));
                    }
                }
                if !is_package_name(&d.package) || !is_version(&d.version) {
                    return bad(format!(
                        "entry `{}`: `{}={}` is not a Debian package and version",
                        k.name, d.package, d.version
                    ));
                }
            }
            KernelSource::Rpm(r) => {
                if !is_sha256_hex(&r.sha256) {
                    return bad(format!(
                        "entry `{}`: rpm sha256 is not 64 lowercase hex digits",
                        k.name
                    ));
                }
                if r.url.is_none() && r.path.is_none() {
                    return bad(format!(
                        "entry `{}`: an rpm source needs a `url` or a `path`",
                        k.name
                    ));
                }
                if let Some(u) = &r.url {
                    let scheme_ok = ["http://", "https://", "file://"]
                        .iter()
                        .any(|s| u.starts_with(s));
                    if !scheme_ok || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return bad(format!(
                            "entry `{}`: rpm url `{u}` is not an http(s):// or file:// URL",
                            k.name
                        ));
                    }
                }
            }
            KernelSource::File(f) => {
                if f.path.trim().is_empty() {
                    return bad(format!("entry `{}`: file path is empty", k.name));
                }
            }
        }
    }
    if !kernels.iter().any(|k| k.name == raw.default) {
        return bad(format!("default `{}` is not an entry", raw.default));
    }
    Ok(Catalogue {
        default: raw.default,
        kernels,
    })
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `uname -r`: also a directory and file name, so no separators.
pub(crate) fn is_release(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._~".contains(&b))
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
        let deb = d.debian().unwrap();
        assert_eq!(deb.suite, "bookworm");
        assert!(deb.package.starts_with("linux-image-"));
        assert!(deb.package.contains(&d.release));
        // Every Debian entry's package names its release, and 7.x comes
        // as linux-binary-<release> (there is no -unsigned package).
        for k in &c.kernels {
            let deb = k.debian().unwrap();
            assert!(deb.package.contains(&k.release), "{}", k.name);
            if k.release.starts_with("7.") {
                assert_eq!(deb.package, format!("linux-binary-{}", k.release));
            } else {
                assert!(deb.package.ends_with("-unsigned"), "{}", k.name);
            }
        }
        assert!(c.kernels.len() >= 8, "{}", c.names());
    }

    fn entry(name: &str, sha: &str) -> String {
        format!(
            "  - {{name: {name}, release: r, sha256: {sha}, source: {{debian: {{suite: s, \
             package: p, version: v}}}}}}\n"
        )
    }

    #[test]
    fn catalogue_rejects_bad_entries() {
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
        let bad_release = good.replace("release: r,", "release: ../x,");
        assert!(parse_catalogue(&bad_release).is_err());
    }

    #[test]
    fn flat_debian_form_still_reads() {
        let text = |track: &str| {
            format!(
                "default: k\nkernels:\n  - {{name: k, suite: s, package: p, version: v, \
                 release: r, sha256: {}, track: {track}}}\n",
                "a".repeat(64)
            )
        };
        let c = parse_catalogue(&text("linux-image-cloud-amd64")).unwrap();
        let d = c.kernels[0].debian().unwrap();
        assert_eq!(d.track.as_deref(), Some("linux-image-cloud-amd64"));
        assert_eq!((d.suite.as_str(), d.package.as_str()), ("s", "p"));
        assert!(parse_catalogue(&text("bash")).is_err());
        // Flat fields and `source:` together are ambiguous.
        let both = format!(
            "default: k\nkernels:\n  - {{name: k, suite: s, release: r, sha256: {}, \
             source: {{file: {{path: /k}}}}}}\n",
            "a".repeat(64)
        );
        assert!(parse_catalogue(&both)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        assert!(catalogue()
            .unwrap()
            .kernels
            .iter()
            .all(|k| k.debian().is_some_and(|d| d.track.is_some())));
    }

    #[test]
    fn rpm_and_file_sources() {
        let sha = "b".repeat(64);
        let text = format!(
            "default: f\nkernels:\n\
             - name: c6\n  release: 2.6.32-642.6.2.el6.x86_64\n  sha256: {sha}\n  source:\n    \
             rpm: {{url: 'https://vendor.example/kernel-2.6.32.rpm', sha256: {sha}}}\n\
             - name: f\n  release: 6.6.0-custom\n  sha256: {sha}\n  source:\n    \
             file: {{path: /srv/bzImage}}\n"
        );
        let c = parse_catalogue(&text).unwrap();
        assert!(matches!(&c.kernels[0].source, KernelSource::Rpm(r) if r.sha256 == sha));
        assert_eq!(c.kernels[1].origin(), "file /srv/bzImage");
        let no_where = text.replace("url: 'https://vendor.example/kernel-2.6.32.rpm', ", "");
        assert!(parse_catalogue(&no_where)
            .unwrap_err()
            .to_string()
            .contains("`url` or a `path`"));
        let ftp = text.replace("https://", "ftp://");
        assert!(parse_catalogue(&ftp).is_err());
        let unknown = text.replace("file: {path", "tarball: {path");
        assert!(parse_catalogue(&unknown).is_err());
    }
}
