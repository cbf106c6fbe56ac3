//! `/init` of oomlab's initramfs.
//!
//! `no_main`: std's start-up code aborts when stdio fds are closed and
//! `/dev/null` cannot be opened, which is exactly how the kernel starts PID 1
//! from an initramfs without `/dev/console`. Our own `main` skips it.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    guest_payload::run()
}
