//! Lines a paste hard-wrapped (a mail client at 72-80 columns, a terminal
//! at its width): a kernel line cut short is held until the next line
//! shows whether it continues it; the two are joined when the join reads
//! as a fuller record.

use crate::events::kernel::{self, split_prefix, KernelEvent};

/// Lines longer than this are not held: no paste wraps that late.
pub(super) const WRAP_MAX: usize = 160;
/// At most this many continuation lines are joined to one line.
pub(super) const MAX_JOINS: u8 = 3;

/// Does the kernel line `msg`, read as `ev`, stop before its end (as the
/// kernel prints it)? A `Killed process` line ending at its name's `)` may
/// be whole (2.6.32, `Killed process N (comm)`) or cut: it counts as cut.
pub(super) fn looks_cut(ev: &KernelEvent, msg: &str) -> bool {
    let t = msg.trim_end();
    match ev {
        KernelEvent::Killed(_) => {
            // the last field printed in some era, whole
            let Some((head, value)) = t.rsplit_once(':') else {
                return true;
            };
            let key = head.rsplit([' ', ',']).next().unwrap_or("");
            let value = value.trim();
            let kb = value.len() > 2
                && value
                    .get(value.len() - 2..)
                    .is_some_and(|u| u.eq_ignore_ascii_case("kb"));
            let number = !value.is_empty()
                && value
                    .trim_start_matches('-')
                    .bytes()
                    .all(|c| c.is_ascii_digit());
            !match key {
                "file-rss" | "shmem-rss" | "swap" => kb,
                "oom_score_adj" => number,
                _ => false,
            }
        }
        KernelEvent::KillChosen { .. } => {
            !(t.ends_with("child") || t.ends_with("children") || t.ends_with("children."))
        }
        KernelEvent::OomSummary { uid, .. } => uid.is_none(),
        KernelEvent::OomInvoked {
            oom_score_adj,
            order,
            ..
        } => oom_score_adj.is_none() && !(order.is_some() && t.contains("oomkilladj=")),
        _ => false,
    }
}

/// How full a record a kernel line gives.
struct Fullness {
    kind: &'static str,
    fields: usize,
    whole: bool,
    /// A victim's name, when its `)` was there.
    name: Option<String>,
}

fn fullness(text: &str, columns: Option<&[String]>) -> Option<Fullness> {
    let msg = split_prefix(text).msg;
    let (ev, _) = kernel::parse_message_mended(msg, columns)?;
    let whole = !looks_cut(&ev, msg);
    let n = |xs: &[bool]| xs.iter().filter(|x| **x).count();
    let (kind, fields, name) = match &ev {
        KernelEvent::Killed(k) => (
            "killed",
            n(&[
                k.uid.is_some(),
                k.total_vm_kb.is_some(),
                k.anon_rss_kb.is_some(),
                k.file_rss_kb.is_some(),
                k.shmem_rss_kb.is_some(),
                k.pgtables_kb.is_some(),
                k.oom_score_adj.is_some(),
            ]),
            (!k.name_cut).then(|| k.name.clone()),
        ),
        KernelEvent::KillChosen { score, .. } => ("chosen", n(&[score.is_some()]), None),
        KernelEvent::OomSummary { uid, .. } => ("summary", n(&[uid.is_some()]), None),
        KernelEvent::OomInvoked {
            order,
            oom_score_adj,
            gfp_mask,
            ..
        } => (
            "invoked",
            n(&[order.is_some(), oom_score_adj.is_some(), gfp_mask.is_some()]),
            None,
        ),
        _ => ("other", 0, None),
    };
    Some(Fullness {
        kind,
        fields,
        whole,
        name,
    })
}

/// Could `next` continue a wrapped line: text with no stamp, row, record
/// or level of its own, and no keyword that starts a message of its own?
fn may_continue(next: &str) -> bool {
    let t = next.trim_start();
    !t.is_empty()
        && !t.starts_with(['[', '<', '{'])
        && !t.contains("#012")
        && t != "..."
        && split_prefix(next).ts.is_none()
        && !kernel::maybe_oom(next)
        && crate::events::supervisor::parse(next).is_none()
}

/// `first` (a held line) and `next` as one line: with no space where a
/// terminal cut the line at its full width (80 columns and more: anywhere,
/// mid-word too) or before punctuation, else with one (a mail client
/// breaks at a space, and drops it).
fn join(first: &str, next: &str) -> String {
    if first.ends_with(' ') {
        return format!("{first}{}", next.trim_start());
    }
    let hard_cut = first.chars().count() >= 79 && !next.starts_with(' ');
    let next = next.trim_start();
    if hard_cut || next.starts_with([',', ')', ':', '.', ';']) {
        format!("{first}{next}")
    } else {
        format!("{first} {next}")
    }
}

/// What to do with a held line and the line after it.
pub(super) enum Continued {
    /// Joined, and the join still looks cut: hold it for one more line.
    More(String),
    /// Joined: read the join.
    Done(String),
    /// Not a continuation: read the held line alone.
    No,
}

/// Decide whether `next` continues the held `first` (`joins` lines were
/// joined to it already).
pub(super) fn continued(
    first: &str,
    next: &str,
    joins: u8,
    columns: Option<&[String]>,
) -> Continued {
    if joins >= MAX_JOINS || !may_continue(next) {
        return Continued::No;
    }
    let joined = join(first, next);
    let (Some(after), before) = (fullness(&joined, columns), fullness(first, columns)) else {
        return Continued::No;
    };
    let better = match before {
        None => true,
        Some(b) => {
            b.kind == after.kind
                && !b.whole
                && (after.fields > b.fields || after.whole)
                && (b.name.is_none() || b.name == after.name)
        }
    };
    if !better {
        return Continued::No;
    }
    if !after.whole && joins + 1 < MAX_JOINS {
        Continued::More(joined)
    } else {
        Continued::Done(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Option<String> {
        let mut held = lines.first()?.to_string();
        let mut joins = 0;
        for next in lines.get(1..).unwrap_or_default() {
            match continued(&held, next, joins, None) {
                Continued::More(j) => {
                    held = j;
                    joins += 1;
                }
                Continued::Done(j) => return Some(j),
                Continued::No => return None,
            }
        }
        Some(held)
    }

    #[test]
    fn mail_and_terminal_wraps() {
        // a mail client, at a space
        assert_eq!(
            run(&[
                "Jan 18 09:51:00 web01 kernel: Killed process 8364, UID 2188, (nginx)",
                "total-vm:121304kB, anon-rss:49484kB, file-rss:12kB",
            ])
            .as_deref(),
            Some("Jan 18 09:51:00 web01 kernel: Killed process 8364, UID 2188, (nginx) total-vm:121304kB, anon-rss:49484kB, file-rss:12kB")
        );
        // a terminal, mid-word at 80 columns, over three lines
        let whole = "[ 2351.082113] Out of memory: Killed process 3110 (php-fpm7.4) total-vm:612356kB, anon-rss:401712kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:1096kB oom_score_adj:0";
        let parts: Vec<&str> = vec![&whole[..80], &whole[80..160], &whole[160..]];
        assert_eq!(run(&parts).as_deref(), Some(whole));
        // a stamped line is never a continuation
        assert!(run(&[
            "[ 1.0] Killed process 12 (redis-se",
            "[ 1.1] Killed process 13 (redis-server) total-vm:1kB",
        ])
        .is_none());
        // a whole line does not take the next one
        assert!(run(&[
            "[ 1.0] Killed process 12 (x) total-vm:1kB, anon-rss:1kB, file-rss:1kB",
            "hello"
        ])
        .is_none());
    }
}
