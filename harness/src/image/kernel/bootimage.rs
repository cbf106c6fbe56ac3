//! The x86 Linux boot protocol's setup header (Documentation/arch/x86/
//! boot.rst): whether a file is a kernel QEMU can load with an initramfs,
//! checked before anything boots, and the version string it carries.

use std::io::Read;
use std::path::Path;

/// What an x86 Linux boot image's setup header says
/// (Documentation/arch/x86/boot.rst).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImage {
    /// Boot protocol version, e.g. `0x020f` for 2.15.
    pub protocol: u16,
    /// The real-mode setup code: `(setup_sects + 1) * 512` bytes.
    pub setup_bytes: u64,
    /// Setup plus the protected-mode kernel (`syssize` 16-byte units): the
    /// shortest the file can be.
    pub expected_len: u64,
    /// The file's actual length (signed kernels carry more at the end).
    pub len: u64,
    /// The first word of the `kernel_version` string, e.g.
    /// `6.1.0-50-cloud-amd64`, when the image has one.
    pub release: Option<String>,
}

/// QEMU refuses to load an initramfs (which every run has) for a kernel
/// whose boot protocol is older than 2.00 ("linux kernel too old to load a
/// ram disk").
pub const MIN_BOOT_PROTOCOL: u16 = 0x0200;

/// The bytes [`parse_boot_header`] may look at: the `kernel_version`
/// pointer is 16 bits past 0x200, and the string is read up to 256 bytes.
const BOOT_HEAD_BYTES: u64 = 0x200 + 0x1_0000 + 256;

/// Whether `path` is an x86 Linux boot image QEMU can load with an
/// initramfs, from its header alone (reads at most 66 KiB): `Err` says
/// what is wrong, in words for the user. A real image that cannot boot
/// (wrong config, no serial console) passes, and is a boot failure later.
pub fn check_boot_image(path: &Path) -> Result<BootImage, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut head = Vec::new();
    file.take(BOOT_HEAD_BYTES)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read it: {e}"))?;
    parse_boot_header(&head, meta.len())
}

/// [`check_boot_image`] on the first bytes of an image (`head`, at least
/// 66 KiB unless the file is shorter) and its length.
pub fn parse_boot_header(head: &[u8], len: u64) -> Result<BootImage, String> {
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if head.len() < 0x210 {
        return Err(format!(
            "{len} bytes is too short to hold the x86 boot header (a kernel has megabytes)"
        ));
    }
    if &head[0x202..0x206] != b"HdrS" {
        return Err(
            "no x86 boot protocol header (the `HdrS` magic at offset 0x202 is missing)".into(),
        );
    }
    if u16_at(0x1FE) != 0xAA55 {
        return Err(format!(
            "the boot sector signature at offset 0x1FE is {:#06x}, not 0xaa55",
            u16_at(0x1FE)
        ));
    }
    let protocol = u16_at(0x206);
    if protocol < MIN_BOOT_PROTOCOL {
        return Err(format!(
            "boot protocol {}.{:02} is older than 2.00, the oldest QEMU loads an initramfs for",
            protocol >> 8,
            protocol & 0xff
        ));
    }
    let setup_sects = match head[0x1F1] {
        0 => 4,
        n => u64::from(n),
    };
    let setup_bytes = (setup_sects + 1) * 512;
    // 32 bits from protocol 2.04 on, 16 before.
    let syssize = if protocol >= 0x0204 {
        u64::from(u32_at(0x1F4))
    } else {
        u64::from(u16_at(0x1F4))
    };
    if syssize == 0 {
        return Err("the header says the kernel is empty (syssize 0)".into());
    }
    let expected_len = setup_bytes + syssize * 16;
    if len < expected_len {
        return Err(format!(
            "truncated: the header says {expected_len} bytes ({setup_bytes} of setup, {} of \
             kernel), the file has {len}",
            syssize * 16
        ));
    }
    Ok(BootImage {
        protocol,
        setup_bytes,
        expected_len,
        len,
        release: bzimage_release(head),
    })
}

/// The release string from an x86 bzImage's setup header (`kernel_version`
/// field), e.g. `6.1.0-50-cloud-amd64`. None if it is not a bzImage, or
/// the pointer leaves the setup code.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*image.get(0x20E)?, *image.get(0x20F)?]) as usize;
    let setup_sects = match image.get(0x1F1)? {
        0 => 4,
        n => usize::from(*n),
    };
    if ptr == 0 || ptr + 0x200 >= (setup_sects + 1) * 512 {
        return None;
    }
    let s = image.get(ptr + 0x200..)?;
    let end = s.iter().take(256).position(|&b| b == 0)?;
    let text = std::str::from_utf8(&s[..end]).ok()?;
    text.split_whitespace().next().map(str::to_string)
}
