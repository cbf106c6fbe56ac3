//! The reading side of the incident builder: each message of the input
//! (a task-table row, a kernel event, context after a report, a
//! supervisor's line), lines held back in case a paste wrapped them, and
//! the callbacks the input readers and envelopes call.

use super::*;

impl Builder {
    pub(super) fn handle_msg(&mut self, msg: &str, whole: bool) {
        // the many rows of a report, without a copy of their names
        if msg.trim_ascii_start().starts_with('[') {
            if let Some(r) = self.parser.row(msg) {
                self.line_read = true;
                self.line_truncated_name = false;
                self.task_row(&r);
                return;
            }
        }
        match self.parser.read(msg) {
            Ok((ev, mended)) => {
                if whole && self.may_hold && self.pending.is_none() && wrap::looks_cut(&ev, msg) {
                    // maybe wrapped: wait for the next line
                    self.hold = true;
                    return;
                }
                self.note_mended(mended);
                self.line_read = true;
                self.line_truncated_name = match &ev {
                    KernelEvent::Killed(k) => k.name_cut,
                    _ => false,
                };
                self.event(ev);
            }
            Err(keyword) => {
                if whole && self.may_hold && self.pending.is_none() && keyword {
                    // a keyword but no message: maybe cut by a wrap
                    self.hold = true;
                    return;
                }
                if self.context_left > 0 {
                    self.partial_row(msg);
                    self.mem_info(msg);
                }
                self.context_left = self.context_left.saturating_sub(1);
                self.supervisor_line(msg);
            }
        }
    }

    pub(super) fn note_mended(&mut self, m: Mended) {
        if m.keyword_case {
            self.line_repairs.push(Repair::KeywordCase);
        }
        if m.fields {
            self.line_repairs.push(Repair::Fields);
        }
    }

    /// `N pages RAM` of a Mem-Info dump: the machine's memory.
    pub(super) fn mem_info(&mut self, msg: &str) {
        let Some(n) = msg.trim().strip_suffix(" pages RAM") else {
            return;
        };
        if let Ok(pages) = n.trim().parse::<u64>() {
            let r = self.rec.ram_pages.get_or_insert(pages);
            *r = (*r).max(pages);
        }
    }

    /// A supervisor's line, if it is one.
    pub(super) fn supervisor_line(&mut self, msg: &str) {
        let Some(l) = supervisor::parse(msg) else {
            return;
        };
        self.line_read = true;
        if let Some(i) = self.inputs.last_mut() {
            i.supervisor_lines += 1;
        }
        let when = match &self.ctx_ts {
            Some(ts) => When::of(Some(ts)),
            None => {
                supervisor::own_timestamp(msg).and_then(|s| When::of(Some(&Timestamp::Wall(s))))
            }
        };
        if when.is_some() && self.ctx_ts.is_none() {
            self.last_when = when;
        }
        if self.rec.sups.len() < MAX_SUP_RECORDS {
            self.rec.sups.push(SupRec {
                supervisor: l.supervisor,
                event: l.event,
                when,
                seq: self.seq,
            });
        } else {
            self.rec.sups_dropped += 1;
        }
    }

    /// Read one line (or a held one, or a join), counting its repairs.
    pub(super) fn read_line(
        &mut self,
        line: &[u8],
        prev: &[u8],
        offset: u64,
        may_hold: bool,
        joined: bool,
    ) {
        self.seq += 1;
        self.ctx_offset = offset;
        self.may_hold = may_hold && line.len() <= wrap::WRAP_MAX;
        self.hold = false;
        self.line_repairs.clear();
        self.line_read = false;
        if joined {
            self.line_repairs.push(Repair::WrappedLine);
        }
        envelope::open(line, prev, self);
        if self.hold {
            self.pending = Some(Pending {
                raw: line.to_vec(),
                prev: prev.to_vec(),
                offset,
                joins: 0,
            });
            return;
        }
        if let Some(i) = self.inputs.last_mut() {
            i.lines_examined += 1;
        }
        if self.line_read && !self.line_repairs.is_empty() {
            self.repairs.lines += 1;
            self.line_repairs.sort();
            self.line_repairs.dedup();
            for r in std::mem::take(&mut self.line_repairs) {
                self.repairs.add(r);
            }
        }
    }

    /// A held line meets the next one.
    pub(super) fn resolve_pending(&mut self, next: Option<&[u8]>) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        if let Some(next) = next {
            let first = String::from_utf8_lossy(&envelope::without_controls(&p.raw)).into_owned();
            let next = String::from_utf8_lossy(&envelope::without_controls(next)).into_owned();
            match wrap::continued(
                first.trim_end_matches('\r'),
                next.trim_end_matches('\r'),
                p.joins,
                self.parser.columns(),
            ) {
                Continued::More(j) => {
                    p.raw = j.into_bytes();
                    p.joins += 1;
                    self.pending = Some(p);
                    return;
                }
                Continued::Done(j) => {
                    self.read_line(j.as_bytes(), &p.prev, p.offset, false, true);
                    // the next line was consumed by the join
                    self.consumed = true;
                    return;
                }
                Continued::No => {}
            }
        }
        self.read_line(&p.raw, &p.prev, p.offset, false, p.joins > 0);
    }

    /// A task-table row cut short or interleaved (`[  701]   999   701   9000 [  600.1] e1000e: ...`):
    /// its pid still proves the process existed at table time.
    pub(super) fn partial_row(&mut self, msg: &str) {
        let Some(t) = msg.trim_start().strip_prefix('[') else {
            return;
        };
        let Some((inside, rest)) = t.split_once(']') else {
            return;
        };
        let Ok(pid) = inside.trim().parse::<u32>() else {
            return;
        };
        let mut it = rest.split_ascii_whitespace();
        let uid = it.next().and_then(|u| u.parse::<u32>().ok());
        let tgid = it.next().and_then(|u| u.parse::<u32>().ok());
        if uid.is_none() || tgid.is_none() || self.rec.rows.len() >= MAX_ROW_RECORDS {
            return;
        }
        self.totals.task_table_rows += 1;
        let name = self.rec.strings.id("");
        self.push_row(pid, uid.unwrap_or(u32::MAX), name, 0, 0, None);
    }
}

impl LineSink for Builder {
    fn line(&mut self, line: &[u8], prev: &[u8], offset: u64) {
        if self.pending.is_some() {
            self.consumed = false;
            self.resolve_pending(Some(line));
            if self.consumed || self.pending.is_some() {
                return;
            }
        }
        self.read_line(line, prev, offset, true, false);
    }

    fn wants_every_line(&self) -> bool {
        self.context_left > 0 || self.pending.is_some()
    }

    fn end(&mut self, last: &[u8]) {
        self.resolve_pending(None);
        // the time the log ends at: its last line's, else the last one seen
        let text = String::from_utf8_lossy(last);
        let l = split_prefix(&text);
        let ts =
            l.ts.clone()
                .or_else(|| supervisor::own_timestamp(l.msg).map(Timestamp::Wall));
        let seen = self.ctx_ts.as_ref().or(self.last_ts.as_ref());
        let when = When::of(ts.as_ref())
            .or_else(|| When::of(seen))
            .or(self.last_when);
        let uptime = l.uptime.or(self.last_uptime);
        if let Some(e) = self.rec.input_end.last_mut() {
            *e = (when, uptime);
        }
        if let Some(i) = self.inputs.last_mut() {
            i.ends_at = show_ts(ts.as_ref().or(seen));
        }
    }
}

impl Messages for Builder {
    fn time(&mut self, ts: Option<Timestamp>, uptime: Option<f64>) {
        // the last stamp seen is kept without a copy: the current one, or
        // the one before a line without one
        if ts.is_none() {
            if let Some(old) = self.ctx_ts.take() {
                self.last_ts = Some(old);
            }
        }
        if uptime.is_some() {
            self.last_uptime = uptime;
        }
        self.ctx_ts = ts;
        self.ctx_uptime = uptime;
    }

    fn journal_record(&mut self) {
        if let Some(i) = self.inputs.last_mut() {
            i.journal_json_lines += 1;
        }
    }

    fn message(&mut self, msg: &str, whole: bool) {
        self.handle_msg(msg, whole);
    }

    fn userspace(&mut self, msg: &str) {
        self.supervisor_line(msg);
    }

    fn repaired(&mut self, what: Repair) {
        self.line_repairs.push(what);
    }
}
