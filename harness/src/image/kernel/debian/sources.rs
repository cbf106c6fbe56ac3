//! The host's apt configuration (`/etc/apt/sources.list`, `*.list`,
//! `*.sources`): where the Debian mirror is. Never a hard-coded host.

use std::path::{Path, PathBuf};

use crate::image::ImageError;

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

/// Like [`pick_mirror`], for the security archive: the first enabled
/// binary http(s) source carrying `<Debian suite>-security` with `main`.
pub fn pick_security_mirror(sources: &[AptSource]) -> Option<String> {
    let is_security = |x: &String| {
        x.strip_suffix("-security")
            .is_some_and(|base| DEBIAN_SUITES.contains(&base))
    };
    sources
        .iter()
        .filter(|s| s.enabled && s.types.iter().any(|t| t == "deb"))
        .filter(|s| s.components.iter().any(|c| c == "main"))
        .filter(|s| s.suites.iter().any(is_security))
        .flat_map(|s| s.uris.iter())
        .find(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|u| u.trim_end_matches('/').to_string())
}

/// The security mirror the host's apt uses (`$OOMLAB_DEBIAN_SECURITY_MIRROR`
/// overrides); None if it names none, and then `-security` is left out.
pub fn security_mirror_uri() -> Option<String> {
    if let Ok(m) = std::env::var("OOMLAB_DEBIAN_SECURITY_MIRROR") {
        if !m.trim().is_empty() {
            return Some(m.trim().trim_end_matches('/').to_string());
        }
    }
    pick_security_mirror(&host_sources())
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
    fn security_mirror_from_host_sources() {
        let s = parse_deb822(DEB822);
        assert_eq!(
            pick_security_mirror(&s).as_deref(),
            Some("http://mirror.example/debian-security")
        );
        let one = parse_one_line(
            "deb http://m.example/debian bookworm main\n\
             deb http://t.example/apt cloud-sdk-security main\n\
             deb http://s.example/debian-security/ trixie-security main contrib\n",
        );
        assert_eq!(
            pick_security_mirror(&one).as_deref(),
            Some("http://s.example/debian-security")
        );
        assert_eq!(pick_security_mirror(&one[..2]), None);
    }
}
