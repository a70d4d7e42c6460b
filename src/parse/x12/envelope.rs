//! Pass 1: envelope validation (ISA/IEA, GS/GE, ST/SE control numbers and
//! counts, the HL parent chain), streaming, noting which units are broken.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::super::{file_label, Ctl, ParseError};
use super::{elem, parse_u64, show, TokenError, Tokenizer, X12Format};

// ---------------------------------------------------------------- envelope

/// Which envelopes of a file are broken, by their ordinal in the file.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub interchanges: u32,
    pub bad_interchanges: HashMap<u32, String>,
    pub bad_groups: HashMap<u32, String>,
    pub bad_sets: HashMap<u32, String>,
    pub sets: u32,
    /// Facts worth a warning that refuse nothing: envelope versions that
    /// disagree (ISA12, GS08, ST03), a guide that is not the transaction's.
    pub warnings: Vec<String>,
    /// What a TA1 and a 999 need, per interchange; collected only when the
    /// connector acknowledges (`acknowledgments = true`).
    pub acks: Vec<super::ack::AckIsa>,
    /// Where and why the tokenizer stopped, when it did (the file fails).
    pub broken: Option<(u64, super::Broken)>,
}

/// Compares the envelope's versions for one transaction set. ISA12 names
/// the envelope version (`00501`), GS08 and ST03 the implementation guide
/// (`005010X279A1`); ST03 wins when present (x12.md), so a disagreement is
/// a warning, not a refusal.
fn version_warnings(
    v: &mut Verdicts,
    isa12: &[u8],
    gs08: &[u8],
    st01: &[u8],
    st03: &[u8],
    at: &dyn Fn() -> String,
) -> bool {
    let mut set_level = false;
    let guide = if st03.is_empty() { gs08 } else { st03 };
    let mut warn = |what: String| {
        if v.warnings.len() < MAX_WARNINGS {
            v.warnings.push(format!("{}: {what}", at()));
        }
    };
    if gs08.len() >= 5 && !isa12.is_empty() && gs08[..5] != *isa12 {
        warn(format!(
            "envelope versions disagree: ISA12={} but GS08={}",
            show(isa12),
            show_long(gs08)
        ));
    }
    if !st03.is_empty() && !gs08.is_empty() && st03 != gs08 {
        set_level = true;
        warn(format!(
            "envelope versions disagree: GS08={} but ST03={} (ST03 is used)",
            show_long(gs08),
            show_long(st03)
        ));
    }
    if let Some(t) = super::guides::transaction(st01) {
        if guide.contains(&b'X') && !t.guides.iter().any(|g| g.as_bytes() == guide) {
            set_level = true;
            warn(format!(
                "{} is not an implementation guide of the {} (ST01={}; expected {})",
                show_long(guide),
                t.name,
                t.id,
                t.guides.join(", ")
            ));
        }
    }
    set_level
}

/// An ISA value that is malformed but does not stop the interchange being
/// read: its TA105 note code (the TA1 says `E`, accepted with errors) and a
/// warning. ISA09 a YYMMDD date, ISA10 an HHMM time, ISA14 0 or 1, ISA15 P or T.
fn isa_value_warning<'s>(e: &dyn Fn(usize) -> &'s [u8]) -> Option<(&'static str, String)> {
    let digits = |b: &[u8], n: usize| b.len() == n && b.iter().all(u8::is_ascii_digit);
    let num = |b: &[u8]| -> u32 { b.iter().fold(0, |a, d| a * 10 + u32::from(d - b'0')) };
    let date = e(9).trim_ascii();
    let time = e(10).trim_ascii();
    if !digits(date, 6) || !(1..=12).contains(&num(&date[2..4])) || !(1..=31).contains(&num(&date[4..6])) {
        return Some(("014", format!("ISA09={} is not a YYMMDD date", show(date))));
    }
    if !digits(time, 4) || num(&time[..2]) > 23 || num(&time[2..]) > 59 {
        return Some(("015", format!("ISA10={} is not an HHMM time", show(time))));
    }
    if !matches!(e(14).trim_ascii(), b"0" | b"1") {
        return Some(("019", format!("ISA14={} is not 0 or 1", show(e(14)))));
    }
    if !matches!(e(15).trim_ascii(), b"P" | b"T") {
        return Some(("020", format!("ISA15={} is not P or T", show(e(15)))));
    }
    None
}

/// Warnings kept per file: the first few tell the story.
const MAX_WARNINGS: usize = 20;

/// A version or guide id (up to 12 characters), shown safely.
fn show_long(b: &[u8]) -> String {
    b.iter()
        .take(16)
        .map(|c| if c.is_ascii_graphic() { *c as char } else { '?' })
        .collect()
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) interchange: u32,
    pub(super) group: u32,
    pub(super) set: u32,
}

struct OpenIsa {
    ordinal: u32,
    isa13: Ctl,
    groups: u64,
    segment: u64,
}
struct OpenGs {
    ordinal: u32,
    gs06: Ctl,
    sets: u64,
}
struct OpenSt {
    ordinal: u32,
    st02: Ctl,
    segments: u64,
    last_hl: u64,
    hl_stack: Vec<u64>,
    error: Option<String>,
}

impl OpenSt {
    /// Records the set's first error: its reason and, when the file is
    /// acknowledged, its 999 code (`note`). Later errors add nothing.
    fn broken(&mut self, acknowledge: bool, note: impl FnOnce(), reason: impl FnOnce() -> String) {
        if self.error.is_none() {
            if acknowledge {
                note();
            }
            self.error = Some(reason());
        }
    }
}

/// Pass 1: checks every envelope of the file at `path`.
pub fn validate(path: &Path, fmt: &X12Format) -> Result<Verdicts, ParseError> {
    let file = file_label(path);
    let f = File::open(path).map_err(|source| ParseError::Io {
        file: file.clone(),
        source,
    })?;
    validate_stream(f, fmt, &file)
}

pub(super) fn token_error(file: &str, e: TokenError) -> ParseError {
    match e {
        TokenError::Io(source) => ParseError::Io {
            file: file.to_string(),
            source,
        },
        broken @ TokenError::Broken { .. } => ParseError::Unreadable {
            file: file.to_string(),
            reason: broken.to_string(),
        },
    }
}

pub fn validate_stream<R: Read>(src: R, fmt: &X12Format, file: &str) -> Result<Verdicts, ParseError> {
    let v = verdicts_of(src, fmt, file)?;
    if v.bad_interchanges.len() as u32 == v.interchanges {
        let mut reasons: Vec<(&u32, &String)> = v.bad_interchanges.iter().collect();
        reasons.sort();
        return Err(ParseError::Unreadable {
            file: file.to_string(),
            reason: reasons[0].1.clone(),
        });
    }
    Ok(v)
}

fn verdicts_of<R: Read>(src: R, fmt: &X12Format, file: &str) -> Result<Verdicts, ParseError> {
    let mut v = Verdicts::default();
    walk(src, fmt, file, &mut v)?;
    Ok(v)
}

/// Pass 1 for the acknowledgments of the file at `path`: like
/// [`verdicts_of_file`], but a file the tokenizer gives up on (a broken ISA,
/// a truncated BIN) still yields what was seen up to there, with the
/// interchange that broke (its ISA recovered from the raw bytes) rejected.
/// The file fails as a whole then, so every interchange of it is rejected.
/// `None` when not even one ISA can be found.
pub fn verdicts_for_acks(path: &Path, fmt: &X12Format) -> Option<Verdicts> {
    let file = file_label(path);
    let f = File::open(path).ok()?;
    let mut v = Verdicts::default();
    if walk(f, fmt, &file, &mut v).is_ok() {
        return Some(v);
    }
    let (offset, reason) = v.broken.clone()?;
    let note = super::ack::note_for_broken(&reason);
    // Sound interchanges before the break are not committed either.
    let sound: Vec<u32> = v
        .acks
        .iter()
        .map(|i| i.ordinal)
        .filter(|o| !v.bad_interchanges.contains_key(o))
        .collect();
    let at_isa = note.is_some();
    let last = v.acks.last().map(|i| i.ordinal);
    for o in sound {
        let why = if !at_isa && Some(o) == last {
            // The break is inside this interchange (a BIN payload).
            "024"
        } else {
            "022"
        };
        refuse_isa(&mut v, o, why, || "the file cannot be read to its end".into());
    }
    if let Some(note) = note {
        let head = read_at(path, offset, 1024).ok()?;
        let ordinal = v.interchanges + 1;
        let mut isa = super::ack::recover_isa(&head, ordinal)?;
        isa.note = Some(note);
        v.interchanges += 1;
        v.bad_interchanges
            .insert(ordinal, "the ISA cannot be read".into());
        v.acks.push(isa);
    }
    (!v.acks.is_empty()).then_some(v)
}

/// Up to `len` bytes of the file at `path` from `offset`.
fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    f.take(len).read_to_end(&mut out)?;
    Ok(out)
}

fn walk<R: Read>(src: R, fmt: &X12Format, file: &str, v: &mut Verdicts) -> Result<(), ParseError> {
    let mut tok = Tokenizer::new(src, fmt);
    let mut n = Counters::default();
    let mut isa: Option<OpenIsa> = None;
    let mut gs: Option<OpenGs> = None;
    let mut st: Option<OpenSt> = None;
    let mut elems: Vec<(u32, u32)> = Vec::with_capacity(32);
    // Reused buffers: the versions of the open interchange and group.
    let mut isa12: Vec<u8> = Vec::with_capacity(8);
    let mut gs08: Vec<u8> = Vec::with_capacity(16);
    let outside = |what: &[u8], seg: u64| ParseError::Unreadable {
        file: file.to_string(),
        reason: format!("segment {seg} ({}) is outside any interchange", show(what)),
    };
    loop {
        match tok.next_segment() {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                if let TokenError::Broken { offset, reason, .. } = &e {
                    v.broken = Some((*offset, reason.clone()));
                }
                return Err(token_error(file, e));
            }
        }
        let segno = tok.file_segment;
        let id = tok.id();
        // Inside a transaction set most segments need only be counted.
        if let Some(s) = st.as_mut() {
            if id != b"SE" && id != b"HL" && id != b"ST" && id != b"GE" && id != b"IEA" && id != b"ISA" {
                s.segments += 1;
                if !(2..=3).contains(&id.len()) || !id.iter().all(u8::is_ascii_alphanumeric) {
                    let n = s.segments;
                    s.broken(
                        fmt.acknowledgments,
                        || super::ack::note_segment(v, id, n, "1", None),
                        || format!("segment {n} has no valid segment id"),
                    );
                }
                continue;
            }
        }
        tok.split(&mut elems);
        let seg = tok.segment();
        let e = |k: usize| elem(seg, &elems, k);
        match tok.id() {
            b"ISA" => {
                if let Some(open) = isa.take() {
                    refuse_isa(v, open.ordinal, "022", || {
                        format!(
                            "interchange ISA13={} has no IEA (a new ISA starts at segment {segno})",
                            open.isa13
                        )
                    });
                    close_open(v, &mut gs, &mut st, "no trailer before the next ISA");
                }
                n.interchange += 1;
                v.interchanges += 1;
                isa12.clear();
                isa12.extend_from_slice(e(12).trim_ascii());
                if fmt.acknowledgments {
                    super::ack::note_isa(v, n.interchange, &|k| e(k));
                }
                if let Some((note, what)) = isa_value_warning(&|k| e(k)) {
                    if v.warnings.len() < MAX_WARNINGS {
                        v.warnings
                            .push(format!("interchange ISA13={}: {what}", show(e(13))));
                    }
                    super::ack::note_interchange_warning(v, n.interchange, note);
                }
                isa = Some(OpenIsa {
                    ordinal: n.interchange,
                    isa13: Ctl::new(e(13)),
                    groups: 0,
                    segment: segno,
                });
            }
            b"GS" => {
                let Some(i) = isa.as_mut() else {
                    return Err(outside(b"GS", segno));
                };
                if let Some(open) = gs.take() {
                    refuse_group(v, open.ordinal, "3", || {
                        format!("group GS06={} has no GE (segment {segno} is a GS)", open.gs06)
                    });
                    if let Some(s) = st.take() {
                        v.bad_sets
                            .entry(s.ordinal)
                            .or_insert_with(|| "the set has no SE".into());
                    }
                }
                i.groups += 1;
                n.group += 1;
                gs08.clear();
                gs08.extend_from_slice(e(8).trim_ascii());
                if fmt.acknowledgments {
                    super::ack::note_gs(v, n.group, &|k| e(k));
                }
                // An interchange whose version (ISA12) is not its group's
                // (GS08) is read, but accepted with errors: TA105 017.
                if gs08.len() >= 5 && !isa12.is_empty() && gs08[..5] != isa12[..] {
                    super::ack::note_interchange_warning(v, i.ordinal, "017");
                }
                gs = Some(OpenGs {
                    ordinal: n.group,
                    gs06: Ctl::new(e(6)),
                    sets: 0,
                });
            }
            b"ST" => {
                // Counted first, so that both passes number sets alike.
                n.set += 1;
                v.sets += 1;
                let Some(i) = isa.as_ref() else {
                    return Err(outside(b"ST", segno));
                };
                let Some(g) = gs.as_mut() else {
                    refuse_isa(v, i.ordinal, "024", || {
                        format!(
                            "interchange ISA13={}: ST at segment {segno} is outside a GS/GE group",
                            i.isa13
                        )
                    });
                    continue;
                };
                if let Some(s) = st.take() {
                    v.bad_sets.entry(s.ordinal).or_insert_with(|| {
                        format!(
                            "transaction set ST02={} has no SE (segment {segno} is an ST)",
                            s.st02
                        )
                    });
                }
                g.sets += 1;
                if fmt.acknowledgments {
                    super::ack::note_st(v, n.set, &|k| e(k));
                }
                let set_level =
                    version_warnings(v, &isa12, &gs08, e(1).trim_ascii(), e(3).trim_ascii(), &|| {
                        format!(
                            "transaction set ST02={} (ISA13={}, GS06={})",
                            show(e(2)),
                            i.isa13,
                            g.gs06
                        )
                    });
                if set_level && fmt.acknowledgments {
                    // ST03 (element 3, data element 1705) is not the
                    // group's guide or not the transaction's: noted, and the
                    // set accepted with errors.
                    super::ack::note_set_warning(v, ("ST".into(), 1, "8", Some((3, "7"))));
                }
                st = Some(OpenSt {
                    ordinal: n.set,
                    st02: Ctl::new(e(2)),
                    segments: 1,
                    last_hl: 0,
                    hl_stack: Vec::new(),
                    error: None,
                });
            }
            b"HL" => {
                let Some(s) = st.as_mut() else {
                    continue;
                };
                s.segments += 1;
                let id = parse_u64(e(1));
                let parent = e(2).trim_ascii();
                let at = s.segments;
                match id {
                    Some(h) if h == s.last_hl + 1 => {
                        s.last_hl = h;
                        if parent.is_empty() {
                            s.hl_stack.clear();
                        } else {
                            let p = parse_u64(parent);
                            while s.hl_stack.last().is_some_and(|top| Some(*top) != p) {
                                s.hl_stack.pop();
                            }
                            if s.hl_stack.is_empty() {
                                s.broken(
                                    fmt.acknowledgments,
                                    || super::ack::note_segment(v, b"HL", at, "8", Some((2, "7"))),
                                    || {
                                        format!(
                                            "HL02={} at segment {at} does not point to an open parent HL",
                                            show(parent)
                                        )
                                    },
                                );
                            }
                        }
                        s.hl_stack.push(h);
                    }
                    _ => {
                        let want = s.last_hl + 1;
                        s.broken(
                            fmt.acknowledgments,
                            || super::ack::note_segment(v, b"HL", at, "8", Some((1, "7"))),
                            || {
                                format!(
                                    "HL01={} at segment {at} is out of sequence (expected {want})",
                                    show(e(1))
                                )
                            },
                        );
                        if let Some(h) = id {
                            s.last_hl = h;
                            s.hl_stack.push(h);
                        }
                    }
                }
            }
            b"SE" => {
                let Some(mut s) = st.take() else {
                    if let Some(i) = &isa {
                        refuse_isa(v, i.ordinal, "024", || {
                            format!("interchange ISA13={}: SE at segment {segno} has no ST", i.isa13)
                        });
                    }
                    continue;
                };
                s.segments += 1;
                // IK5 4: the segment count is wrong; 3: the control numbers differ.
                let n = s.segments;
                if parse_u64(e(1)) != Some(n) {
                    s.broken(
                        fmt.acknowledgments,
                        || super::ack::note_set(v, "4"),
                        || {
                            format!(
                                "SE01={} but the set has {n} segments including ST and SE (SE is segment {n})",
                                show(e(1))
                            )
                        },
                    );
                }
                if Ctl::new(e(2)) != s.st02 {
                    let st02 = s.st02;
                    s.broken(
                        fmt.acknowledgments,
                        || super::ack::note_set(v, "3"),
                        || {
                            format!(
                                "SE02={} does not match ST02={st02} (SE is segment {n})",
                                show(e(2))
                            )
                        },
                    );
                }
                if let Some(err) = s.error {
                    let (isa13, gs06) = (
                        isa.as_ref().map(|i| i.isa13).unwrap_or_default(),
                        gs.as_ref().map(|g| g.gs06).unwrap_or_default(),
                    );
                    v.bad_sets.insert(
                        s.ordinal,
                        format!(
                            "transaction set ST02={} (ISA13={isa13}, GS06={gs06}): {err}",
                            s.st02
                        ),
                    );
                }
            }
            b"GE" => {
                let Some(g) = gs.take() else {
                    if let Some(i) = &isa {
                        refuse_isa(v, i.ordinal, "024", || {
                            format!("interchange ISA13={}: GE at segment {segno} has no GS", i.isa13)
                        });
                    }
                    continue;
                };
                if let Some(s) = st.take() {
                    v.bad_sets.entry(s.ordinal).or_insert_with(|| {
                        format!(
                            "transaction set ST02={} has no SE (GE at file segment {segno})",
                            s.st02
                        )
                    });
                }
                let isa13 = isa.as_ref().map(|i| i.isa13).unwrap_or_default();
                if parse_u64(e(1)) != Some(g.sets) {
                    refuse_group(v, g.ordinal, "5", || {
                        format!(
                            "group GS06={} (ISA13={isa13}): GE01={} but the group has {} transaction sets (GE at file segment {segno})",
                            g.gs06,
                            show(e(1)),
                            g.sets
                        )
                    });
                } else if Ctl::new(e(2)) != g.gs06 {
                    refuse_group(v, g.ordinal, "4", || {
                        format!(
                            "group GS06={} (ISA13={isa13}): GE02={} does not match (GE at file segment {segno})",
                            g.gs06,
                            show(e(2))
                        )
                    });
                }
            }
            b"IEA" => {
                let Some(i) = isa.take() else {
                    return Err(outside(b"IEA", segno));
                };
                close_open(v, &mut gs, &mut st, "no trailer before IEA");
                if parse_u64(e(1)) != Some(i.groups) {
                    refuse_isa(v, i.ordinal, "021", || {
                        format!(
                            "interchange ISA13={} (ISA at file segment {}): IEA01={} but the interchange has {} functional groups (IEA at file segment {segno})",
                            i.isa13, i.segment, show(e(1)), i.groups
                        )
                    });
                } else if Ctl::new(e(2)) != i.isa13 {
                    refuse_isa(v, i.ordinal, "001", || {
                        format!(
                            "interchange ISA13={} (ISA at file segment {}): IEA02={} does not match ISA13 (IEA at file segment {segno})",
                            i.isa13, i.segment, show(e(2))
                        )
                    });
                }
            }
            other => {
                if isa.is_none() {
                    return Err(outside(other, segno));
                }
                if gs.is_none() || st.is_none() {
                    if let Some(i) = &isa {
                        let what = show(other);
                        refuse_isa(v, i.ordinal, "024", || {
                            format!(
                                "interchange ISA13={}: segment {segno} ({what}) is outside a transaction set",
                                i.isa13
                            )
                        });
                    }
                }
            }
        }
    }
    if let Some(i) = isa.take() {
        close_open(v, &mut gs, &mut st, "the file ends first");
        refuse_isa(v, i.ordinal, "023", || {
            format!("interchange ISA13={} has no IEA: the file ends first", i.isa13)
        });
    }
    if v.interchanges == 0 {
        return Err(ParseError::Unreadable {
            file: file.to_string(),
            reason: "the file holds no interchange".into(),
        });
    }
    Ok(())
}

/// Marks interchange `ordinal` broken (its first reason is kept), with the
/// TA105 note code its TA1 gives.
fn refuse_isa(v: &mut Verdicts, ordinal: u32, note: &'static str, why: impl FnOnce() -> String) {
    if let std::collections::hash_map::Entry::Vacant(e) = v.bad_interchanges.entry(ordinal) {
        e.insert(why());
        super::ack::note_interchange(v, ordinal, note);
    }
}

/// Marks group `ordinal` broken, with the AK905 code its 999 gives.
fn refuse_group(v: &mut Verdicts, ordinal: u32, ak905: &'static str, why: impl FnOnce() -> String) {
    if let std::collections::hash_map::Entry::Vacant(e) = v.bad_groups.entry(ordinal) {
        e.insert(why());
        super::ack::note_group(v, ordinal, ak905);
    }
}

fn close_open(v: &mut Verdicts, gs: &mut Option<OpenGs>, st: &mut Option<OpenSt>, why: &str) {
    if let Some(s) = st.take() {
        v.bad_sets
            .entry(s.ordinal)
            .or_insert_with(|| format!("transaction set ST02={} has no SE: {why}", s.st02));
    }
    if let Some(g) = gs.take() {
        refuse_group(v, g.ordinal, "3", || {
            format!("group GS06={} has no GE: {why}", g.gs06)
        });
    }
}
