use std::io::Write as _;

use super::*;
use crate::image::kernel::{CatalogueEntry, KernelSource};

const RELEASE: &str = "2.6.32-642.6.2.el6.x86_64";

/// A stand-in kernel: a bzImage setup header whose version string starts
/// with the release, and some bytes.
fn fake_kernel() -> Vec<u8> {
    let mut b = vec![0x5au8; 0x3000];
    b[0x202..0x206].copy_from_slice(b"HdrS");
    let at = 0x600usize;
    b[0x20E..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
    let v = format!("{RELEASE} (mockbuild@c6b8) #1 SMP\0");
    b[at..at + v.len()].copy_from_slice(v.as_bytes());
    b
}

fn cpio() -> Vec<u8> {
    let k = fake_kernel();
    build_newc(&[
        ("./boot", 0o040755, b""),
        (
            "./boot/System.map-2.6.32-642.6.2.el6.x86_64",
            0o100644,
            b"ffff t x\n",
        ),
        (
            "./boot/config-2.6.32-642.6.2.el6.x86_64",
            0o100644,
            b"CONFIG_BLK_DEV_INITRD=y\n",
        ),
        // A symlink named like a kernel must not be taken for one.
        ("./boot/vmlinuz-link", 0o120777, b"vmlinuz-x"),
        ("./boot/vmlinuz-2.6.32-642.6.2.el6.x86_64", 0o100755, &k),
        (
            "./lib/modules/2.6.32-642.6.2.el6.x86_64/kernel/fs/ext4/ext4.ko",
            0o100644,
            &[7u8; 5000],
        ),
    ])
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let opts = lzma_rust2::XzOptions::with_preset(1);
            let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).unwrap();
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
        "lzma" => {
            let opts = lzma_rust2::LzmaOptions::with_preset(1);
            let mut w =
                lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &opts, Some(data.len() as u64))
                    .unwrap();
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
        "zstd" => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        _ => data.to_vec(),
    }
}

fn write_rpm(dir: &Path, kind: &str) -> PathBuf {
    let p = dir.join(format!("kernel-{kind}.rpm"));
    std::fs::write(
        &p,
        build_minimal_rpm("kernel-2.6.32-642.6.2.el6", kind, &compress(kind, &cpio())),
    )
    .unwrap();
    p
}

#[test]
fn every_payload_compression_unpacks() {
    for kind in ["gzip", "xz", "lzma", "zstd"] {
        let d = tempfile::tempdir().unwrap();
        let rpm = write_rpm(d.path(), kind);
        let k =
            extract_rpm_kernel(&rpm, &d.path().join("x")).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(k.release, RELEASE, "{kind}");
        assert_eq!(std::fs::read(&k.vmlinuz).unwrap(), fake_kernel(), "{kind}");
        assert_eq!(k.headers.compressor.as_deref(), Some(kind));
        assert_eq!(k.headers.format.as_deref(), Some("cpio"));
        let config = std::fs::read_to_string(k.config.unwrap()).unwrap();
        assert_eq!(config, "CONFIG_BLK_DEV_INITRD=y\n");
        // Only the boot files were written, never the modules.
        let mut names: Vec<String> = std::fs::read_dir(d.path().join("x"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [format!("config-{RELEASE}"), format!("vmlinuz-{RELEASE}")],
            "{kind}"
        );
    }
}

#[test]
fn header_and_compressor_must_agree() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("liar.rpm");
    std::fs::write(&p, build_minimal_rpm("k", "xz", &compress("gzip", &cpio()))).unwrap();
    let e = extract_rpm_kernel(&p, &d.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("header says the payload is xz"), "{e}");
}

#[test]
fn hostile_files_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let good = build_minimal_rpm("k", "gzip", &compress("gzip", &cpio()));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not rpm", b"hello world, not an rpm at all".repeat(10)),
        ("lead only", good[..96].to_vec()),
        ("truncated payload", good[..good.len() - 200].to_vec()),
        ("bzip2", build_minimal_rpm("k", "bzip2", b"BZh91AY&SY")),
        ("huge header", {
            let mut v = good[..96].to_vec();
            v.extend_from_slice(&HEADER_MAGIC);
            v.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            v
        }),
        (
            "cpio garbage",
            build_minimal_rpm("k", "gzip", &compress("gzip", &[b'0'; 4000])),
        ),
        (
            "no kernel",
            build_minimal_rpm(
                "k",
                "gzip",
                &compress("gzip", &build_newc(&[("./boot/config-1", 0o100644, b"x")])),
            ),
        ),
        (
            "dot file",
            build_minimal_rpm(
                "k",
                "none",
                &build_newc(&[("./boot/vmlinuz-", 0o100644, b"x")]),
            ),
        ),
    ];
    for (what, bytes) in cases {
        let p = d.path().join("h.rpm");
        std::fs::write(&p, &bytes).unwrap();
        let r = extract_rpm_kernel(&p, &d.path().join(format!("x-{}", what.replace(' ', "-"))));
        assert!(r.is_err(), "{what}: {r:?}");
    }
}

fn rpm_entry(
    rpm_sha: &str,
    path: Option<String>,
    url: Option<String>,
) -> (CatalogueEntry, RpmSource) {
    let src = RpmSource {
        url,
        path,
        sha256: rpm_sha.to_string(),
    };
    let e = CatalogueEntry {
        name: "centos6".into(),
        release: RELEASE.into(),
        sha256: sha256_hex(&fake_kernel()),
        source: KernelSource::Rpm(src.clone()),
    };
    (e, src)
}

#[test]
fn catalogue_rpm_entry_is_pinned_twice() {
    let d = tempfile::tempdir().unwrap();
    let rpm = write_rpm(d.path(), "xz");
    let rpm_sha = sha256_file(&rpm).unwrap();
    let cache = d.path().join("cache");
    // By path.
    let (e, src) = rpm_entry(&rpm_sha, Some(rpm.to_string_lossy().into_owned()), None);
    let k = ensure_cached_rpm(&cache, &e, &src).unwrap();
    assert!(k.pinned);
    assert_eq!(k.release, RELEASE);
    assert_eq!(k.path, cache.join("vmlinuz"));
    assert!(cache.join("config").is_file());
    // Second use: from the cache, even with the RPM gone.
    std::fs::remove_file(&rpm).unwrap();
    assert_eq!(ensure_cached_rpm(&cache, &e, &src).unwrap(), k);
    // By file:// URL, into a fresh cache.
    let rpm = write_rpm(d.path(), "xz");
    let (e, src) = rpm_entry(&rpm_sha, None, Some(format!("file://{}", rpm.display())));
    let cache2 = d.path().join("cache2");
    assert!(ensure_cached_rpm(&cache2, &e, &src).unwrap().pinned);
    // A wrong RPM sha256 is refused before anything is unpacked.
    let (e, src) = rpm_entry(
        &"0".repeat(64),
        Some(rpm.to_string_lossy().into_owned()),
        None,
    );
    let cache3 = d.path().join("cache3");
    let err = ensure_cached_rpm(&cache3, &e, &src).unwrap_err();
    assert!(matches!(err, ImageError::ChecksumMismatch { .. }), "{err}");
    assert!(!cache3.join("vmlinuz").exists());
    // A catalogue release that is not the RPM's.
    let (mut e, src) = rpm_entry(&rpm_sha, Some(rpm.to_string_lossy().into_owned()), None);
    e.release = "2.6.32-754.el6.x86_64".into();
    let err = ensure_cached_rpm(&d.path().join("cache4"), &e, &src)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2.6.32-754.el6.x86_64") && err.contains(RELEASE),
        "{err}"
    );
    // And a wrong kernel sha256.
    let (mut e, src) = rpm_entry(&rpm_sha, Some(rpm.to_string_lossy().into_owned()), None);
    e.sha256 = "1".repeat(64);
    let err = ensure_cached_rpm(&d.path().join("cache5"), &e, &src).unwrap_err();
    assert!(matches!(err, ImageError::ChecksumMismatch { .. }), "{err}");
}

#[test]
fn own_rpm_is_unpacked_once() {
    let d = tempfile::tempdir().unwrap();
    let rpm = write_rpm(d.path(), "zstd");
    let kernels = d.path().join("kernels");
    let k = own_rpm(&rpm, &kernels).unwrap();
    assert!(!k.pinned);
    assert_eq!(k.release, RELEASE);
    assert_eq!(k.name, "kernel-zstd.rpm");
    assert!(k.path.starts_with(&kernels));
    assert_eq!(own_rpm(&rpm, &kernels).unwrap(), k);
}

/// A real RPM made by rpmbuild (Debian's `rpm` package) around the fake
/// kernel, when rpmbuild is installed; skipped loudly otherwise.
#[test]
fn rpmbuild_made_rpm_unpacks() {
    let have = std::process::Command::new("rpmbuild")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("SKIPPED rpmbuild_made_rpm_unpacks: no rpmbuild (apt-get install rpm); the hand-made RPMs above still ran");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let top = d.path().join("rpmbuild");
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("vmlinuz"), fake_kernel()).unwrap();
    std::fs::write(src.join("config"), "CONFIG_X=y\n").unwrap();
    for comp in ["w2.xzdio", "w9.gzdio", "w3.zstdio"] {
        let spec = d.path().join("kernel.spec");
        std::fs::write(
            &spec,
            format!(
                "Name: kernel\nVersion: 2.6.32\nRelease: 642.6.2.el6\nSummary: fake\nLicense: GPLv2\n\
                 BuildArch: x86_64\n%define _binary_payload {comp}\n%define __os_install_post %{{nil}}\n\
                 %define debug_package %{{nil}}\n%description\nfake kernel for a test\n\
                 %install\nmkdir -p %{{buildroot}}/boot\n\
                 install -m 755 {src}/vmlinuz %{{buildroot}}/boot/vmlinuz-{RELEASE}\n\
                 install -m 644 {src}/config %{{buildroot}}/boot/config-{RELEASE}\n\
                 %files\n/boot/vmlinuz-{RELEASE}\n/boot/config-{RELEASE}\n",
                src = src.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["--target", "x86_64", "-bb"])
            .arg(&spec)
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if comp.contains("zstd") && err.contains("zstd") {
                eprintln!("rpmbuild here cannot write zstd payloads: {err}");
                continue;
            }
            panic!("rpmbuild ({comp}) failed: {err}");
        }
        let rpm = top.join("RPMS/x86_64/kernel-2.6.32-642.6.2.el6.x86_64.rpm");
        let k = extract_rpm_kernel(&rpm, &d.path().join(format!("x-{comp}")))
            .unwrap_or_else(|e| panic!("{comp}: {e}"));
        assert_eq!(k.release, RELEASE, "{comp}");
        assert_eq!(std::fs::read(&k.vmlinuz).unwrap(), fake_kernel(), "{comp}");
        eprintln!("rpmbuild {comp}: compressor {:?}", k.headers.compressor);
        std::fs::remove_file(&rpm).unwrap();
    }
}
