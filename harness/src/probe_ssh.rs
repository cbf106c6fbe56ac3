//! The SSH availability probe: could a person have logged in? Beside the
//! VM, a real SSH client (russh) logs into the guest's dropbear through
//! QEMU's host forward on 127.0.0.1 at a fixed interval, for the whole
//! window: connect, authenticate with the run's client key, run
//! `cat /proc/loadavg`, disconnect, each attempt under a timeout.
//!
//! Keys are made per run and never reused: the host key (written into the
//! image in dropbear's own format, pinned by the client) and the client key
//! (its public half in `authorized_keys`). The private halves exist only in
//! memory and in the run's private scratch folder (inside the image).

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::ssh_key::{private::Ed25519Keypair, HashAlg, PrivateKey, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{client, ChannelMsg, Disconnect};
use tokio::sync::watch;

/// The command each login runs.
pub const COMMAND: &str = "cat /proc/loadavg";

/// One run's keys.
pub struct SshKeys {
    /// The host's private key in dropbear's format (ed25519: 83 bytes).
    pub host_dropbear: Vec<u8>,
    pub host_public: PublicKey,
    pub client: Arc<PrivateKey>,
    /// `authorized_keys` line for the client.
    pub client_authorized: String,
}

fn random32() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most the remaining bytes of `b`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(b)
}

/// dropbear's private key file for an ed25519 key: `string "ssh-ed25519"`,
/// `string (seed || public)`, SSH wire encoding.
pub fn dropbear_ed25519(seed: &[u8; 32], public: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(83);
    v.extend(11u32.to_be_bytes());
    v.extend(b"ssh-ed25519");
    v.extend(64u32.to_be_bytes());
    v.extend(seed);
    v.extend(public);
    v
}

impl SshKeys {
    /// Fresh keys from the kernel's random source.
    pub fn generate() -> std::io::Result<SshKeys> {
        let host_seed = random32()?;
        let host = Ed25519Keypair::from_seed(&host_seed);
        let host_dropbear = dropbear_ed25519(&host_seed, &host.public.0);
        let host_public = PublicKey::from(host.public);
        let client = PrivateKey::from(Ed25519Keypair::from_seed(&random32()?));
        let client_authorized = client
            .public_key()
            .to_openssh()
            .map_err(std::io::Error::other)?
            + " oomlab-probe\n";
        Ok(SshKeys {
            host_dropbear,
            host_public,
            client: Arc::new(client),
            client_authorized,
        })
    }

    pub fn host_fingerprint(&self) -> String {
        self.host_public.fingerprint(HashAlg::Sha256).to_string()
    }

    pub fn client_fingerprint(&self) -> String {
        self.client
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }
}

/// A free TCP port on 127.0.0.1 for QEMU's host forward (bound, read,
/// released: QEMU binds it a moment later).
pub fn free_loopback_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

struct Pinned {
    expected: PublicKey,
}

impl client::Handler for Pinned {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. }
            if key.key_data() == self.expected.key_data()))
    }
}

/// One login; the command's output.
pub async fn login(port: u16, keys: &SshKeys) -> Result<String, String> {
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    let handler = Pinned {
        expected: keys.host_public.clone(),
    };
    let mut s = client::connect(config, ("127.0.0.1", port), handler)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let auth = s
        .authenticate_publickey(
            "root",
            PrivateKeyWithHashAlg::new(keys.client.clone(), None),
        )
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("auth: public key refused".into());
    }
    let mut ch = s
        .channel_open_session()
        .await
        .map_err(|e| format!("session: {e}"))?;
    ch.exec(true, COMMAND)
        .await
        .map_err(|e| format!("exec: {e}"))?;
    let (mut out, mut code) = (Vec::new(), None);
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    let _ = s.disconnect(Disconnect::ByApplication, "", "en").await;
    match code {
        Some(0) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
        Some(c) => Err(format!("`{COMMAND}` exited {c}")),
        None => Err(format!("`{COMMAND}`: no exit status")),
    }
}

/// One finished attempt, on the host's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAttempt {
    pub start: Instant,
    pub latency: Duration,
    pub result: Result<(), String>,
}

/// Logs in every `interval` (one attempt at a time: a tick that comes
/// while one is still running is skipped) from the moment `start` holds an
/// instant until `stop` turns true; what is in flight then is dropped.
pub async fn probe(
    port: u16,
    keys: Arc<SshKeys>,
    interval: Duration,
    timeout: Duration,
    mut start: watch::Receiver<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
) -> Vec<HostAttempt> {
    let mut done = Vec::new();
    let wait_start = async {
        loop {
            if start.borrow_and_update().is_some() {
                return true;
            }
            if start.changed().await.is_err() {
                return false;
            }
        }
    };
    let stopped = async {
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::pin!(stopped);
    tokio::select! {
        go = wait_start => if !go { return done },
        _ = &mut stopped => return done,
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut stopped => return done,
            _ = tick.tick() => {}
        }
        let t0 = Instant::now();
        let attempt = tokio::time::timeout(timeout, login(port, &keys));
        let result = tokio::select! {
            _ = &mut stopped => return done,
            r = attempt => match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("timeout".to_string()),
            },
        };
        let latency = t0.elapsed();
        if result.is_err() {
            // The VM being stopped cuts logins too: a failure is only the
            // guest's if no stop follows within a second.
            let grace = tokio::time::sleep(Duration::from_secs(1));
            tokio::select! {
                _ = &mut stopped => return done,
                _ = grace => {}
            }
        }
        done.push(HostAttempt {
            start: t0,
            latency,
            result,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_in_dropbears_format() {
        let a = SshKeys::generate().unwrap();
        let b = SshKeys::generate().unwrap();
        assert_ne!(a.host_fingerprint(), b.host_fingerprint());
        assert_ne!(a.client_fingerprint(), b.client_fingerprint());
        assert_eq!(a.host_dropbear.len(), 83);
        assert_eq!(&a.host_dropbear[4..15], b"ssh-ed25519");
        // The public half sits at the end of dropbear's blob.
        let pk = a.host_public.key_data().ed25519().unwrap().0;
        assert_eq!(&a.host_dropbear[51..], &pk);
        assert!(a.client_authorized.starts_with("ssh-ed25519 "));
        assert!(a.host_fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn free_port_is_on_loopback_and_nonzero() {
        assert!(free_loopback_port().unwrap() > 0);
    }

    #[tokio::test]
    async fn nothing_listening_fails_fast() {
        let keys = SshKeys::generate().unwrap();
        let port = free_loopback_port().unwrap();
        let e = login(port, &keys).await.unwrap_err();
        assert!(e.starts_with("connect"), "{e}");
    }
}
