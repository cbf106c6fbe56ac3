//! Real programs in the guest (earlyoom, and later daemons): a Debian
//! package fetched with `apt-get download` through the host's own apt
//! configuration, extracted once into the cache, and packed with exactly
//! the interpreter and libraries its ELF dynamic section asks for.
//!
//! The package is never installed on the host: earlyoom installed there
//! would start killing the host's own processes.

use std::path::{Path, PathBuf};
use std::process::Command;

use oomlab_protocol::GuestProgram;

use super::elf::{self, GuestFile};
use super::kernel::debian;
use super::ImageError;

/// The cache folder of one package: `<cache>/programs/<package>/`, holding
/// the extracted tree in `root/` and the package version in `version`.
fn package_dir(package: &str) -> Result<PathBuf, ImageError> {
    Ok(super::cache_dir()?.join("programs").join(package))
}

/// The extracted package (fetched on first use), and its version.
pub fn ensure_package(package: &str) -> Result<(PathBuf, String), ImageError> {
    let dir = package_dir(package)?;
    let root = dir.join("root");
    let version_file = dir.join("version");
    if root.is_dir() {
        if let Ok(v) = std::fs::read_to_string(&version_file) {
            return Ok((root, v.trim().to_string()));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    let work = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&dir)
        .map_err(|e| ImageError::io(format!("create temp dir in {}", dir.display()), e))?;
    let deb = debian::download_host_package(package, &work.path().join("debs"))?;
    let version = deb_field(&deb, "Version")?;
    let x = work.path().join("root");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .output()
        .map_err(|e| ImageError::Command {
            cmd: "dpkg-deb -x".into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ImageError::Command {
            cmd: format!("dpkg-deb -x {}", deb.display()),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .map_err(|e| ImageError::io(format!("remove {}", root.display()), e))?;
    }
    std::fs::rename(&x, &root)
        .map_err(|e| ImageError::io(format!("move {} into place", root.display()), e))?;
    crate::atomic::write_bytes(&version_file, format!("{version}\n").as_bytes())
        .map_err(|e| ImageError::io(format!("write {}", version_file.display()), e))?;
    Ok((root, version))
}

fn deb_field(deb: &Path, field: &str) -> Result<String, ImageError> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .map_err(|e| ImageError::Command {
            cmd: "dpkg-deb -f".into(),
            detail: e.to_string(),
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A program ready to pack: its files and where they came from.
#[derive(Debug, Clone)]
pub struct PackedProgram {
    /// The Debian package, or empty for a program taken from the host.
    pub package: String,
    pub path: String,
    pub version: String,
    pub files: Vec<GuestFile>,
}

/// `program` and everything it needs to run in the guest.
pub fn program_files(program: &GuestProgram) -> Result<PackedProgram, ImageError> {
    pack_program(program.package, program.path, &[])
}

/// The program at `path` of `package` (or of the host when `package` is
/// empty) with its interpreter and libraries, searched in `lib_packages`
/// first (each fetched like the program; one this suite lacks is skipped),
/// then on the host.
pub fn pack_program(
    package: &str,
    path: &str,
    lib_packages: &[String],
) -> Result<PackedProgram, ImageError> {
    let guest = Path::new(path);
    let mut roots = Vec::new();
    let (host, version) = if package.is_empty() {
        (guest.to_path_buf(), "host".to_string())
    } else {
        let (root, version) = ensure_package(package)?;
        let host = root.join(path.trim_start_matches('/'));
        roots.push(root);
        (host, version)
    };
    for lib in lib_packages {
        if let Ok((root, _)) = ensure_package(lib) {
            roots.push(root);
        }
    }
    let name = if package.is_empty() { path } else { package };
    let files = elf::closure_in(guest, &host, &roots).map_err(|detail| ImageError::Fetch {
        name: name.to_string(),
        detail,
    })?;
    Ok(PackedProgram {
        package: package.to_string(),
        path: path.to_string(),
        version,
        files,
    })
}
