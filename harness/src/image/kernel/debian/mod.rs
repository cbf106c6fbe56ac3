//! Catalogue kernels from Debian: `apt-get download` through the host's own
//! mirror, or a private apt setup (its own sources, lists and cache) for
//! suites the host does not carry; the kernel is extracted from the `.deb`.

pub mod sources;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::catalogue::{is_package_name, is_release, is_version, DebianSource};
use crate::image::ImageError;
use sources::{host_sources, mirror_uri, security_mirror_uri};

/// From `apt-cache depends METAPACKAGE`: the first `linux-image-*` it
/// depends on (virtual `<...>` names skipped).
pub fn kernel_dependency(depends_output: &str) -> Option<String> {
    depends_output.lines().find_map(|line| {
        let line = line.trim().trim_start_matches('|');
        let name = line.strip_prefix("Depends:")?.trim();
        let name = name.split_whitespace().next()?;
        (name.starts_with("linux-image-") && !name.starts_with('<')).then(|| name.to_string())
    })
}

/// From `apt-cache depends linux-image-<rel>` (7.x, an image package that
/// holds no kernel): the `linux-binary-*` package that does.
pub fn binary_dependency(depends_output: &str) -> Option<String> {
    depends_output.lines().find_map(|line| {
        let line = line.trim().trim_start_matches('|');
        let name = line.strip_prefix("Depends:")?.trim();
        let name = name.split_whitespace().next()?;
        (name.starts_with("linux-binary-") && is_package_name(name)).then(|| name.to_string())
    })
}

/// From `apt-cache show --no-all-versions PACKAGE`: its `Package` and
/// `Version` (first stanza).
pub fn package_and_version(show_output: &str) -> Option<(String, String)> {
    let stanza = show_output.split("\n\n").next()?;
    let field = |name: &str| {
        stanza.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim().to_string())
        })
    };
    let (p, v) = (field("Package")?, field("Version")?);
    (is_package_name(&p) && is_version(&v)).then_some((p, v))
}

// ---- Running apt ----------------------------------------------------------

/// apt for one suite: the host's own configuration, or a private one (its
/// own sources, lists and cache) in a directory.
pub(crate) enum Apt {
    Host,
    Private(PathBuf),
}

impl Apt {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        if let Apt::Private(dir) = self {
            c.args(private_apt_opts(dir));
        }
        c.args(sandbox_opts());
        c
    }

    fn label(&self) -> &'static str {
        match self {
            Apt::Host => "host apt",
            Apt::Private(_) => "private apt",
        }
    }

    /// `apt-get download SPEC` into a fresh `dir`; the .deb it left.
    pub(crate) fn download(&self, spec: &str, dir: &Path) -> Result<PathBuf, ImageError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| ImageError::io("clear download dir", e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| ImageError::io("create download dir", e))?;
        run(
            self.cmd("apt-get")
                .current_dir(dir)
                .args(["download", spec]),
            &format!("apt-get download {spec}"),
        )?;
        find_deb(dir).map_err(|detail| ImageError::Command {
            cmd: format!("apt-get download {spec}"),
            detail,
        })
    }

    /// The package (and its candidate version) that `track` selects now,
    /// the `-unsigned` build preferred: signed images carry a signature
    /// that changes their bytes, not their code. From 7.x on the image
    /// package `linux-image-<rel>` holds no kernel and there is no
    /// `-unsigned` one: the kernel is in the `linux-binary-<rel>` it depends
    /// on.
    pub(crate) fn current_kernel_package(
        &self,
        track: &str,
    ) -> Result<(String, String), ImageError> {
        let shown = format!("apt-cache depends {track}");
        let out = run(self.cmd("apt-cache").args(["depends", track]), &shown)?;
        let dep = kernel_dependency(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
            ImageError::Command {
                cmd: shown,
                detail: "names no linux-image-* dependency".into(),
            }
        })?;
        let mut names = Vec::new();
        if !dep.ends_with("-unsigned") {
            names.push(format!("{dep}-unsigned"));
        }
        let binary = self
            .cmd("apt-cache")
            .args(["depends", &dep])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| binary_dependency(&String::from_utf8_lossy(&o.stdout)));
        names.extend(binary);
        names.push(dep.clone());
        for name in &names {
            let out = self
                .cmd("apt-cache")
                .args(["show", "--no-all-versions", name])
                .output();
            let found = out
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| package_and_version(&String::from_utf8_lossy(&o.stdout)));
            if let Some(pv) = found {
                return Ok(pv);
            }
        }
        Err(ImageError::Command {
            cmd: format!("apt-cache show --no-all-versions {}", names.join(" / ")),
            detail: format!("no candidate version for what `{track}` depends on"),
        })
    }
}

/// `apt-get download PACKAGE` (the candidate version) with the host's own
/// apt configuration into a fresh `dir`. When the host's package lists do
/// not know it (a fresh machine), they are refreshed once, as root.
pub fn download_host_package(package: &str, dir: &Path) -> Result<PathBuf, ImageError> {
    match Apt::Host.download(package, dir) {
        Ok(deb) => Ok(deb),
        // SAFETY: geteuid has no preconditions and cannot fail.
        Err(first) if unsafe { libc::geteuid() } == 0 => {
            run(
                Apt::Host.cmd("apt-get").arg("update"),
                "apt-get update (host sources)",
            )
            .map_err(|e| ImageError::Fetch {
                name: package.to_string(),
                detail: format!("{first}; then {e}"),
            })?;
            Apt::Host.download(package, dir)
        }
        Err(e) => Err(e),
    }
}

/// The apt setups to try for one entry, in order: the host's own when its
/// sources carry the suite, then a private one (set up on first use).
pub(crate) struct AptSetups<'a> {
    name: &'a str,
    entry: &'a DebianSource,
    work: &'a Path,
    private: Option<Result<Apt, String>>,
}

impl<'a> AptSetups<'a> {
    pub(crate) fn new(name: &'a str, entry: &'a DebianSource, work: &'a Path) -> Self {
        AptSetups {
            name,
            entry,
            work,
            private: None,
        }
    }

    /// `f` with each setup until one succeeds; else every failure, joined.
    pub(crate) fn try_each<T>(
        &mut self,
        mut f: impl FnMut(&Apt) -> Result<T, ImageError>,
    ) -> Result<T, String> {
        let mut errors = Vec::new();
        if host_carries(&self.entry.suite) {
            match f(&Apt::Host) {
                Ok(t) => return Ok(t),
                Err(e) => errors.push(format!("host apt: {e}")),
            }
        }
        let (name, entry, work) = (self.name, self.entry, self.work);
        let private = self.private.get_or_insert_with(|| {
            private_apt(name, entry, &work.join("apt")).map_err(|e| e.to_string())
        });
        match private {
            Ok(apt) => match f(apt) {
                Ok(t) => return Ok(t),
                Err(e) => errors.push(format!("{}: {e}", apt.label())),
            },
            Err(e) => errors.push(format!("private apt: {e}")),
        }
        Err(errors.join("; "))
    }
}

fn host_carries(suite: &str) -> bool {
    host_sources().iter().any(|s| {
        s.enabled && s.types.iter().any(|t| t == "deb") && s.suites.iter().any(|x| x == suite)
    })
}

/// A private apt setup in `dir` for the entry's suite, its `-updates` and
/// (where the host names a security mirror) `-security`, lists updated.
/// Suites the mirror lacks only cost a note, as long as the suite's own
/// `main` list arrived.
fn private_apt(name: &str, entry: &DebianSource, dir: &Path) -> Result<Apt, ImageError> {
    let mirror = mirror_uri()?;
    let security = security_mirror_uri();
    for d in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| ImageError::io("create apt dirs", e))?;
    }
    let keyring = Path::new(DEBIAN_KEYRING)
        .is_file()
        .then_some(DEBIAN_KEYRING);
    let list = private_sources_list(&mirror, security.as_deref(), &entry.suite, keyring);
    std::fs::write(dir.join("sources.list"), list)
        .map_err(|e| ImageError::io("write private sources.list", e))?;
    let apt = Apt::Private(dir.to_path_buf());
    let shown = format!("apt-get update (private sources for {})", entry.suite);
    // apt-get update exits 100 when a listed suite 404s (e.g. no
    // `-updates`), yet 0 with mere warnings when the mirror is unreachable:
    // what matters is whether the suite's own `main` list arrived.
    let result = run(apt.cmd("apt-get").arg("update"), &shown);
    let names: Vec<String> = std::fs::read_dir(dir.join("lists"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    match result {
        Ok(_) if main_list_arrived(&names, &entry.suite) => {}
        Ok(out) => {
            return Err(ImageError::Command {
                cmd: shown,
                detail: format!(
                    "no `{} main` package list arrived: {}",
                    entry.suite,
                    tail(&out.stderr, 3)
                ),
            })
        }
        Err(e) if main_list_arrived(&names, &entry.suite) => eprintln!(
            "oomlab: note: kernel `{name}`: {e}; continuing, the `{} main` list arrived",
            entry.suite
        ),
        Err(e) => return Err(e),
    }
    Ok(apt)
}

/// Whether apt's lists directory (file names) holds the `main` package
/// list of `suite` itself (not of `suite-updates`/`suite-security`).
pub fn main_list_arrived(list_files: &[String], suite: &str) -> bool {
    let needle = format!("_dists_{suite}_main_binary-");
    list_files
        .iter()
        .any(|n| n.contains(&needle) && n.contains("_Packages"))
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

/// The private apt setup's sources.list: `suite` and `suite-updates` from
/// the mirror, `suite-security` from the security mirror if there is one.
/// Backports suites and sid/unstable have neither (asking only costs a
/// 404 and a note on every fetch): they get their own line alone.
pub fn private_sources_list(
    mirror: &str,
    security: Option<&str>,
    suite: &str,
    keyring: Option<&str>,
) -> String {
    let opts = keyring
        .map(|k| format!("[signed-by={k}] "))
        .unwrap_or_default();
    let mut s = format!("deb {opts}{mirror} {suite} main\n");
    if suite.ends_with("-backports") || matches!(suite, "sid" | "unstable" | "experimental") {
        return s;
    }
    s.push_str(&format!("deb {opts}{mirror} {suite}-updates main\n"));
    if let Some(sec) = security {
        s.push_str(&format!("deb {opts}{sec} {suite}-security main\n"));
    }
    s
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

/// What a kernel package held: the image, its release, and (when the
/// package ships it) the kernel's build configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub vmlinuz: PathBuf,
    pub release: String,
    pub config: Option<PathBuf>,
}

/// Where Debian puts a kernel and its config: `boot/vmlinuz-<rel>` and
/// `boot/config-<rel>` up to 6.12, `usr/lib/modules/<rel>/vmlinuz` (in
/// `linux-binary-<rel>`) and `usr/lib/modules/<rel>/config` (in
/// `linux-base-<rel>`) from 7.x on.
const KERNEL_MEMBERS: [&str; 4] = [
    "./boot/vmlinuz-*",
    "./boot/config-*",
    "./usr/lib/modules/*/vmlinuz",
    "./usr/lib/modules/*/config",
];

/// tar's stderr when some of the patterns matched nothing, and nothing
/// else went wrong: every line is a "Not found in archive" or the closing
/// "Exiting with failure status".
pub fn only_missing_members(stderr: &str) -> bool {
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some()
        && lines.all(|l| {
            l.contains("Not found in archive")
                || l.contains("Exiting with failure status due to previous errors")
        })
}

/// `(release, path)` of each kernel image, and of each config.
pub type Found = (Vec<(String, PathBuf)>, Vec<(String, PathBuf)>);

/// Kernel and config files found under an extraction root, with their
/// releases: `(release, path)`.
pub fn kernel_files(root: &Path) -> Found {
    let mut kernels = Vec::new();
    let mut configs = Vec::new();
    let list = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    for p in list(&root.join("boot")) {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Some(rel) = name.strip_prefix("vmlinuz-") {
            kernels.push((rel.to_string(), p.clone()));
        } else if let Some(rel) = name.strip_prefix("config-") {
            configs.push((rel.to_string(), p.clone()));
        }
    }
    for d in list(&root.join("usr/lib/modules")) {
        let rel = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if d.join("vmlinuz").is_file() {
            kernels.push((rel.clone(), d.join("vmlinuz")));
        }
        if d.join("config").is_file() {
            configs.push((rel, d.join("config")));
        }
    }
    kernels.retain(|(r, _)| is_release(r));
    configs.retain(|(r, _)| is_release(r));
    (kernels, configs)
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x` of the kernel and its config
/// only, not the ~100 MB of modules. The package may hold no kernel (7.x
/// `linux-base-*` holds only the config): `Ok` with what was there.
pub(crate) fn extract_members(deb: &Path, into: &Path) -> Result<Found, ImageError> {
    extract_from_deb(deb, into, &KERNEL_MEMBERS)?;
    Ok(kernel_files(into))
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x --wildcards PATTERNS...` into
/// `into`: only the members asked for are unpacked (a kernel package is
/// ~100 MB of modules). Patterns that match nothing are not an error (the
/// caller checks what it got).
pub(crate) fn extract_from_deb(
    deb: &Path,
    into: &Path,
    patterns: &[&str],
) -> Result<(), ImageError> {
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
        .arg("--wildcards")
        .args(patterns)
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
    // Patterns that match nothing make tar exit 2; that alone is fine.
    if !tar.status.success() && !only_missing_members(&String::from_utf8_lossy(&tar.stderr)) {
        return Err(ImageError::Command {
            cmd: format!("tar -x {} from {}", patterns.join(" "), deb.display()),
            detail: tail(&tar.stderr, 5),
        });
    }
    Ok(())
}

/// The kernel of a kernel package (exactly one), and its config when the
/// same package ships it.
pub(crate) fn extract_kernel(deb: &Path, into: &Path) -> Result<Extracted, ImageError> {
    let (mut kernels, configs) = extract_members(deb, into)?;
    if kernels.len() != 1 {
        return Err(ImageError::Command {
            cmd: format!("extract vmlinuz from {}", deb.display()),
            detail: format!(
                "expected one boot/vmlinuz-* or usr/lib/modules/*/vmlinuz, found {}",
                kernels.len()
            ),
        });
    }
    let (release, vmlinuz) = kernels.remove(0);
    let config = configs
        .into_iter()
        .find(|(r, _)| *r == release)
        .map(|(_, p)| p);
    Ok(Extracted {
        vmlinuz,
        release,
        config,
    })
}

/// The package that holds a kernel's config when its own package does not:
/// `linux-base-<rel>` for a 7.x `linux-binary-<rel>`.
pub fn config_package(kernel_package: &str) -> Option<String> {
    kernel_package
        .strip_prefix("linux-binary-")
        .map(|rel| format!("linux-base-{rel}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_apt_setup_text() {
        assert_eq!(
            private_sources_list(
                "http://m.example/debian",
                Some("http://s.example/debian-security"),
                "trixie",
                Some("/k.gpg")
            ),
            "deb [signed-by=/k.gpg] http://m.example/debian trixie main\n\
             deb [signed-by=/k.gpg] http://m.example/debian trixie-updates main\n\
             deb [signed-by=/k.gpg] http://s.example/debian-security trixie-security main\n"
        );
        assert_eq!(
            private_sources_list("http://m.example/debian", None, "bullseye", None),
            "deb http://m.example/debian bullseye main\n\
             deb http://m.example/debian bullseye-updates main\n"
        );
        for suite in ["trixie-backports", "sid"] {
            assert_eq!(
                private_sources_list("http://m.example/debian", Some("http://s"), suite, None),
                format!("deb http://m.example/debian {suite} main\n")
            );
        }
        let o = private_apt_opts(Path::new("/w"));
        assert!(o.contains(&"Dir::Etc::SourceList=/w/sources.list".to_string()));
        assert!(o.contains(&"Dir::Etc::SourceParts=-".to_string()));
        assert!(o.contains(&"Dir::State::Lists=/w/lists".to_string()));
        assert!(o.contains(&"Dir::Cache=/w/cache".to_string()));
        assert!(o.chunks(2).all(|c| c[0] == "-o"));
    }

    #[test]
    fn main_list_is_told_from_updates_and_security() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let partial = names(&[
            "m.example_debian_dists_trixie-updates_main_binary-amd64_Packages.lz4",
            "s.example_debian-security_dists_trixie-security_main_binary-amd64_Packages.lz4",
            "m.example_debian_dists_trixie_InRelease",
        ]);
        assert!(!main_list_arrived(&partial, "trixie"));
        let mut full = partial.clone();
        full.push("m.example_debian_dists_trixie_main_binary-amd64_Packages.lz4".into());
        assert!(main_list_arrived(&full, "trixie"));
        assert!(!main_list_arrived(&full, "bookworm"));
    }

    #[test]
    fn apt_cache_depends_output() {
        // Real `apt-cache depends linux-image-cloud-amd64` (trixie, bookworm).
        let trixie = "linux-image-cloud-amd64\n  Depends: linux-image-6.12.118+deb13-cloud-amd64\n";
        assert_eq!(
            kernel_dependency(trixie).as_deref(),
            Some("linux-image-6.12.118+deb13-cloud-amd64")
        );
        let mixed = "linux-image-cloud-amd64\n  PreDepends: dpkg\n |Depends: <linux-image-virtual>\n\
                     \x20   linux-image-6.1.0-9-cloud-amd64\n  Depends: initramfs-tools\n\
                     \x20 Depends: linux-image-6.1.0-56-cloud-amd64-unsigned\n  Recommends: firmware\n";
        assert_eq!(
            kernel_dependency(mixed).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64-unsigned")
        );
        assert_eq!(kernel_dependency("foo\n  Depends: bar\n"), None);
        assert_eq!(kernel_dependency(""), None);
    }

    #[test]
    fn apt_cache_show_output() {
        let text = "Package: linux-image-6.12.118+deb13-cloud-amd64-unsigned\n\
                    Source: linux\nVersion: 6.12.118-1\nInstalled-Size: 60000\n\
                    Depends: kmod, linux-base (>= 4.3~)\nDescription: Linux 6.12\n \
                    Version: 9.9 in a continuation line\n\n\
                    Package: other\nVersion: 1\n";
        assert_eq!(
            package_and_version(text),
            Some((
                "linux-image-6.12.118+deb13-cloud-amd64-unsigned".to_string(),
                "6.12.118-1".to_string()
            ))
        );
        assert_eq!(package_and_version("Package: x\n"), None);
        assert_eq!(package_and_version("Package: ../x\nVersion: 1\n"), None);
        assert_eq!(package_and_version(""), None);
    }

    #[test]
    fn seven_x_image_package_points_at_its_binary() {
        // Real `apt-cache depends linux-image-7.3.4+deb13-cloud-amd64`.
        let text =
            "linux-image-7.3.4+deb13-cloud-amd64\n  Depends: linux-base-7.3.4+deb13-cloud-amd64\n\
                    \x20 Depends: linux-binary-7.3.4+deb13-cloud-amd64\n\
                    \x20 Depends: linux-modules-7.3.4+deb13-cloud-amd64\n\
                    \x20|Depends: dracut\n  Depends: <linux-initramfs-tool>\n";
        assert_eq!(
            binary_dependency(text).as_deref(),
            Some("linux-binary-7.3.4+deb13-cloud-amd64")
        );
        assert_eq!(binary_dependency("x\n  Depends: linux-base-1\n"), None);
        assert_eq!(
            config_package("linux-binary-7.2.13+deb14-cloud-amd64").as_deref(),
            Some("linux-base-7.2.13+deb14-cloud-amd64")
        );
        assert_eq!(config_package("linux-image-6.1.0-50-amd64-unsigned"), None);
    }

    #[test]
    fn tar_missing_patterns_are_not_failures() {
        assert!(only_missing_members(
            "tar: ./boot/config-*: Not found in archive\n\
             tar: Exiting with failure status due to previous errors\n"
        ));
        assert!(!only_missing_members(""));
        assert!(!only_missing_members(
            "tar: ./boot/vmlinuz-1: Cannot open: No space left on device\n\
             tar: Exiting with failure status due to previous errors\n"
        ));
    }

    #[test]
    fn kernel_files_in_both_layouts() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("boot")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/modules/7.3.4+deb13-cloud-amd64")).unwrap();
        std::fs::write(r.join("boot/vmlinuz-6.1.0-50-amd64"), b"k").unwrap();
        std::fs::write(r.join("boot/config-6.1.0-50-amd64"), b"c").unwrap();
        std::fs::write(
            r.join("usr/lib/modules/7.3.4+deb13-cloud-amd64/vmlinuz"),
            b"k",
        )
        .unwrap();
        std::fs::write(
            r.join("usr/lib/modules/7.3.4+deb13-cloud-amd64/config"),
            b"c",
        )
        .unwrap();
        let (mut k, mut c) = kernel_files(r);
        k.sort();
        c.sort();
        let rels = |v: &[(String, PathBuf)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(rels(&k), ["6.1.0-50-amd64", "7.3.4+deb13-cloud-amd64"]);
        assert_eq!(rels(&c), ["6.1.0-50-amd64", "7.3.4+deb13-cloud-amd64"]);
        assert!(k[1]
            .1
            .ends_with("usr/lib/modules/7.3.4+deb13-cloud-amd64/vmlinuz"));
    }

    /// The real 7.x packages, when a copy is around (`OOMLAB_TEST_DEBS`
    /// names a folder of .debs): the kernel comes out of linux-binary-*,
    /// the config out of linux-base-*. Skipped loudly otherwise.
    #[test]
    fn real_seven_x_debs_when_available() {
        let Some(dir) = std::env::var_os("OOMLAB_TEST_DEBS") else {
            eprintln!("SKIPPED real_seven_x_debs_when_available: set OOMLAB_TEST_DEBS to a folder of kernel .debs");
            return;
        };
        let dir = PathBuf::from(dir);
        let debs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".deb"))
            .collect();
        let mut seen = 0;
        for deb in debs {
            let name = deb.file_name().unwrap().to_string_lossy().into_owned();
            let x = tempfile::tempdir().unwrap();
            if name.starts_with("linux-binary-") {
                let e = extract_kernel(&deb, x.path()).unwrap();
                assert!(name.contains(&e.release), "{name}: {e:?}");
                assert!(e.config.is_none());
                seen += 1;
            } else if name.starts_with("linux-base-") {
                let (k, c) = extract_members(&deb, x.path()).unwrap();
                assert!(k.is_empty() && c.len() == 1, "{name}");
                seen += 1;
            }
        }
        eprintln!("checked {seen} 7.x packages in {}", dir.display());
    }
}
