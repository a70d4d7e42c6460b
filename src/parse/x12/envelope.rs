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
) {
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
        warn(format!(
            "envelope versions disagree: GS08={} but ST03={} (ST03 is used)",
            show_long(gs08),
            show_long(st03)
        ));
    }
    if let Some(t) = super::guides::transaction(st01) {
        if guide.contains(&b'X') && !t.guides.iter().any(|g| g.as_bytes() == guide) {
            warn(format!(
                "{} is not an implementation guide of the {} (ST01={}; expected {})",
                show_long(guide),
                t.name,
                t.id,
                t.guides.join(", ")
            ));
        }
    }
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

/// Pass 1 of the file at `path`, whether or not any interchange is sound
/// (the acknowledgments of a wholly rejected file still name its interchanges).
pub fn verdicts_of_file(path: &Path, fmt: &X12Format) -> Result<Verdicts, ParseError> {
    let file = file_label(path);
    let f = File::open(path).map_err(|source| ParseError::Io {
        file: file.clone(),
        source,
    })?;
    verdicts_of(f, fmt, &file)
}

fn verdicts_of<R: Read>(src: R, fmt: &X12Format, file: &str) -> Result<Verdicts, ParseError> {
    let mut tok = Tokenizer::new(src, fmt);
    let mut v = Verdicts::default();
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
    while tok.next_segment().map_err(|e| token_error(file, e))? {
        let segno = tok.file_segment;
        let id = tok.id();
        // Inside a transaction set most segments need only be counted.
        if let Some(s) = st.as_mut() {
            if id != b"SE" && id != b"HL" && id != b"ST" && id != b"GE" && id != b"IEA" && id != b"ISA" {
                s.segments += 1;
                if !(2..=3).contains(&id.len()) || !id.iter().all(u8::is_ascii_alphanumeric) {
                    if s.error.is_none() && fmt.acknowledgments {
                        super::ack::note_segment(&mut v, id, s.segments, "1", None);
                    }
                    s.error
                        .get_or_insert_with(|| format!("segment {} has no valid segment id", s.segments));
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
                    v.bad_interchanges.entry(open.ordinal).or_insert_with(|| {
                        format!(
                            "interchange ISA13={} has no IEA (a new ISA starts at segment {segno})",
                            open.isa13
                        )
                    });
                    close_open(&mut v, &mut gs, &mut st, "no trailer before the next ISA");
                }
                n.interchange += 1;
                v.interchanges += 1;
                isa12.clear();
                isa12.extend_from_slice(e(12).trim_ascii());
                if fmt.acknowledgments {
                    super::ack::note_isa(&mut v, n.interchange, &|k| e(k));
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
                    v.bad_groups.entry(open.ordinal).or_insert_with(|| {
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
                    super::ack::note_gs(&mut v, n.group, &|k| e(k));
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
                    v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
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
                    super::ack::note_st(&mut v, n.set, &|k| e(k));
                }
                version_warnings(
                    &mut v,
                    &isa12,
                    &gs08,
                    e(1).trim_ascii(),
                    e(3).trim_ascii(),
                    &|| {
                        format!(
                            "transaction set ST02={} (ISA13={}, GS06={})",
                            show(e(2)),
                            i.isa13,
                            g.gs06
                        )
                    },
                );
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
                                if s.error.is_none() && fmt.acknowledgments {
                                    super::ack::note_segment(&mut v, b"HL", at, "8", Some((2, "7")));
                                }
                                s.error.get_or_insert_with(|| {
                                    format!(
                                        "HL02={} at segment {at} does not point to an open parent HL",
                                        show(parent)
                                    )
                                });
                            }
                        }
                        s.hl_stack.push(h);
                    }
                    _ => {
                        let want = s.last_hl + 1;
                        if s.error.is_none() && fmt.acknowledgments {
                            super::ack::note_segment(&mut v, b"HL", at, "8", Some((1, "7")));
                        }
                        s.error.get_or_insert_with(|| {
                            format!(
                                "HL01={} at segment {at} is out of sequence (expected {want})",
                                show(e(1))
                            )
                        });
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
                        v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                            format!("interchange ISA13={}: SE at segment {segno} has no ST", i.isa13)
                        });
                    }
                    continue;
                };
                s.segments += 1;
                let declared = parse_u64(e(1));
                if declared != Some(s.segments) {
                    if s.error.is_none() && fmt.acknowledgments {
                        super::ack::note_set(&mut v, "4");
                    }
                    s.error.get_or_insert_with(|| {
                        format!(
                            "SE01={} but the set has {} segments including ST and SE (SE is segment {})",
                            show(e(1)),
                            s.segments,
                            s.segments
                        )
                    });
                }
                if Ctl::new(e(2)) != s.st02 {
                    if s.error.is_none() && fmt.acknowledgments {
                        super::ack::note_set(&mut v, "3");
                    }
                    s.error.get_or_insert_with(|| {
                        format!(
                            "SE02={} does not match ST02={} (SE is segment {})",
                            show(e(2)),
                            s.st02,
                            s.segments
                        )
                    });
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
                        v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
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
                    v.bad_groups.entry(g.ordinal).or_insert_with(|| {
                        format!(
                            "group GS06={} (ISA13={isa13}): GE01={} but the group has {} transaction sets (GE at file segment {segno})",
                            g.gs06,
                            show(e(1)),
                            g.sets
                        )
                    });
                } else if Ctl::new(e(2)) != g.gs06 {
                    v.bad_groups.entry(g.ordinal).or_insert_with(|| {
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
                close_open(&mut v, &mut gs, &mut st, "no trailer before IEA");
                if parse_u64(e(1)) != Some(i.groups) {
                    v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                        format!(
                            "interchange ISA13={} (ISA at file segment {}): IEA01={} but the interchange has {} functional groups (IEA at file segment {segno})",
                            i.isa13, i.segment, show(e(1)), i.groups
                        )
                    });
                } else if Ctl::new(e(2)) != i.isa13 {
                    v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
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
                        v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
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
        close_open(&mut v, &mut gs, &mut st, "the file ends first");
        v.bad_interchanges
            .entry(i.ordinal)
            .or_insert_with(|| format!("interchange ISA13={} has no IEA: the file ends first", i.isa13));
    }
    if v.interchanges == 0 {
        return Err(ParseError::Unreadable {
            file: file.to_string(),
            reason: "the file holds no interchange".into(),
        });
    }
    Ok(v)
}

fn close_open(v: &mut Verdicts, gs: &mut Option<OpenGs>, st: &mut Option<OpenSt>, why: &str) {
    if let Some(s) = st.take() {
        v.bad_sets
            .entry(s.ordinal)
            .or_insert_with(|| format!("transaction set ST02={} has no SE: {why}", s.st02));
    }
    if let Some(g) = gs.take() {
        v.bad_groups
            .entry(g.ordinal)
            .or_insert_with(|| format!("group GS06={} has no GE: {why}", g.gs06));
    }
}
