//! Kernel modules for the guest. Debian's kernels build the virtio drivers
//! (PCI transport, network, block) and zram as modules: they come from the
//! kernel's own package, fetched once through the same apt setup as the
//! kernel, and only the modules oomlab can use (with their dependencies) are
//! kept, beside the cached `vmlinuz`.
//!
//! Dependencies are read from each module's `.modinfo` section
//! (`depends=`), since the packages ship no `modules.dep`; `modules.builtin`
//! tells a dependency that is built in from one that is missing. Names in
//! `depends=` use `_` where file names may use `-`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::kernel::{self, debian, KernelImage};
use super::ImageError;

/// Every module oomlab may ask for; the cache holds these and their
/// dependencies. The virtio PCI transport is never a `depends=` of the
/// drivers, so it is named itself. zram's compressors are loaded on demand
/// by the kernel, so they are named too (whichever this kernel has).
pub const CANDIDATES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "zram",
    "lzo_rle",
    "lz4_compress",
];

/// Modules a guest with a network card needs.
pub const NET: &[&str] = &["virtio_pci", "virtio_net"];
/// Modules a guest with a virtio disk needs.
pub const BLOCK: &[&str] = &["virtio_pci", "virtio_blk"];
/// Modules for zram swap (the compressor the kernel defaults to may be a
/// module it would try to load by itself).
pub const ZRAM: &[&str] = &["zram", "lzo_rle", "lz4_compress"];

/// `foo-bar.ko.xz` -> `foo_bar`.
pub fn module_name(file: &str) -> String {
    let base = file.split('/').next_back().unwrap_or(file);
    let stem = base
        .strip_suffix(".ko.xz")
        .or_else(|| base.strip_suffix(".ko.zst"))
        .or_else(|| base.strip_suffix(".ko.gz"))
        .or_else(|| base.strip_suffix(".ko"))
        .unwrap_or(base);
    stem.replace('-', "_")
}

/// The `.modinfo` section of a module's (uncompressed) ELF image, as
/// `key=value` strings.
pub fn modinfo(elf: &[u8]) -> Result<Vec<String>, String> {
    let u16_at =
        |o: usize| -> Option<u16> { Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?)) };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?)) };
    let u64_at = |o: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)).ok()
    };
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let bad = |what: &str| format!("malformed ELF: {what}");
    let shoff = u64_at(0x28).ok_or_else(|| bad("e_shoff"))?;
    let shentsize = usize::from(u16_at(0x3A).ok_or_else(|| bad("e_shentsize"))?);
    let shnum = usize::from(u16_at(0x3C).ok_or_else(|| bad("e_shnum"))?);
    let shstrndx = usize::from(u16_at(0x3E).ok_or_else(|| bad("e_shstrndx"))?);
    if shentsize < 64 {
        return Err(bad("section header size"));
    }
    let sh = |i: usize| -> Option<(u32, usize, usize)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(at)?, u64_at(at + 0x18)?, u64_at(at + 0x20)?))
    };
    let (_, stroff, strsize) = sh(shstrndx).ok_or_else(|| bad("section names"))?;
    let names = elf
        .get(stroff..stroff.checked_add(strsize).ok_or_else(|| bad("names"))?)
        .ok_or_else(|| bad("section names"))?;
    for i in 0..shnum {
        let (name, off, size) = sh(i).ok_or_else(|| bad("section header"))?;
        let name = names
            .get(name as usize..)
            .and_then(|n| n.split(|&c| c == 0).next())
            .unwrap_or(b"");
        if name == b".modinfo" {
            let data = elf
                .get(off..off.checked_add(size).ok_or_else(|| bad(".modinfo"))?)
                .ok_or_else(|| bad(".modinfo"))?;
            return Ok(data
                .split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect());
        }
    }
    Err("no .modinfo section".into())
}

/// `depends=` of a module, as names.
pub fn depends(info: &[String]) -> Vec<String> {
    info.iter()
        .find_map(|kv| kv.strip_prefix("depends="))
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// A module file's bytes, decompressed if it is `.xz`.
pub fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    if path.extension().is_some_and(|x| x == "xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut std::io::Cursor::new(&raw), &mut out)
            .map_err(|e| format!("{}: xz: {e}", path.display()))?;
        return Ok(out);
    }
    Ok(raw)
}

/// The modules of one kernel: files by name, what is built in, and whether
/// the kernel decompresses modules itself.
#[derive(Debug, Clone, Default)]
pub struct ModuleSet {
    pub files: BTreeMap<String, PathBuf>,
    pub builtin: BTreeSet<String>,
    /// `CONFIG_MODULE_DECOMPRESS=y`: `.ko.xz` can be loaded as they are.
    pub kernel_decompresses: bool,
}

/// What the guest is to load for a wish list, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadPlan {
    /// Module files, dependencies first.
    pub order: Vec<PathBuf>,
    /// Wanted names built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Wanted names neither built in nor available (optional ones left out).
    pub missing: Vec<String>,
}

impl ModuleSet {
    /// Reads a module folder: `*.ko`/`*.ko.xz`, `modules.builtin`, and the
    /// `decompress` marker.
    pub fn read(dir: &Path) -> Result<ModuleSet, ImageError> {
        let mut set = ModuleSet {
            kernel_decompresses: dir.join("kernel-decompresses").is_file(),
            ..ModuleSet::default()
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ImageError::io(format!("read {}", dir.display()), e))?;
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".ko") || n.ends_with(".ko.xz") {
                set.files.insert(module_name(&n), e.path());
            }
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("modules.builtin")) {
            set.builtin = text.lines().map(module_name).collect();
        }
        Ok(set)
    }

    /// The load order for `wanted`: each module after its `depends=`;
    /// `optional` names may be missing silently.
    pub fn plan(&self, wanted: &[&str], optional: &[&str]) -> Result<LoadPlan, String> {
        let mut plan = LoadPlan::default();
        let mut done = BTreeSet::new();
        for w in wanted {
            let w = w.replace('-', "_");
            if self.builtin.contains(&w) {
                if !plan.builtin.contains(&w) {
                    plan.builtin.push(w);
                }
                continue;
            }
            if !self.files.contains_key(&w) {
                if !optional.contains(&w.as_str()) && !plan.missing.contains(&w) {
                    plan.missing.push(w);
                }
                continue;
            }
            self.visit(&w, &mut done, &mut Vec::new(), &mut plan)?;
        }
        Ok(plan)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        plan: &mut LoadPlan,
    ) -> Result<(), String> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(format!(
                "module dependency cycle: {} -> {name}",
                stack.join(" -> ")
            ));
        }
        let Some(path) = self.files.get(name) else {
            return Err(format!(
                "module `{name}` (needed by {}) is neither in the package nor built in",
                stack.last().map_or("the guest", String::as_str)
            ));
        };
        let deps = depends(&modinfo(&read_module(path)?)?);
        stack.push(name.to_string());
        for d in deps {
            self.visit(&d, done, stack, plan)?;
        }
        stack.pop();
        done.insert(name.to_string());
        plan.order.push(path.clone());
        Ok(())
    }
}

/// The package and version that hold `kernel`'s modules, and the suite to
/// fetch them from; None for a kernel of your own.
fn module_package(
    kernel: &KernelImage,
) -> Result<Option<(String, kernel::catalogue::DebianSource, String, String)>, ImageError> {
    let cat = kernel::catalogue()?;
    let Some(entry) = cat.get(&kernel.name) else {
        return Ok(None);
    };
    // Modules come with Debian kernels; an RPM or a file of your own has
    // none known (its drivers must be built in).
    let kernel::catalogue::KernelSource::Debian(src) = &entry.source else {
        return Ok(None);
    };
    let (package, version) = if kernel.pinned {
        (src.package.clone(), src.version.clone())
    } else {
        let rec = kernel::float_record(&kernel.path)?;
        (rec.package, rec.version)
    };
    // 7.x: the kernel is in linux-binary-<rel>, its modules in
    // linux-modules-<rel> of the same version.
    let package = match package.strip_prefix("linux-binary-") {
        Some(rest) => format!("linux-modules-{rest}"),
        None => package,
    };
    Ok(Some((entry.name.clone(), src.clone(), package, version)))
}

/// The cached module folder of a catalogue kernel (fetched and trimmed on
/// first use), or None for a kernel of your own (its drivers must then be
/// built in).
pub fn ensure_modules(kernel: &KernelImage) -> Result<Option<PathBuf>, ImageError> {
    let Some((name, src, package, version)) = module_package(kernel)? else {
        return Ok(None);
    };
    let parent = kernel.path.parent().unwrap_or(Path::new("."));
    let dir = parent.join("modules");
    let stamp = dir.join("candidates");
    let want = CANDIDATES.join("\n") + "\n";
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(Some(dir));
    }
    let fail = |detail: String| ImageError::Fetch {
        name: name.clone(),
        detail,
    };
    let work = tempfile::Builder::new()
        .prefix(".modules-")
        .tempdir_in(parent)
        .map_err(|e| ImageError::io(format!("create temp dir in {}", parent.display()), e))?;
    let spec = format!("{package}={version}");
    let deb = debian::AptSetups::new(&name, &src, work.path())
        .try_each(|a| a.download(&spec, &work.path().join("debs")))
        .map_err(|e| fail(format!("modules: {spec}: {e}")))?;
    let x = work.path().join("x");
    extract_modules(&deb, &x)?;
    let staged = work.path().join("modules");
    std::fs::create_dir_all(&staged).map_err(|e| ImageError::io("create modules dir", e))?;
    let mut all = ModuleSet::default();
    let mut config = String::new();
    for f in walk(&x) {
        let n = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if n.ends_with(".ko") || n.ends_with(".ko.xz") {
            all.files.insert(module_name(&n), f.clone());
        } else if n == "modules.builtin" {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            all.builtin = text.lines().map(module_name).collect();
            let _ = std::fs::copy(&f, staged.join("modules.builtin"));
        } else if n.starts_with("config-") {
            config = std::fs::read_to_string(&f).unwrap_or_default();
        }
    }
    if all.files.is_empty() {
        return Err(fail(format!("modules: {spec} holds no kernel modules")));
    }
    all.kernel_decompresses = config
        .lines()
        .any(|l| l.trim() == "CONFIG_MODULE_DECOMPRESS=y");
    let plan = all
        .plan(CANDIDATES, CANDIDATES)
        .map_err(|e| fail(format!("modules: {e}")))?;
    for p in &plan.order {
        let n = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if n.ends_with(".xz") && !all.kernel_decompresses {
            // The kernel cannot decompress: keep the plain module.
            let plain = read_module(p).map_err(fail)?;
            let to = staged.join(n.trim_end_matches(".xz"));
            std::fs::write(&to, plain)
                .map_err(|e| ImageError::io(format!("write {}", to.display()), e))?;
        } else {
            std::fs::copy(p, staged.join(&n))
                .map_err(|e| ImageError::io(format!("copy {}", p.display()), e))?;
        }
    }
    if all.kernel_decompresses {
        std::fs::write(
            staged.join("kernel-decompresses"),
            b"CONFIG_MODULE_DECOMPRESS=y\n",
        )
        .map_err(|e| ImageError::io("write marker", e))?;
    }
    std::fs::write(staged.join("candidates"), want)
        .map_err(|e| ImageError::io("write stamp", e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| ImageError::io(format!("remove {}", dir.display()), e))?;
    }
    std::fs::rename(&staged, &dir)
        .map_err(|e| ImageError::io(format!("move {} into place", dir.display()), e))?;
    Ok(Some(dir))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

/// Unpacks the package's modules, `modules.builtin` and kernel config.
fn extract_modules(deb: &Path, into: &Path) -> Result<(), ImageError> {
    // A 7.x modules package has no ./boot/config-*: only no modules at all
    // is a failure.
    debian::extract_from_deb(
        deb,
        into,
        &["*.ko", "*.ko.xz", "*/modules.builtin", "./boot/config-*"],
    )?;
    if walk(into).is_empty() {
        return Err(ImageError::Command {
            cmd: format!("tar -x modules from {}", deb.display()),
            detail: "no kernel modules in the package".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/crypto/lzo-rle.ko"), "lzo_rle");
        assert_eq!(module_name("virtio_net.ko.xz"), "virtio_net");
        assert_eq!(
            module_name("kernel/drivers/block/virtio_blk.ko"),
            "virtio_blk"
        );
    }

    /// A minimal ELF64 with a `.modinfo` section holding `info`.
    fn fake_module(info: &str) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let data = info.replace(';', "\0").into_bytes();
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        let data_off = b.len();
        b.extend(&data);
        let names_off = b.len();
        b.extend(names);
        let shoff = b.len();
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        b[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        b[0x3E..0x40].copy_from_slice(&2u16.to_le_bytes());
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            b.extend(h);
        };
        sh(0, 0, 0);
        sh(1, data_off, data.len());
        sh(10, names_off, names.len());
        b
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let m = fake_module("license=GPL;depends=virtio_ring,net-failover;vermagic=6.1.0 SMP;");
        let info = modinfo(&m).unwrap();
        assert!(info.contains(&"license=GPL".to_string()));
        assert_eq!(depends(&info), vec!["virtio_ring", "net_failover"]);
        assert!(depends(&modinfo(&fake_module("depends=;")).unwrap()).is_empty());
        assert!(modinfo(b"\x7fELF").is_err());
        assert!(modinfo(b"#!/bin/sh").is_err());
        // Hostile headers never panic.
        for i in 0..m.len() {
            let mut b = m.clone();
            b[i] ^= 0xff;
            let _ = modinfo(&b);
        }
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let d = tempfile::tempdir().unwrap();
        for (file, deps) in [
            ("virtio.ko", ""),
            ("virtio_ring.ko", ""),
            ("virtio_pci.ko", "virtio_ring,virtio"),
            ("failover.ko", ""),
            ("net_failover.ko", "failover"),
            ("virtio_net.ko", "virtio_ring,virtio,net_failover"),
            ("virtio_blk.ko", "virtio,virtio_ring"),
            ("zram.ko", "zsmalloc"),
        ] {
            std::fs::write(
                d.path().join(file),
                fake_module(&format!("depends={deps};")),
            )
            .unwrap();
        }
        std::fs::write(d.path().join("modules.builtin"), "kernel/mm/zsmalloc.ko\n").unwrap();
        let set = ModuleSet::read(d.path()).unwrap();
        let plan = set
            .plan(
                &["virtio_pci", "virtio_net", "virtio_blk", "lzo-rle"],
                &["lzo_rle"],
            )
            .unwrap();
        let names: Vec<String> = plan
            .order
            .iter()
            .map(|p| module_name(&p.to_string_lossy()))
            .collect();
        let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
        assert_eq!(names.len(), 7, "{names:?}");
        assert!(pos("virtio_ring") < pos("virtio_pci") && pos("virtio") < pos("virtio_pci"));
        assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
        assert!(plan.missing.is_empty());
        // zsmalloc is built in: nothing to load for it.
        let z = set.plan(&["zram"], &[]).unwrap();
        assert_eq!(z.order.len(), 1);
        // A wanted module that is nowhere is reported, not loaded.
        let m = set.plan(&["virtio_scsi"], &[]).unwrap();
        assert_eq!(m.missing, vec!["virtio_scsi"]);
        std::fs::write(
            d.path().join("modules.builtin"),
            "kernel/drivers/virtio/virtio_pci.ko\n",
        )
        .unwrap();
        let set = ModuleSet::read(d.path()).unwrap();
        let p = set.plan(&["virtio_pci", "virtio_net"], &[]).unwrap();
        assert_eq!(p.builtin, vec!["virtio_pci"]);
    }

    #[test]
    fn a_missing_dependency_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.ko"), fake_module("depends=b;")).unwrap();
        let set = ModuleSet::read(d.path()).unwrap();
        let e = set.plan(&["a"], &[]).unwrap_err();
        assert!(e.contains("`b`") && e.contains("a"), "{e}");
    }
}
