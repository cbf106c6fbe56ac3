//! Guest kernels: a small pinned catalogue (`images/kernels.yaml`) fetched
//! through the host's own Debian mirror, or a bring-your-own `vmlinuz`.
//!
//! Catalogue kernels are cached outside the tree (see [`super::cache_dir`])
//! and their sha256 is checked on every use, so a run always says exactly
//! which kernel it booted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ImageError;

pub const DEFAULT_KERNEL: &str = "debian-bookworm-cloud-6.1";

/// Compiled in so the binary needs no source tree to know its kernels.
const CATALOGUE_YAML: &str = include_str!("../../../images/kernels.yaml");

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
}

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    pub path: PathBuf,
    /// Catalogue name, or the file name for a bring-your-own kernel.
    pub name: String,
    /// Verified against the catalogue, or just computed for your own file.
    pub sha256: String,
    /// e.g. `6.1.0-50-cloud-amd64`; `unknown` if a bring-your-own image
    /// has no readable version string.
    pub release: String,
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

fn is_sha256_hex(s: &str) -> bool {
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
    fn names(&self) -> String {
        let names: Vec<_> = self.kernels.iter().map(|k| k.name.as_str()).collect();
        names.join(", ")
    }
}

/// `<cache>/kernels/<name>/vmlinuz`.
pub fn cached_kernel_path(name: &str) -> Result<PathBuf, ImageError> {
    Ok(super::cache_dir()?
        .join("kernels")
        .join(name)
        .join("vmlinuz"))
}

/// A catalogue name (fetched and cached on first use, verified every time)
/// or a path to your own vmlinuz (no checksum to verify against).
pub fn resolve_kernel(spec: &str) -> Result<KernelImage, ImageError> {
    let cat = catalogue()?;
    let spec = if spec.is_empty() {
        cat.default.as_str()
    } else {
        spec
    };
    if let Some(entry) = cat.get(spec) {
        return ensure_cached(entry);
    }
    let path = Path::new(spec);
    if path.is_file() {
        return own_kernel(path);
    }
    Err(ImageError::UnknownKernel {
        spec: spec.to_string(),
        known: cat.names(),
    })
}

fn own_kernel(path: &Path) -> Result<KernelImage, ImageError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ImageError::io(format!("read kernel {}", path.display()), e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let release = bzimage_release(&bytes)
        .or_else(|| file_name.strip_prefix("vmlinuz-").map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    Ok(KernelImage {
        path: path.to_path_buf(),
        name: file_name,
        sha256: hex(&Sha256::digest(&bytes)),
        release,
    })
}

/// The release string from an x86 bzImage's setup header (`kernel_version`
/// field), e.g. `6.1.0-50-cloud-amd64`. None if it is not a bzImage.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*image.get(0x20E)?, *image.get(0x20F)?]) as usize;
    if ptr == 0 {
        return None;
    }
    let s = image.get(ptr + 0x200..)?;
    let end = s.iter().take(256).position(|&b| b == 0)?;
    let text = std::str::from_utf8(&s[..end]).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

fn ensure_cached(entry: &CatalogueEntry) -> Result<KernelImage, ImageError> {
    let path = cached_kernel_path(&entry.name)?;
    if !path.is_file() {
        fetch(entry, &path)?;
    }
    verify_cached(entry, path)
}

fn verify_cached(entry: &CatalogueEntry, path: PathBuf) -> Result<KernelImage, ImageError> {
    let actual = sha256_file(&path)?;
    if actual != entry.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path,
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(KernelImage {
        path,
        name: entry.name.clone(),
        sha256: actual,
        release: entry.release.clone(),
    })
}

pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let io = |e| ImageError::io(format!("hash {}", path.display()), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads, extracts and verifies `entry`, then renames it to `dest`.
/// All scratch lives in a temp dir next to `dest` (same filesystem, so the
/// final rename is atomic) that is removed on every path.
fn fetch(entry: &CatalogueEntry, dest: &Path) -> Result<(), ImageError> {
    let fail = |detail: String| ImageError::Fetch {
        name: entry.name.clone(),
        detail,
    };
    let parent = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| ImageError::io(format!("create {}", parent.display()), e))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(parent)
        .map_err(|e| ImageError::io(format!("create temp dir in {}", parent.display()), e))?;
    let deb = download(entry, work.path())?;
    let vmlinuz = extract_vmlinuz(&deb, &work.path().join("x")).map_err(|e| fail(e.to_string()))?;
    let found = vmlinuz.file_name().unwrap_or_default().to_string_lossy();
    if found != format!("vmlinuz-{}", entry.release) {
        return Err(fail(format!(
            "{} contains {found}, catalogue says release {}",
            entry.package, entry.release
        )));
    }
    let actual = sha256_file(&vmlinuz)?;
    if actual != entry.sha256 {
        return Err(ImageError::ChecksumMismatch {
            name: entry.name.clone(),
            path: PathBuf::from(format!("{}={} ({found})", entry.package, entry.version)),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    std::fs::rename(&vmlinuz, dest)
        .map_err(|e| ImageError::io(format!("move kernel into {}", dest.display()), e))
}

/// Gets the .deb: with the host's own apt when its sources carry the suite,
/// else (or if that fails) with a private apt setup for just that suite.
fn download(entry: &CatalogueEntry, work: &Path) -> Result<PathBuf, ImageError> {
    let fail = |detail: String| ImageError::Fetch {
        name: entry.name.clone(),
        detail,
    };
    let pkg = format!("{}={}", entry.package, entry.version);
    let debs = work.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| ImageError::io("create download dir", e))?;
    let sandbox = sandbox_opts();

    let mut host_error = None;
    let host_has_suite = host_sources().iter().any(|s| {
        s.enabled && s.types.iter().any(|t| t == "deb") && s.suites.contains(&entry.suite)
    });
    if host_has_suite {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(&debs)
            .args(&sandbox)
            .args(["download", &pkg]);
        match run(&mut cmd, &format!("apt-get download {pkg}")) {
            Ok(_) => return find_deb(&debs).map_err(fail),
            Err(e) => host_error = Some(e.to_string()),
        }
    }

    let mirror = mirror_uri()?;
    let apt = work.join("apt");
    for d in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(d)).map_err(|e| ImageError::io("create apt dirs", e))?;
    }
    let keyring = Path::new(DEBIAN_KEYRING);
    let list = private_sources_list(
        &mirror,
        &entry.suite,
        keyring.is_file().then_some(DEBIAN_KEYRING),
    );
    std::fs::write(apt.join("sources.list"), list)
        .map_err(|e| ImageError::io("write private sources.list", e))?;
    let opts = private_apt_opts(&apt);
    let context = |e: ImageError| {
        let host = host_error
            .as_deref()
            .map(|h| format!("; host apt also failed: {h}"))
            .unwrap_or_default();
        fail(format!("{e}{host}"))
    };
    run(
        Command::new("apt-get")
            .args(&opts)
            .args(&sandbox)
            .arg("update"),
        &format!("apt-get update (private sources for {})", entry.suite),
    )
    .map_err(context)?;
    run(
        Command::new("apt-get")
            .current_dir(&debs)
            .args(&opts)
            .args(&sandbox)
            .args(["download", &pkg]),
        &format!("apt-get download {pkg} (suite {})", entry.suite),
    )
    .map_err(context)?;
    find_deb(&debs).map_err(fail)
}

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Root's apt drops to user `_apt`, which cannot write our 0700 temp dir;
/// say so up front instead of getting a warning for every download.
fn sandbox_opts() -> Vec<String> {
    // Every run has a time limit, fetching included: a stalled mirror
    // connection fails after 30 s instead of hanging the run.
    let mut v: Vec<String> = [
        "-o",
        "Acquire::http::Timeout=30",
        "-o",
        "Acquire::https::Timeout=30",
        "-o",
        "Acquire::Retries=2",
    ]
    .map(String::from)
    .to_vec();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        v.extend(["-o".into(), "APT::Sandbox::User=root".into()]);
    }
    v
}

/// A one-suite sources.list for the private apt setup.
pub fn private_sources_list(mirror: &str, suite: &str, keyring: Option<&str>) -> String {
    let opts = keyring
        .map(|k| format!("[signed-by={k}] "))
        .unwrap_or_default();
    format!("deb {opts}{mirror} {suite} main\n")
}

/// apt options that confine it to `dir`: its own sources, lists and cache,
/// no host sources.list.d and no host package status.
pub fn private_apt_opts(dir: &Path) -> Vec<String> {
    let d = dir.display();
    [
        format!("Dir::Etc::SourceList={d}/sources.list"),
        "Dir::Etc::SourceParts=-".to_string(),
        format!("Dir::State::Lists={d}/lists"),
        format!("Dir::Cache={d}/cache"),
        "Dir::State::status=/dev/null".to_string(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect()
}

fn find_deb(dir: &Path) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download left no .deb in {}", dir.display()))
}

/// Runs a command, capturing output; failure carries the stderr tail.
fn run(cmd: &mut Command, shown: &str) -> Result<Output, ImageError> {
    let out = cmd.output().map_err(|e| ImageError::Command {
        cmd: shown.to_string(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(out);
    }
    Err(ImageError::Command {
        cmd: shown.to_string(),
        detail: format!("{}: {}", out.status, tail(&out.stderr, 5)),
    })
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<_> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x ./boot/vmlinuz-*`: only the
/// kernel is unpacked, not the ~100 MB of modules.
fn extract_vmlinuz(deb: &Path, into: &Path) -> Result<PathBuf, ImageError> {
    std::fs::create_dir_all(into).map_err(|e| ImageError::io("create extract dir", e))?;
    let spawn_err = |cmd: &str| {
        let cmd = cmd.to_string();
        move |e: std::io::Error| ImageError::Command {
            cmd,
            detail: e.to_string(),
        }
    };
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err("dpkg-deb --fsys-tarfile"))?;
    let pipe = dpkg.stdout.take().expect("piped stdout");
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .args(["--wildcards", "./boot/vmlinuz-*"])
        .stdin(pipe)
        .output();
    let dpkg_out = dpkg.wait_with_output().map_err(spawn_err("dpkg-deb"))?;
    let tar = tar.map_err(spawn_err("tar -x"))?;
    if !dpkg_out.status.success() {
        return Err(ImageError::Command {
            cmd: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
            detail: tail(&dpkg_out.stderr, 5),
        });
    }
    if !tar.status.success() {
        return Err(ImageError::Command {
            cmd: format!("tar -x ./boot/vmlinuz-* from {}", deb.display()),
            detail: tail(&tar.stderr, 5),
        });
    }
    let boot = into.join("boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .map_err(|e| ImageError::io(format!("read {}", boot.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(ImageError::Command {
            cmd: format!("extract vmlinuz from {}", deb.display()),
            detail: format!("expected one boot/vmlinuz-*, found {n}"),
        }),
    }
}

// ---- The host's apt configuration -------------------------------------

/// One source entry, from either format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AptSource {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub enabled: bool,
}

/// One-line format (`sources.list`, `*.list`):
/// `deb [opt=val ...] URI SUITE [COMPONENT...]`.
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((ty, mut rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if ty != "deb" && ty != "deb-src" {
            continue;
        }
        rest = rest.trim_start();
        // Options may contain spaces, so skip to the closing bracket.
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace().map(str::to_string);
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(AptSource {
            types: vec![ty.to_string()],
            uris: vec![uri],
            suites: vec![suite],
            components: words.collect(),
            enabled: true,
        });
    }
    out
}

/// deb822 format (`*.sources`): blank-line separated stanzas of
/// `Field: value` with indented continuation lines.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let flush = |fields: &mut Vec<(String, String)>, out: &mut Vec<AptSource>| {
        if fields.is_empty() {
            return;
        }
        let get = |k: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(k))
                .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
                .collect()
        };
        let enabled = !matches!(get("Enabled").first(), Some(v) if v.eq_ignore_ascii_case("no"));
        out.push(AptSource {
            types: get("Types"),
            uris: get("URIs"),
            suites: get("Suites"),
            components: get("Components"),
            enabled,
        });
        fields.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields, &mut out);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields, &mut out);
    out
}

/// Debian codenames and aliases: what tells a Debian archive apart from
/// third-party repositories (whose suites are e.g. `cloud-sdk-bookworm`).
const DEBIAN_SUITES: [&str; 12] = [
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "buster",
];

/// The first enabled binary (`deb`) http(s) source that carries a plain
/// Debian suite with `main`: the main archive, not `-security`/`-updates`.
pub fn pick_mirror(sources: &[AptSource]) -> Option<String> {
    sources
        .iter()
        .filter(|s| s.enabled && s.types.iter().any(|t| t == "deb"))
        .filter(|s| s.components.iter().any(|c| c == "main"))
        .filter(|s| s.suites.iter().any(|x| DEBIAN_SUITES.contains(&x.as_str())))
        .flat_map(|s| s.uris.iter())
        .find(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|u| u.trim_end_matches('/').to_string())
}

/// Every source in the host's apt configuration (`/etc/apt/sources.list`,
/// `sources.list.d/*.list` and `*.sources`); unreadable files are skipped.
pub fn host_sources() -> Vec<AptSource> {
    sources_in(Path::new("/etc/apt"))
}

fn sources_in(etc: &Path) -> Vec<AptSource> {
    let mut out = Vec::new();
    if let Ok(t) = std::fs::read_to_string(etc.join("sources.list")) {
        out.extend(parse_one_line(&t));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(etc.join("sources.list.d"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort(); // apt reads them in lexical order
    for f in files {
        let Ok(t) = std::fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|x| x.to_str()) {
            Some("list") => out.extend(parse_one_line(&t)),
            Some("sources") => out.extend(parse_deb822(&t)),
            _ => {} // e.g. *.disabled, *.save: apt ignores them too
        }
    }
    out
}

/// The Debian mirror URI the host's apt already uses (`$OOMLAB_DEBIAN_MIRROR`
/// overrides). Deliberately never a hard-coded host.
pub fn mirror_uri() -> Result<String, ImageError> {
    if let Ok(m) = std::env::var("OOMLAB_DEBIAN_MIRROR") {
        if !m.trim().is_empty() {
            return Ok(m.trim().trim_end_matches('/').to_string());
        }
    }
    pick_mirror(&host_sources()).ok_or_else(|| {
        ImageError::NoMirror(
            "no enabled `deb` http(s) entry with a Debian suite and `main` in \
             /etc/apt/sources.list or /etc/apt/sources.list.d/; set OOMLAB_DEBIAN_MIRROR"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
";

    #[test]
    fn deb822_stanzas() {
        let s = parse_deb822(DEB822);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].suites, ["bookworm-security"]);
        assert_eq!(s[1].types, ["deb", "deb-src"]);
        assert_eq!(s[1].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(s[1].components, ["main", "contrib"]);
        assert!(s[1].enabled);
        assert_eq!(
            pick_mirror(&s).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn deb822_disabled_is_skipped() {
        let text = "Enabled: no\nTypes: deb\nURIs: http://a.example/debian\n\
                    Suites: bookworm\nComponents: main\n";
        let s = parse_deb822(text);
        assert!(!s[0].enabled);
        assert_eq!(pick_mirror(&s), None);
    }

    #[test]
    fn one_line_with_options_and_comments() {
        let text = "\
# deb http://old.example/debian buster main
deb [arch=amd64 signed-by=/k.gpg] https://repo.example/apt cloud-sdk-bookworm main
deb-src http://src.example/debian bookworm main
deb http://mirror.example/debian bookworm main non-free-firmware # trailing
deb http://security.example/debian-security bookworm-security main
";
        let s = parse_one_line(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].uris, ["https://repo.example/apt"]);
        assert_eq!(s[0].suites, ["cloud-sdk-bookworm"]);
        assert_eq!(s[2].components, ["main", "non-free-firmware"]);
        // Third-party suites and deb-src lines are not the Debian mirror.
        assert_eq!(
            pick_mirror(&s).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn sources_dir_reads_both_formats_and_ignores_others() {
        let d = tempfile::tempdir().unwrap();
        let sl = d.path().join("sources.list.d");
        std::fs::create_dir(&sl).unwrap();
        std::fs::write(
            sl.join("a.list.disabled"),
            "deb http://x.example/debian sid main\n",
        )
        .unwrap();
        std::fs::write(sl.join("debian.sources"), DEB822).unwrap();
        let s = sources_in(d.path());
        assert_eq!(s.len(), 2);
        assert_eq!(
            pick_mirror(&s).as_deref(),
            Some("http://mirror.example/debian")
        );
        std::fs::write(
            d.path().join("sources.list"),
            "deb http://first.example/debian trixie main\n",
        )
        .unwrap();
        assert_eq!(
            pick_mirror(&sources_in(d.path())).as_deref(),
            Some("http://first.example/debian")
        );
    }

    #[test]
    fn private_apt_setup_text() {
        assert_eq!(
            private_sources_list("http://m.example/debian", "trixie", Some("/k.gpg")),
            "deb [signed-by=/k.gpg] http://m.example/debian trixie main\n"
        );
        assert_eq!(
            private_sources_list("http://m.example/debian", "bullseye", None),
            "deb http://m.example/debian bullseye main\n"
        );
        let o = private_apt_opts(Path::new("/w"));
        assert!(o.contains(&"Dir::Etc::SourceList=/w/sources.list".to_string()));
        assert!(o.contains(&"Dir::Etc::SourceParts=-".to_string()));
        assert!(o.contains(&"Dir::State::Lists=/w/lists".to_string()));
        assert!(o.contains(&"Dir::Cache=/w/cache".to_string()));
        assert!(o.chunks(2).all(|c| c[0] == "-o"));
    }

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

    fn fake_bzimage(version: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        let at = 0x600usize;
        b[0x20E..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        b[at..at + version.len()].copy_from_slice(version.as_bytes());
        b
    }

    #[test]
    fn bzimage_version_string() {
        let img = fake_bzimage("6.1.0-50-cloud-amd64 (debian-kernel@lists) #1 SMP");
        assert_eq!(
            bzimage_release(&img).as_deref(),
            Some("6.1.0-50-cloud-amd64")
        );
        assert_eq!(bzimage_release(b"not a kernel"), None);
        assert_eq!(bzimage_release(&[0u8; 0x1000]), None);
    }

    #[test]
    fn own_kernel_needs_no_checksum() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vmlinuz-2.6.32-custom");
        std::fs::write(&p, b"no header").unwrap();
        let k = resolve_kernel(p.to_str().unwrap()).unwrap();
        assert_eq!(k.release, "2.6.32-custom");
        assert_eq!(k.name, "vmlinuz-2.6.32-custom");
        assert_eq!(k.sha256.len(), 64);
        let e = resolve_kernel("no-such-kernel").unwrap_err().to_string();
        assert!(
            e.contains("no-such-kernel") && e.contains(DEFAULT_KERNEL),
            "{e}"
        );
    }

    #[test]
    fn cached_kernel_is_verified() {
        // Wrong bytes in the cache must fail loudly, naming entry and file.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("vmlinuz");
        std::fs::write(&path, b"tampered").unwrap();
        let mut entry = CatalogueEntry {
            name: "t".into(),
            suite: "bookworm".into(),
            package: "p".into(),
            version: "1".into(),
            release: "r".into(),
            sha256: "0".repeat(64),
        };
        let e = verify_cached(&entry, path.clone()).unwrap_err().to_string();
        assert!(e.contains("`t`") && e.contains("vmlinuz"), "{e}");
        entry.sha256 = sha256_file(&path).unwrap();
        let k = verify_cached(&entry, path.clone()).unwrap();
        assert_eq!((k.path, k.release), (path, "r".to_string()));
    }
}
