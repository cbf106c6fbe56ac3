//! Where things live in the guest: the paths the harness's image builder
//! writes and the payload reads, named once.

use crate::mitigation::GuestProgram;

/// The disk the guest switches root to with `root=disk`.
pub const ROOT_DEV: &str = "/dev/vda";
/// Where stage 1 mounts the disk before switching root to it.
pub const NEW_ROOT: &str = "/newroot";
/// 64 fresh random bytes from the host, credited to the guest's entropy
/// pool (`RNDADDENTROPY`) and deleted before any program starts: the SSH
/// server would otherwise wait seconds for the CRNG.
pub const SEED: &str = "/oomlab/seed";
/// The guest's address on QEMU's user network; the host's forwarded
/// connections arrive from 10.0.2.2.
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
pub const GUEST_NETMASK: [u8; 4] = [255, 255, 255, 0];
/// The port the SSH server listens on in the guest.
pub const SSH_PORT: u16 = 22;

/// Debian's dropbear: one small binary, no configuration file, no
/// privilege-separation user, a foreground mode, logs on stderr.
pub const DROPBEAR: GuestProgram = GuestProgram {
    package: "dropbear-bin",
    path: "/usr/sbin/dropbear",
};
/// dropbear's own key format (ed25519: 83 bytes), 0600, owned by root.
pub const SSH_HOST_KEY: &str = "/etc/dropbear/dropbear_ed25519_host_key";
/// The client's public key, owned by root, 0600, in a 0700 folder.
pub const AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";
/// A static shell: the SSH server runs the login's command with `/bin/sh -c`.
pub const BUSYBOX: GuestProgram = GuestProgram {
    package: "busybox-static",
    path: "/bin/busybox",
};
/// busybox applets linked into the image (the probe runs `cat`).
pub const BUSYBOX_APPLETS: &[&str] = &["/bin/sh", "/bin/cat", "/bin/ps", "/bin/ls"];

/// dropbear's command line: foreground (`-F`), log to stderr (`-E`), no
/// password logins (`-s`), port 22, the image's host key.
pub fn dropbear_argv() -> Vec<String> {
    [
        DROPBEAR.path,
        "-F",
        "-E",
        "-s",
        "-p",
        "22",
        "-r",
        SSH_HOST_KEY,
    ]
    .map(String::from)
    .to_vec()
}

/// Linux swap area header (`mkswap`'s page 0) for a device of `pages`
/// 4 KiB pages: version 1, `last_page`, no bad pages, `SWAPSPACE2` magic
/// in the page's last 10 bytes. The harness writes it at the start of a
/// swap disk; the payload writes it to zram.
pub fn swap_header(pages: u64) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    page[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    let last = u32::try_from(pages.saturating_sub(1)).unwrap_or(u32::MAX);
    page[1028..1032].copy_from_slice(&last.to_le_bytes());
    page[4086..].copy_from_slice(b"SWAPSPACE2");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_header_layout() {
        let h = swap_header(16384);
        assert_eq!(h.len(), 4096);
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        assert_eq!(u32::from_le_bytes(h[1024..1028].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(h[1028..1032].try_into().unwrap()), 16383);
        assert!(h[..1024].iter().all(|&b| b == 0));
    }

    #[test]
    fn dropbear_uses_the_image_key() {
        let a = dropbear_argv();
        assert_eq!(a[0], DROPBEAR.path);
        assert!(a.windows(2).any(|w| w[0] == "-r" && w[1] == SSH_HOST_KEY));
        assert!(a.contains(&"-s".to_string()), "no password logins");
    }
}
