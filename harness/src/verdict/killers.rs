//! What userspace OOM killers in the guest print when they kill.

/// earlyoom's kill line, e.g. `sending SIGTERM to process 212 uid 0
/// "nginx": badness 870, VmRSS 58 MiB`: the pid and the name.
pub fn earlyoom_kill(line: &str) -> Option<(u32, String)> {
    let i = line.find("sending SIG")?;
    let rest = &line[i..];
    let j = rest.find(" to process ")?;
    let after = &rest[j + " to process ".len()..];
    let n = after.bytes().take_while(u8::is_ascii_digit).count();
    let pid = after.get(..n)?.parse().ok()?;
    let name = after
        .find('"')
        .and_then(|q| {
            let r = &after[q + 1..];
            r.find("\":")
                .or_else(|| r.rfind('"'))
                .map(|e| r[..e].to_string())
        })
        .unwrap_or_default();
    Some((pid, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlyoom_lines() {
        assert_eq!(
            earlyoom_kill(
                r#"sending SIGTERM to process 212 uid 0 "nginx": badness 870, VmRSS 58 MiB"#
            ),
            Some((212, "nginx".to_string()))
        );
        assert_eq!(
            earlyoom_kill(r#"sending SIGKILL to process 9 uid 1000 "a b": oom_score 900"#),
            Some((9, "a b".to_string()))
        );
        assert_eq!(earlyoom_kill("mem avail: 20 of 230 MiB"), None);
    }
}
