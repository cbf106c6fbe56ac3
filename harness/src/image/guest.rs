//! One run's guest: what the scenario asks of the machine (SSH, a disk
//! root, swap, a real program) turned into images. Everything is built
//! in the run's private scratch folder, per run: keys and the entropy
//! seed are never shared between runs.
//!
//! - initramfs root: one archive holds the payload, the programs, the
//!   modules, the keys.
//! - disk root: the archive holds only the payload, the modules and the
//!   scenario (stage 1); an ext4 image holds everything else, the payload
//!   again as `/init` (stage 2).

use std::path::{Path, PathBuf};

use oomlab_protocol::{guest, GuestConf, RootKind};

use super::programs::{pack_program, program_files, PackedProgram};
use super::tree::GuestTree;
use super::{disk, modules, ImageError, KernelImage};
use crate::probe_ssh::SshKeys;
use crate::scenario::{Scenario, SwapKind};

/// Where modules go in the guest.
pub const MODULE_DIR: &str = "/lib/modules/oomlab";

/// Libraries of dropbear that a host rarely has (the rest are the host's).
pub const DROPBEAR_LIBS: &[&str] = &["libtomcrypt1", "libtommath1", "libgmp10"];

/// What the image stage made.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub initrd: PathBuf,
    /// The ext4 root, for `root: disk`.
    pub disk: Option<PathBuf>,
    /// The swap disk, for `swap: disk`.
    pub swap: Option<PathBuf>,
    pub conf: GuestConf,
    pub programs: Vec<PackedProgram>,
    /// Said in the report (modules this kernel lacks...).
    pub notes: Vec<String>,
    /// Bytes of all images.
    pub bytes: u64,
}

/// `/etc/passwd` and `/etc/group`: root, the daemon user Debian's
/// packages run as, nobody.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
pub const GROUP: &str = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n";

fn random_seed() -> Result<Vec<u8>, ImageError> {
    let mut b = vec![0u8; 64];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most the remaining bytes of `b`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(ImageError::io("getrandom", e));
            }
            continue;
        }
        got += n as usize;
    }
    Ok(b)
}

/// The programs a scenario needs in its guest.
pub fn wanted_programs(sc: &Scenario) -> Result<Vec<PackedProgram>, ImageError> {
    let mut out = Vec::new();
    for m in &sc.mitigations {
        for p in m.programs() {
            out.push(program_files(p)?);
        }
    }
    if sc.ssh.enabled {
        let libs: Vec<String> = DROPBEAR_LIBS.iter().map(|s| s.to_string()).collect();
        out.push(pack_program(
            guest::DROPBEAR.package,
            guest::DROPBEAR.path,
            &libs,
        )?);
        out.push(program_files(&guest::BUSYBOX)?);
    }
    if let Some(p) = &sc.workload.program {
        out.push(pack_program(&p.package, &p.path, &p.lib_packages)?);
    }
    Ok(out)
}

/// The module names the scenario needs, and which may be missing.
pub fn wanted_modules(sc: &Scenario) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut want: Vec<&'static str> = Vec::new();
    let mut add = |names: &[&'static str]| {
        for n in names {
            if !want.contains(n) {
                want.push(n);
            }
        }
    };
    if sc.ssh.enabled {
        add(modules::NET);
    }
    if sc.vm.root == RootKind::Disk || sc.vm.swap.kind == SwapKind::Disk {
        add(modules::BLOCK);
    }
    if sc.vm.swap.kind == SwapKind::Zram {
        add(modules::ZRAM);
    }
    // zram's compressors: whichever this kernel has as a module.
    (want, vec!["lzo_rle", "lz4_compress"])
}

/// The files of the guest's system besides the payload: users, SSH keys
/// and the entropy seed, programs, the program's configuration.
pub fn system_tree(
    sc: &Scenario,
    programs: &[PackedProgram],
    keys: Option<&SshKeys>,
) -> Result<GuestTree, ImageError> {
    let mut t = GuestTree::new();
    t.bytes("/etc/passwd", 0o644, PASSWD);
    t.bytes("/etc/group", 0o644, GROUP);
    for d in ["/run", "/var/log", "/var/tmp"] {
        t.dir(d, 0o755);
    }
    for p in programs {
        t.programs(&p.files);
    }
    if let Some(k) = keys {
        t.dir("/root", 0o700);
        t.dir("/root/.ssh", 0o700);
        t.bytes(guest::AUTHORIZED_KEYS, 0o600, k.client_authorized.clone());
        t.dir("/etc/dropbear", 0o700);
        t.bytes(guest::SSH_HOST_KEY, 0o600, k.host_dropbear.clone());
        t.bytes(guest::SEED, 0o600, random_seed()?);
        let busybox = Path::new(guest::BUSYBOX.path);
        for applet in guest::BUSYBOX_APPLETS {
            let target = if Path::new(applet).parent() == busybox.parent() {
                "busybox".to_string()
            } else {
                guest::BUSYBOX.path.to_string()
            };
            t.symlink(applet, &target);
        }
    }
    if let Some(p) = &sc.workload.program {
        for d in &p.dirs {
            t.dir(d, 0o755);
        }
        for f in &p.files {
            t.bytes(&f.path, f.mode, f.content.clone());
        }
    }
    Ok(t)
}

/// Builds the run's images in `scratch`.
pub fn build(
    sc: &Scenario,
    kernel: &KernelImage,
    payload: &Path,
    scratch: &Path,
    keys: Option<&SshKeys>,
) -> Result<GuestImage, ImageError> {
    let mut conf = sc.guest_conf();
    let mut notes = Vec::new();
    let programs = wanted_programs(sc)?;
    let (want, optional) = wanted_modules(sc);
    let mut modules_tree = GuestTree::new();
    if !want.is_empty() {
        match modules::ensure_modules(kernel)? {
            Some(dir) => {
                let set = modules::ModuleSet::read(&dir)?;
                let plan = set.plan(&want, &optional).map_err(|detail| ImageError::Fetch {
                    name: kernel.name.clone(),
                    detail,
                })?;
                for m in &plan.missing {
                    notes.push(format!(
                        "kernel module `{m}` is neither built into {} nor in its package",
                        kernel.release
                    ));
                }
                for p in &plan.order {
                    let file = p.file_name().unwrap_or_default().to_string_lossy();
                    let g = format!("{MODULE_DIR}/{file}");
                    modules_tree.file(&g, 0o644, super::tree::Content::Host(p.clone()));
                    conf.module.push(g);
                }
            }
            None => notes.push(format!(
                "no module package is known for the kernel `{}`: its virtio drivers ({}) must be built in",
                kernel.name,
                want.join(", ")
            )),
        }
    }
    let system = system_tree(sc, &programs, keys)?;
    let payload_bytes = std::fs::read(payload)
        .map_err(|e| ImageError::io(format!("read payload {}", payload.display()), e))?;
    let initrd = scratch.join("initrd.cpio");
    let mut image = GuestImage {
        initrd: initrd.clone(),
        disk: None,
        swap: None,
        conf: conf.clone(),
        programs,
        notes,
        bytes: 0,
    };
    // Swap devices follow the root disk in QEMU's order (vda, vdb).
    if sc.vm.swap.kind == SwapKind::Disk {
        let p = scratch.join("swap.img");
        disk::write_swap(&p, u64::from(sc.vm.swap.mib))?;
        conf.swap_dev = Some(
            if sc.vm.root == RootKind::Disk {
                "/dev/vdb"
            } else {
                "/dev/vda"
            }
            .to_string(),
        );
        image.swap = Some(p);
    }
    if sc.vm.swap.kind == SwapKind::Zram {
        conf.zram_mib = u64::from(sc.vm.swap.mib);
    }
    let text = conf.render();
    match sc.vm.root {
        RootKind::Initramfs => {
            let mut t = system;
            for (k, n) in modules_tree.iter() {
                if let super::tree::Node::File { mode, content } = n {
                    t.file(k, *mode, content.clone());
                }
            }
            super::initramfs::write_initramfs_tree(&initrd, &payload_bytes, &text, &t)?;
        }
        RootKind::Disk => {
            super::initramfs::write_initramfs_tree(&initrd, &payload_bytes, &text, &modules_tree)?;
            let mut root = system;
            for d in ["/dev", "/proc", "/sys", "/oomlab"] {
                root.dir(d, 0o755);
            }
            root.dir("/tmp", 0o1777);
            root.bytes("/init", 0o755, payload_bytes);
            root.bytes(oomlab_protocol::CONF_PATH, 0o644, text.clone());
            let img = scratch.join("root.ext4");
            let staging = scratch.join("root-stage");
            let res = disk::write_ext4(&root, &staging, &img);
            let _ = std::fs::remove_dir_all(&staging);
            res?;
            image.disk = Some(img);
        }
    }
    image.conf = conf;
    image.bytes = [
        Some(&image.initrd),
        image.disk.as_ref(),
        image.swap.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| m.len())
    .sum();
    Ok(image)
}
