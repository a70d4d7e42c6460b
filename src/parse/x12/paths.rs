//! Mapping paths (`NM1[01=IL]/NM109`, `EB03#*`, `UM04.1`): compiled and
//! checked at load, resolved against stored segments without allocating.

use std::fmt;
use std::ops::Range;

use super::guides::{Transaction, ENVELOPE};
use super::Delims;

// ---------------------------------------------------------------- paths

/// Which repetition of an element a path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rep {
    /// The element as a whole when it does not repeat, else its first repetition.
    First,
    /// The n-th (1-based) repetition.
    Nth(u8),
    /// Every repetition, joined with `,`.
    All,
}

/// A compiled X12 path: `NM1[01=IL]/NM109`, `HCR01`, `UM04.1`, `EB03#*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X12Path {
    /// The loop the segment must be in (`2100A`), from the transaction's
    /// table ([`super::guides`]); `None`: the nearest match, see the reader.
    pub scope: Option<String>,
    pub segment: String,
    pub qualifier: Option<(usize, String)>,
    pub element: usize,
    pub component: Option<usize>,
    pub repetition: Rep,
}

/// Segments a mapping may address, with their element counts (5010 with
/// 4010 extras). A path naming another segment is a load-time error, which
/// catches typos such as `HRC01`.
pub const SEGMENTS: &[(&str, usize)] = &[
    ("AAA", 4),
    ("AMT", 3),
    ("BHT", 6),
    ("BIN", 2),
    ("BPR", 21),
    ("CAS", 19),
    ("CAT", 4),
    ("CL1", 4),
    ("CLM", 20),
    ("CLP", 14),
    ("CR1", 10),
    ("CR2", 12),
    ("CR5", 18),
    ("CR6", 21),
    ("CRC", 7),
    ("DMG", 11),
    ("DSB", 8),
    ("DTM", 6),
    ("DTP", 3),
    ("EB", 14),
    ("EQ", 5),
    ("GE", 2),
    ("GS", 8),
    ("HCR", 4),
    ("HI", 12),
    ("HL", 4),
    ("HSD", 8),
    ("IEA", 2),
    ("III", 9),
    ("INS", 17),
    ("ISA", 16),
    ("K3", 3),
    ("LE", 1),
    ("LIN", 31),
    ("LQ", 2),
    ("LS", 1),
    ("LX", 1),
    ("MPI", 7),
    ("MSG", 3),
    ("N1", 6),
    ("N3", 2),
    ("N4", 7),
    ("NM1", 12),
    ("NTE", 2),
    ("PAT", 9),
    ("PER", 9),
    ("PLB", 14),
    ("PRV", 6),
    ("PTD", 5),
    ("PWK", 9),
    ("QTY", 4),
    ("REF", 4),
    ("SBR", 9),
    ("SE", 2),
    ("ST", 3),
    ("STC", 12),
    ("SV1", 21),
    ("SV2", 10),
    ("SV3", 11),
    ("SVC", 7),
    ("SVD", 7),
    ("TOO", 3),
    ("TRN", 4),
    ("UM", 10),
    ("BSN", 7),
    ("TD5", 15),
    // 278 clinical segments the loop tables name.
    ("CR4", 29),
    ("CR7", 3),
    ("CR8", 9),
    // 867 product transfer and resale.
    ("BPT", 12),
    ("CUR", 21),
    ("MEA", 10),
    ("PSA", 4),
    ("CTT", 7),
    ("N2", 2),
    ("N9", 7),
    ("PRF", 8),
    ("MAN", 6),
    ("LCD", 6),
    ("SII", 9),
    ("PO3", 8),
    ("PO4", 18),
    ("UIT", 3),
    ("ITA", 19),
    ("PID", 9),
    ("PKG", 6),
    ("LM", 2),
];

/// Parses and checks an X12 path. Errors carry a byte span inside `src`.
pub fn parse_path(src: &str) -> Result<X12Path, (Range<usize>, String)> {
    parse_path_in(src, None)
}

/// Parses an X12 path and, when the mapping names its transaction, checks
/// that the loop and the segment exist in that transaction's table.
pub fn parse_path_in(src: &str, t: Option<&Transaction>) -> Result<X12Path, (Range<usize>, String)> {
    let bad = |r: Range<usize>, m: &str| Err((r, m.to_string()));
    let trimmed = src.trim();
    let lead0 = src.len() - src.trim_start().len();
    // Optional `LOOP/` scope: a first part without a selector's `[`.
    let (scope, s, lead) = match trimmed.split_once('/') {
        Some((first, rest)) if !first.contains('[') && !rest.is_empty() => {
            if first.is_empty() || !first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return bad(
                    lead0..lead0 + first.len().max(1),
                    "a loop is written as its id from the implementation guide, e.g. 2100A/NM1[01=PR]/NM103",
                );
            }
            (Some((first, lead0)), rest, lead0 + first.len() + 1)
        }
        _ => (None, trimmed, lead0),
    };
    let path = parse_unscoped(s, lead)?;
    let path = X12Path {
        scope: scope.map(|(l, _)| l.to_string()),
        ..path
    };
    if let Some(t) = t {
        let seg_at = lead + s.find(path.segment.as_str()).unwrap_or(0);
        let seg_span = seg_at..seg_at + path.segment.len();
        let envelope = ENVELOPE.contains(&path.segment.as_str());
        match scope {
            Some((l, at)) => {
                let Some(i) = t.loop_index(l) else {
                    let ids: Vec<String> = t.loops.iter().map(|l| l.id.to_string()).collect();
                    let hint = crate::text::closest(l, &ids)
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_default();
                    return bad(
                        at..at + l.len(),
                        &format!(
                            "the {} ({}) has no loop {l}{hint}; its loops: {}",
                            t.id,
                            t.name,
                            ids.join(", ")
                        ),
                    );
                };
                let def = &t.loops[i];
                if !def.segments.contains(&path.segment.as_str()) {
                    let elsewhere: Vec<&str> = t
                        .loops
                        .iter()
                        .filter(|d| d.segments.contains(&path.segment.as_str()))
                        .map(|d| d.id)
                        .collect();
                    let hint = if elsewhere.is_empty() {
                        format!("; the {} has no {} segment at all", t.id, path.segment)
                    } else {
                        format!("; {} is in {}", path.segment, elsewhere.join(", "))
                    };
                    return bad(
                        seg_span,
                        &format!(
                            "loop {l} ({}) has no {} segment (its segments: {}){hint}",
                            def.name,
                            path.segment,
                            def.segments.join(", ")
                        ),
                    );
                }
            }
            None if !envelope && !t.has_segment(&path.segment) => {
                return bad(
                    seg_span,
                    &format!("the {} ({}) has no {} segment", t.id, t.name, path.segment),
                );
            }
            None => {}
        }
    }
    Ok(path)
}

/// `SEG[NN=VALUE]/SEGnn.c#r`, its spans offset by `lead` into the source.
fn parse_unscoped(s: &str, lead: usize) -> Result<X12Path, (Range<usize>, String)> {
    let bad = |r: Range<usize>, m: &str| Err((r, m.to_string()));
    // Optional `SEG[NN=VALUE]/` selector.
    let (qualifier, rest, rest_at, sel_seg) = match s.find('/') {
        Some(slash) => {
            let sel = &s[..slash];
            let Some(open) = sel.find('[') else {
                return bad(
                    lead..lead + slash,
                    "a selector is written SEG[NN=VALUE], e.g. NM1[01=IL]",
                );
            };
            if !sel.ends_with(']') {
                return bad(lead..lead + slash, "the selector must end with `]`");
            }
            let seg = &sel[..open];
            let inner = &sel[open + 1..sel.len() - 1];
            let Some((num, value)) = inner.split_once('=') else {
                return bad(
                    lead + open..lead + slash,
                    "a selector is [NN=VALUE], e.g. [01=IL]",
                );
            };
            let Ok(n) = num.trim().parse::<usize>() else {
                return bad(
                    lead + open..lead + slash,
                    "the selector's element number must be two digits, e.g. [01=IL]",
                );
            };
            if value.is_empty() {
                return bad(lead + open..lead + slash, "the selector's value is empty");
            }
            (
                Some((n, value.to_string())),
                &s[slash + 1..],
                lead + slash + 1,
                Some((seg, lead)),
            )
        }
        None => (None, s, lead, None),
    };
    // SEGnn[.c][#r|#*]
    // Segment ids are 2-3 characters; the element number is the last two digits before `.`/`#`.
    let body_end = rest.find(['.', '#']).unwrap_or(rest.len());
    let body = &rest[..body_end];
    // Bytes, not chars: only when the last two bytes are ASCII digits is
    // `body.len() - 2` a character boundary to slice at (a fuzzed `DTé3`
    // panicked here).
    if body.len() < 4 || !body.as_bytes()[body.len() - 2..].iter().all(u8::is_ascii_digit) {
        return bad(
            rest_at..rest_at + body_end.max(1),
            "an element reference is a segment id and a two-digit element number, e.g. HCR01",
        );
    }
    let seg = &body[..body.len() - 2];
    let element: usize = body[body.len() - 2..]
        .parse()
        .map_err(|_| (rest_at..rest_at + body_end, "bad element number".to_string()))?;
    let Some(count) = SEGMENTS.iter().find(|(id, _)| *id == seg).map(|(_, c)| *c) else {
        let known: Vec<String> = SEGMENTS.iter().map(|(id, _)| id.to_string()).collect();
        // Transposed letters are the usual typo (HRC for HCR): prefer an anagram.
        let sorted = |s: &str| {
            let mut v: Vec<char> = s.chars().collect();
            v.sort_unstable();
            v
        };
        let hint = known
            .iter()
            .find(|k| sorted(k) == sorted(seg))
            .map(String::as_str)
            .or_else(|| crate::text::closest(seg, &known))
            .map(|c| format!(" (did you mean {c}?)"))
            .unwrap_or_default();
        return bad(
            rest_at..rest_at + seg.len(),
            &format!("unknown X12 segment `{seg}`{hint}"),
        );
    };
    if element == 0 || element > count {
        return bad(
            rest_at + seg.len()..rest_at + body_end,
            &format!("{seg} has elements {seg}01..{seg}{count:02}"),
        );
    }
    if let Some((sel_seg, at)) = sel_seg {
        if sel_seg != seg {
            return bad(
                at..at + sel_seg.len(),
                &format!("the selector names {sel_seg} but the element is in {seg}"),
            );
        }
        if let Some((n, _)) = &qualifier {
            if *n == 0 || *n > count {
                return bad(
                    at..at + sel_seg.len(),
                    &format!("{seg} has elements {seg}01..{seg}{count:02}"),
                );
            }
        }
    }
    let mut component = None;
    let mut repetition = Rep::First;
    let mut tail = &rest[body_end..];
    let mut at = rest_at + body_end;
    if let Some(t) = tail.strip_prefix('.') {
        let n_end = t.find('#').unwrap_or(t.len());
        match t[..n_end].parse::<usize>() {
            Ok(c) if c >= 1 => component = Some(c),
            _ => return bad(at..at + 1 + n_end, "a component is `.N`, N from 1"),
        }
        tail = &t[n_end..];
        at += 1 + n_end;
    }
    if let Some(t) = tail.strip_prefix('#') {
        repetition = match t {
            "*" => Rep::All,
            n => match n.parse::<u8>() {
                Ok(r) if r >= 1 => Rep::Nth(r),
                _ => {
                    return bad(
                        at..at + 1 + t.len(),
                        "a repetition is `#N` (N from 1) or `#*` for all",
                    )
                }
            },
        };
    } else if !tail.is_empty() {
        return bad(at..at + tail.len(), "unexpected text after the element reference");
    }
    if seg == "BIN" && element == 2 && (component.is_some() || repetition != Rep::First) {
        return bad(
            rest_at..rest_at + rest.len(),
            "BIN02 is a binary payload taken whole by its length (BIN01): it has no components or repetitions",
        );
    }
    Ok(X12Path {
        scope: None,
        segment: seg.to_string(),
        qualifier,
        element,
        component,
        repetition,
    })
}

impl fmt::Display for X12Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.scope {
            write!(f, "{l}/")?;
        }
        if let Some((n, v)) = &self.qualifier {
            write!(f, "{}[{n:02}={v}]/", self.segment)?;
        }
        write!(f, "{}{:02}", self.segment, self.element)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        match self.repetition {
            Rep::First => Ok(()),
            Rep::Nth(n) => write!(f, "#{n}"),
            Rep::All => write!(f, "#*"),
        }
    }
}

/// The repetitions of element `raw`, as ranges, without collecting them.
fn reps(raw: &[u8], sep: Option<u8>) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match sep.and_then(|r| memchr::memchr(r, &raw[start..])) {
            Some(i) => {
                let r = start..start + i;
                start += i + 1;
                Some(r)
            }
            None => {
                done = true;
                Some(start..raw.len())
            }
        }
    })
}

/// Writes the part of element `raw` that `path` selects, decoded.
pub(super) fn write_element(out: &mut String, raw: &[u8], path: &X12Path, d: Delims) {
    if path.segment == "BIN" && path.element == 2 {
        // A binary payload is opaque: delimiter bytes inside it are data.
        decode_into(out, raw);
        return;
    }
    let component = |part: &'_ [u8]| -> Range<usize> {
        match (path.component, d.component) {
            (None, _) => 0..part.len(),
            (Some(1), None) => 0..part.len(),
            (Some(_), None) => 0..0,
            (Some(c), Some(sep)) => {
                let mut s = 0;
                for (k, i) in memchr::memchr_iter(sep, part).enumerate() {
                    if k + 1 == c {
                        return s..i;
                    }
                    s = i + 1;
                }
                let n = memchr::memchr_iter(sep, part).count();
                if n + 1 == c {
                    s..part.len()
                } else {
                    0..0
                }
            }
        }
    };
    match path.repetition {
        Rep::First | Rep::Nth(_) => {
            let k = match path.repetition {
                Rep::Nth(n) => n as usize - 1,
                _ => 0,
            };
            // Fast path: no repetition separator in the element.
            let part = if d.repetition.is_none_or(|r| !raw.contains(&r)) {
                if k == 0 {
                    raw
                } else {
                    &[][..]
                }
            } else {
                reps(raw, d.repetition).nth(k).map_or(&[][..], |r| &raw[r])
            };
            decode_into(out, &part[component(part)]);
        }
        Rep::All => {
            let mut first = true;
            for r in reps(raw, d.repetition) {
                let part = &raw[r];
                let c = &part[component(part)];
                if c.trim_ascii().is_empty() {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                decode_into(out, c);
            }
        }
    }
}

/// Appends `raw` decoded: ASCII as is, anything else as Windows-1252.
fn decode_into(out: &mut String, raw: &[u8]) {
    if raw.is_ascii() {
        out.push_str(std::str::from_utf8(raw).expect("ASCII is UTF-8"));
    } else {
        let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(raw);
        out.push_str(&text);
    }
}
