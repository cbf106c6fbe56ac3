//! A strict reader of KTAP version 1, written from the grammar in the
//! kernel's `Documentation/dev-tools/ktap.rst`: a version line, an optional
//! plan `1..N`, result lines `ok|not ok N [description] [# directive]`
//! numbered from 1, subtests as whole nested documents indented two spaces
//! per level and closed by their parent's result line, `#` diagnostic
//! lines anywhere. Unlike a console parser it refuses unknown lines: it
//! checks what oomlab writes, not what a kernel console mixes in.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub number: usize,
    pub ok: bool,
    pub name: String,
    /// `SKIP`, `TODO`, `XFAIL`, `TIMEOUT` or `ERROR`, with its text.
    pub directive: Option<String>,
    pub subtests: Vec<Test>,
}

fn indent_of(line: &str) -> Result<(usize, &str), String> {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    if !spaces.is_multiple_of(2) {
        return Err(format!("odd indentation: {line:?}"));
    }
    Ok((spaces / 2, &line[spaces..]))
}

fn result_line(body: &str) -> Option<(bool, usize, String, Option<String>)> {
    let (ok, rest) = if let Some(r) = body.strip_prefix("not ok ") {
        (false, r)
    } else {
        (true, body.strip_prefix("ok ")?)
    };
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    let number = rest.get(..n)?.parse().ok()?;
    let rest = rest[n..].trim_start();
    let (desc, directive) = match rest.split_once('#') {
        Some((d, dir)) => (d.trim(), Some(dir.trim().to_string())),
        None => (rest.trim(), None),
    };
    Some((ok, number, desc.to_string(), directive))
}

/// Parses one document at `level` starting at `lines[*at]`.
fn document(lines: &[&str], at: &mut usize, level: usize) -> Result<Vec<Test>, String> {
    let (l, body) = indent_of(lines.get(*at).ok_or("missing version line")?)?;
    if l != level || body != "KTAP version 1" {
        return Err(format!(
            "line {}: expected `KTAP version 1` at level {level}",
            *at + 1
        ));
    }
    *at += 1;
    let mut plan = None;
    let mut tests: Vec<Test> = Vec::new();
    let mut pending_sub: Option<Vec<Test>> = None;
    while *at < lines.len() {
        let line = lines[*at];
        let (l, body) = indent_of(line)?;
        if l < level {
            break;
        }
        if body.starts_with('#') {
            *at += 1;
            continue;
        }
        if l > level {
            if l != level + 1 || body != "KTAP version 1" || pending_sub.is_some() {
                return Err(format!("line {}: unexpected nested line {line:?}", *at + 1));
            }
            pending_sub = Some(document(lines, at, level + 1)?);
            continue;
        }
        if let Some(n) = body.strip_prefix("1..") {
            if plan.is_some() || !tests.is_empty() {
                return Err(format!("line {}: plan not at the start", *at + 1));
            }
            plan = Some(
                n.parse::<usize>()
                    .map_err(|_| format!("line {}: bad plan", *at + 1))?,
            );
            *at += 1;
            continue;
        }
        let (ok, number, name, directive) = result_line(body)
            .ok_or_else(|| format!("line {}: not a KTAP line: {line:?}", *at + 1))?;
        if number != tests.len() + 1 {
            return Err(format!(
                "line {}: test {number} where {} was due",
                *at + 1,
                tests.len() + 1
            ));
        }
        if let Some(d) = &directive {
            let word = d.split_whitespace().next().unwrap_or("");
            if !["SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR"].contains(&word) {
                return Err(format!("line {}: unknown directive {d:?}", *at + 1));
            }
        }
        let subtests = pending_sub.take().unwrap_or_default();
        if !subtests.is_empty() && ok && subtests.iter().any(|t| !t.ok) {
            return Err(format!("line {}: `ok` over a failed subtest", *at + 1));
        }
        tests.push(Test {
            number,
            ok,
            name,
            directive,
            subtests,
        });
        *at += 1;
    }
    if pending_sub.is_some() {
        return Err("a subtest without its result line".into());
    }
    if let Some(p) = plan {
        if p != tests.len() {
            return Err(format!("plan 1..{p} but {} results", tests.len()));
        }
    }
    Ok(tests)
}

/// The whole document's top-level tests, or what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Test>, String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut at = 0;
    let tests = document(&lines, &mut at, 0)?;
    if at != lines.len() {
        return Err(format!("line {}: trailing lines", at + 1));
    }
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_and_broken_ones() {
        let good = "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 test_1\n  not ok 2 test_2\n# example failed\nnot ok 1 example\n";
        let t = parse(good).unwrap();
        assert_eq!(t[0].subtests.len(), 2);
        assert!(!t[0].ok);
        for bad in [
            "KTAP version 1\n1..2\nok 1 a\n",
            "KTAP version 1\nok 2 a\n",
            "TAP version 13\nok 1 a\n",
            "KTAP version 1\n1..1\n    KTAP version 1\n    ok 1 a\nok 1 b\n",
            "KTAP version 1\n1..1\n  KTAP version 1\n  not ok 1 a\nok 1 b\n",
            "KTAP version 1\nok 1 a # MAYBE\n",
            "KTAP version 1\nwhatever\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
