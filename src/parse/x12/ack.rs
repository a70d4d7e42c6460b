//! Acknowledgments: a TA1 (interchange) and a 999 (implementation
//! acknowledgment, 005010X231A1) for every interchange received, built from
//! what pass 1 ([`super::validate`]) found, so the sender learns which
//! interchanges, groups and sets were accepted or rejected and where (IK3
//! segment, IK4 element) a set went wrong.
//!
//! Pass 1 notes the envelope fields and the first error of each set only
//! when the connector acknowledges; the acknowledgment is written after the
//! file is archived (or quarantined), beside it: `<file>.ta1`, `<file>.999`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::{Verdicts, X12Format};

/// An interchange as received.
#[derive(Debug, Clone, Default)]
pub struct AckIsa {
    pub ordinal: u32,
    /// ISA05..ISA08, ISA09, ISA10, ISA13, as received (trimmed).
    pub sender_qual: String,
    pub sender: String,
    pub receiver_qual: String,
    pub receiver: String,
    pub date: String,
    pub time: String,
    pub control: String,
    pub groups: Vec<AckGs>,
    /// TA105 when the interchange is rejected (the first problem found).
    pub note: Option<&'static str>,
    /// TA105 when it is accepted with errors noted (TA104 `E`).
    pub warning: Option<&'static str>,
}

#[derive(Debug, Clone, Default)]
pub struct AckGs {
    pub ordinal: u32,
    pub functional_id: String,
    pub sender: String,
    pub receiver: String,
    pub control: String,
    pub version: String,
    pub sets: Vec<AckSt>,
    /// AK905 when the group itself is broken (3 no GE, 4 GS06/GE02, 5 GE01).
    pub note: Option<&'static str>,
}

/// IK3: segment id, position in the set, IK304 code; IK4: (element, IK403 code).
pub type SegmentError = (String, u64, &'static str, Option<(usize, &'static str)>);

#[derive(Debug, Clone, Default)]
pub struct AckSt {
    pub ordinal: u32,
    pub id: String,
    pub control: String,
    pub guide: String,
    /// The first segment in error: IK3 and, when an element, IK4.
    pub segment_error: Option<SegmentError>,
    /// IK5 code for a trailer error (2 no SE, 3 control numbers, 4 count).
    pub trailer_error: Option<&'static str>,
    /// An error noted that does not reject the set (IK5 `E`): ST03 not
    /// the group's or the transaction's implementation guide.
    pub warning: Option<SegmentError>,
}

fn text(b: &[u8]) -> String {
    b.trim_ascii()
        .iter()
        .take(35)
        .map(|c| {
            if c.is_ascii_graphic() || *c == b' ' {
                *c as char
            } else {
                '?'
            }
        })
        .collect()
}

pub(super) fn note_isa<'s>(v: &mut Verdicts, ordinal: u32, e: &dyn Fn(usize) -> &'s [u8]) {
    v.acks.push(AckIsa {
        ordinal,
        sender_qual: text(e(5)),
        sender: text(e(6)),
        receiver_qual: text(e(7)),
        receiver: text(e(8)),
        date: text(e(9)),
        time: text(e(10)),
        control: text(e(13)),
        groups: Vec::new(),
        note: None,
        warning: None,
    });
}

pub(super) fn note_gs<'s>(v: &mut Verdicts, ordinal: u32, e: &dyn Fn(usize) -> &'s [u8]) {
    if let Some(i) = v.acks.last_mut() {
        i.groups.push(AckGs {
            ordinal,
            functional_id: text(e(1)),
            sender: text(e(2)),
            receiver: text(e(3)),
            control: text(e(6)),
            version: text(e(8)),
            sets: Vec::new(),
            note: None,
        });
    }
}

pub(super) fn note_st<'s>(v: &mut Verdicts, ordinal: u32, e: &dyn Fn(usize) -> &'s [u8]) {
    if let Some(g) = v.acks.last_mut().and_then(|i| i.groups.last_mut()) {
        g.sets.push(AckSt {
            ordinal,
            id: text(e(1)),
            control: text(e(2)),
            guide: text(e(3)),
            segment_error: None,
            trailer_error: None,
            warning: None,
        });
    }
}

fn last_set(v: &mut Verdicts) -> Option<&mut AckSt> {
    v.acks
        .last_mut()
        .and_then(|i| i.groups.last_mut())
        .and_then(|g| g.sets.last_mut())
}

pub(super) fn note_segment(
    v: &mut Verdicts,
    id: &[u8],
    position: u64,
    code: &'static str,
    element: Option<(usize, &'static str)>,
) {
    if let Some(s) = last_set(v) {
        s.segment_error.get_or_insert((text(id), position, code, element));
    }
}

pub(super) fn note_set(v: &mut Verdicts, code: &'static str) {
    if let Some(s) = last_set(v) {
        s.trailer_error.get_or_insert(code);
    }
}

fn isa_mut(v: &mut Verdicts, ordinal: u32) -> Option<&mut AckIsa> {
    v.acks.iter_mut().rev().find(|i| i.ordinal == ordinal)
}

/// Interchange `ordinal` is rejected with TA105 `note` (the first wins).
pub(super) fn note_interchange(v: &mut Verdicts, ordinal: u32, note: &'static str) {
    if let Some(i) = isa_mut(v, ordinal) {
        i.note.get_or_insert(note);
    }
}

/// Interchange `ordinal` is accepted with an error noted (TA105 `note`).
pub(super) fn note_interchange_warning(v: &mut Verdicts, ordinal: u32, note: &'static str) {
    if let Some(i) = isa_mut(v, ordinal) {
        i.warning.get_or_insert(note);
    }
}

/// Group `ordinal` is rejected with AK905 `code`.
pub(super) fn note_group(v: &mut Verdicts, ordinal: u32, code: &'static str) {
    let g = v
        .acks
        .iter_mut()
        .rev()
        .flat_map(|i| i.groups.iter_mut().rev())
        .find(|g| g.ordinal == ordinal);
    if let Some(g) = g {
        g.note.get_or_insert(code);
    }
}

/// The open set has an error that does not reject it (IK5 `E`).
pub(super) fn note_set_warning(v: &mut Verdicts, what: SegmentError) {
    if let Some(s) = last_set(v) {
        s.warning.get_or_insert(what);
    }
}

/// The TA105 note code of an ISA the tokenizer cannot read; `None` when
/// the break is not in an ISA (there is then no interchange to reject).
pub fn note_for_broken(reason: &super::Broken) -> Option<&'static str> {
    use super::Broken;
    Some(match reason {
        Broken::IsaTruncated => "023",
        Broken::IsaWidth { element, .. } => match element {
            1 => "010",
            2 => "011",
            3 => "012",
            4 => "013",
            5 => "005",
            6 => "006",
            7 => "007",
            8 => "008",
            9 => "014",
            10 => "015",
            11 => "016",
            12 => "017",
            13 => "018",
            14 => "019",
            15 => "020",
            _ => "027",
        },
        // The widths are right but the bytes are not where they belong (a
        // line break inside the ISA).
        Broken::IsaLength => "022",
        Broken::DelimitersCollide {
            element, component, ..
        } if element == component => "027",
        Broken::DelimitersCollide { .. } => "004",
        Broken::RepetitionIsComponent { .. } => "027",
        Broken::NoIsa | Broken::BinLength | Broken::BinTruncated { .. } | Broken::BinUnterminated { .. } => {
            return None
        }
    })
}

/// What can be read of a broken ISA (`head` starts at `ISA`): its elements
/// split at the byte after `ISA`. Values of the wrong shape are replaced by
/// zeros (dates, times, the control number) or cut to their width (ids), so
/// the TA1 built from it is itself well formed. `None` without an ISA.
pub fn recover_isa(head: &[u8], ordinal: u32) -> Option<AckIsa> {
    if head.len() < 4 || !head.starts_with(b"ISA") || head[3].is_ascii_alphanumeric() {
        return None;
    }
    let sep = head[3];
    let fields: Vec<&[u8]> = head[4..].splitn(17, |b| *b == sep).collect();
    // fields[k - 1] is ISAk.
    let raw = |k: usize| -> Vec<u8> {
        fields
            .get(k - 1)
            .map(|f| f.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect())
            .unwrap_or_default()
    };
    let id = |k: usize, width: usize| -> String {
        let t = text(&raw(k));
        t.chars().take(width).collect()
    };
    let shaped = |k: usize, width: usize| -> String {
        let r = raw(k);
        let t = r.trim_ascii();
        if t.len() == width && t.iter().all(u8::is_ascii_digit) {
            text(t)
        } else {
            "0".repeat(width)
        }
    };
    Some(AckIsa {
        ordinal,
        sender_qual: id(5, 2),
        sender: id(6, 15),
        receiver_qual: id(7, 2),
        receiver: id(8, 15),
        date: shaped(9, 6),
        time: shaped(10, 4),
        control: shaped(13, 9),
        groups: Vec::new(),
        note: None,
        warning: None,
    })
}

/// The TA1 and 999 of one file, as X12 text (one interchange each per
/// interchange received; sender and receiver swapped).
#[derive(Debug, Default)]
pub struct Acks {
    pub ta1: String,
    pub ack999: String,
}

/// Builds the acknowledgments of `v` (pass 1 with `acknowledgments` on).
/// `now` is `YYMMDD`, `HHMM` and `CCYYMMDD` for the envelopes.
pub fn build(v: &Verdicts, now: (&str, &str, &str)) -> Acks {
    let (yymmdd, hhmm, ccyymmdd) = now;
    let mut out = Acks::default();
    for (n, i) in v.acks.iter().enumerate() {
        let ctl = format!("{:09}", (n + 1) % 1_000_000_000);
        let isa = format!(
            "ISA*00*          *00*          *{:<2}*{:<15}*{:<2}*{:<15}*{yymmdd}*{hhmm}*^*00501*{ctl}*0*P*:~\n",
            i.receiver_qual, i.receiver, i.sender_qual, i.sender
        );
        let bad_isa = v.bad_interchanges.contains_key(&i.ordinal);
        // TA1: A accepted (TA105 000), E accepted with an error noted, R
        // rejected; TA105 says what (001 ISA13/IEA02 differ, 021 the group
        // count, 023 the file ends first, 024 content outside its envelope …).
        let (ta104, ta105) = match (bad_isa, i.warning) {
            (true, _) => ("R", i.note.unwrap_or("024")),
            (false, Some(w)) => ("E", w),
            (false, None) => ("A", "000"),
        };
        let _ = writeln!(
            out.ta1,
            "{isa}TA1*{}*{}*{}*{ta104}*{ta105}~\nIEA*0*{ctl}~",
            i.control, i.date, i.time,
        );
        let mut body = String::new();
        let mut groups = 0;
        for (k, g) in i.groups.iter().enumerate() {
            groups += 1;
            let st02 = format!("{:04}", k + 1);
            let mut set = String::new();
            let mut segs = 0usize;
            let mut seg = |s: String| {
                set.push_str(&s);
                set.push_str("~\n");
                segs += 1;
            };
            seg(format!("ST*999*{st02}*005010X231A1"));
            seg(format!("AK1*{}*{}*{}", g.functional_id, g.control, g.version));
            let bad_group = bad_isa || v.bad_groups.contains_key(&g.ordinal);
            let mut accepted = 0;
            let mut with_errors = 0;
            for s in &g.sets {
                seg(format!("AK2*{}*{}*{}", s.id, s.control, s.guide)
                    .trim_end_matches('*')
                    .to_string());
                let rejected = bad_group || v.bad_sets.contains_key(&s.ordinal);
                // IK3 loops in segment order: a warning is at ST, before any error.
                for (id, pos, code, element) in s.warning.iter().chain(&s.segment_error) {
                    seg(format!("IK3*{id}*{pos}**{code}"));
                    if let Some((el, c)) = element {
                        seg(format!("IK4*{el}**{c}"));
                    }
                }
                if rejected {
                    let why = match (s.trailer_error, &s.segment_error) {
                        (Some(t), _) => t,
                        (None, Some(_)) => "5",
                        // The set or its group has no trailer, or its envelope broke.
                        (None, None) => "2",
                    };
                    seg(format!("IK5*R*{why}"));
                } else if s.warning.is_some() {
                    // Accepted, but errors were noted (IK502 5: segment errors).
                    accepted += 1;
                    with_errors += 1;
                    seg("IK5*E*5".to_string());
                } else {
                    accepted += 1;
                    seg("IK5*A".to_string());
                }
            }
            let n = g.sets.len();
            // AK901: R rejected, P partially accepted (a set rejected), E
            // every set accepted but one with errors noted, A accepted.
            let ak901 = if bad_group || (accepted == 0 && n > 0) {
                "R"
            } else if accepted < n {
                "P"
            } else if with_errors > 0 {
                "E"
            } else {
                "A"
            };
            let ak905 = match g.note.filter(|_| v.bad_groups.contains_key(&g.ordinal)) {
                Some(c) => format!("*{c}"),
                None => String::new(),
            };
            seg(format!("AK9*{ak901}*{n}*{n}*{accepted}{ak905}"));
            let count = segs + 1;
            set.push_str(&format!("SE*{count}*{st02}~\n"));
            let _ = writeln!(
                body,
                "GS*FA*{}*{}*{ccyymmdd}*{hhmm}*{}*X*005010X231A1~\n{set}GE*1*{}~",
                g.receiver,
                g.sender,
                k + 1,
                k + 1
            );
        }
        if groups > 0 {
            let _ = writeln!(out.ack999, "{isa}{body}IEA*{groups}*{ctl}~");
        }
    }
    out
}

impl Acks {
    /// The acknowledgment files of input `name`: `<name>.ta1` and
    /// `<name>.999`, each only when it has content.
    pub fn files(&self, name: &str) -> Vec<(String, &str)> {
        [("ta1", &self.ta1), ("999", &self.ack999)]
            .into_iter()
            .filter(|(_, body)| !body.is_empty())
            .map(|(ext, body)| (format!("{name}.{ext}"), body.as_str()))
            .collect()
    }
}

/// The acknowledgments of the file at `file`, stamped now. `None` when
/// there is no one to address them to (no ISA at all).
pub fn of_file(file: &Path, fmt: &X12Format) -> Option<Acks> {
    let fmt = X12Format {
        acknowledgments: true,
        ..fmt.clone()
    };
    let v = super::envelope::verdicts_for_acks(file, &fmt)?;
    if v.acks.is_empty() {
        return None;
    }
    let now = chrono::Utc::now();
    Some(build(
        &v,
        (
            &now.format("%y%m%d").to_string(),
            &now.format("%H%M").to_string(),
            &now.format("%Y%m%d").to_string(),
        ),
    ))
}

/// Writes the acknowledgments of input `name` into `dir`; returns their paths.
pub fn write_into(dir: &Path, name: &str, acks: &Acks) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (file, body) in acks.files(name) {
        let p = dir.join(file);
        std::fs::write(&p, body)?;
        written.push(p);
    }
    Ok(written)
}

/// Writes `<file>.ta1` and `<file>.999` beside `file` (already archived or
/// quarantined); returns their paths. Nothing for a file with no ISA at all
/// (there is no one to address the acknowledgment to).
pub fn write_beside(file: &Path, fmt: &X12Format) -> std::io::Result<Vec<PathBuf>> {
    let Some(acks) = of_file(file, fmt) else {
        return Ok(Vec::new());
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    write_into(file.parent().unwrap_or(Path::new(".")), &name, &acks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks_of(fixture: &str) -> Acks {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
        let fmt = X12Format {
            acknowledgments: true,
            ..X12Format::default()
        };
        let v = super::super::envelope::verdicts_for_acks(&path, &fmt).expect("pass 1 reads the fixture");
        build(&v, ("261124", "0900", "20261124"))
    }

    fn acks_of_text(x12: &str) -> Option<Acks> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("in.x12");
        std::fs::write(&path, x12).expect("write input");
        let fmt = X12Format {
            acknowledgments: true,
            ..X12Format::default()
        };
        super::super::envelope::verdicts_for_acks(&path, &fmt)
            .map(|v| build(&v, ("261124", "0900", "20261124")))
    }

    const GOOD_ISA: &str =
        "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *261122*0930*^*00501*000000042*0*P*:~";
    const BODY: &str = "GS*HI*A*B*20261122*0930*7*X*005010X217~ST*278*0001*005010X217~BHT*0007*11*R*20261122*0930*18~SE*3*0001~GE*1*7~IEA*1*000000042~";

    fn segments(x12: &str) -> Vec<&str> {
        x12.split("~\n").filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn a_good_file_is_accepted_at_every_level() {
        let a = acks_of("fixtures/x12/278-three-events.x12");
        let ta1 = segments(&a.ta1);
        assert!(
            ta1[1].starts_with("TA1*") && ta1[1].ends_with("*A*000"),
            "{ta1:?}"
        );
        // Sender and receiver are swapped: the acknowledgment goes back.
        assert!(
            ta1[0].contains("*ZZ*HUBSYNC        *ZZ*ACMEPAYER      *"),
            "{ta1:?}"
        );
        let s = segments(&a.ack999);
        assert!(s.contains(&"IK5*A"), "{s:?}");
        assert!(s.iter().any(|x| x.starts_with("AK9*A*")), "{s:?}");
        // SE01 counts ST through SE.
        let st = s.iter().position(|x| x.starts_with("ST*999")).expect("ST");
        let se = s.iter().position(|x| x.starts_with("SE*")).expect("SE");
        assert_eq!(s[se], format!("SE*{}*0001", se - st + 1));
    }

    #[test]
    fn a_bad_set_is_rejected_and_its_group_partially_accepted() {
        let a = acks_of("fixtures/x12/278-bad-set-count.x12");
        let s = segments(&a.ack999);
        assert!(s.contains(&"IK5*A") && s.contains(&"IK5*R*4"), "{s:?}");
        assert!(s.iter().any(|x| x.starts_with("AK9*P*2*2*1")), "{s:?}");
    }

    #[test]
    fn a_bad_hl_names_its_segment_and_element() {
        let a = acks_of("fixtures/x12/278-bad-hl-parent.x12");
        let s = segments(&a.ack999);
        let ik3 = s.iter().find(|x| x.starts_with("IK3*HL*")).expect("IK3");
        assert!(ik3.ends_with("**8"), "{s:?}");
        assert!(s.contains(&"IK4*2**7") && s.contains(&"IK5*R*5"), "{s:?}");
    }

    #[test]
    fn a_broken_interchange_is_rejected_in_its_ta1() {
        let a = acks_of("fixtures/x12/278-bad-iea.x12");
        let ta1 = segments(&a.ta1);
        assert!(ta1[1].ends_with("*R*001"), "{ta1:?}");
        assert!(
            segments(&a.ack999).iter().any(|x| x.starts_with("AK9*R*")),
            "{}",
            a.ack999
        );
    }

    #[test]
    fn an_unreadable_isa_still_gets_a_rejecting_ta1_from_what_can_be_read() {
        // ISA02 is 9 characters wide: the tokenizer refuses the interchange.
        let a = acks_of("fixtures/x12-public/837-bad-first-line.x12");
        let ta1 = segments(&a.ta1);
        assert!(
            ta1[0].contains("*ZZ*RECEIVERS.ID   *ZZ*SUBMITTERS.ID  *"),
            "addressed back to the sender: {ta1:?}"
        );
        // TA105 011: invalid authorization information value (ISA02).
        assert_eq!(ta1[1], "TA1*000000905*030101*1253*R*011", "{ta1:?}");
        assert!(
            a.ack999.is_empty(),
            "no group of a rejected interchange is acknowledged"
        );

        // Cut inside the ISA: the file ends prematurely (023); the control
        // number cannot be read and is zeros, so the TA1 stays well formed.
        let a = acks_of_text(&GOOD_ISA[..60]).expect("the ISA's start is addressable");
        let ta1 = segments(&a.ta1);
        assert!(
            ta1[0].contains("*ZZ*RECEIV         *ZZ*SENDER         *"),
            "what was read: {ta1:?}"
        );
        assert_eq!(ta1[1], "TA1*000000000*000000*0000*R*023", "{ta1:?}");

        // Element and component separators are the same byte: 027.
        let collide = format!("{}{BODY}", GOOD_ISA.replace("*P*:~", "*P**~"));
        let a = acks_of_text(&collide).expect("addressable");
        assert!(segments(&a.ta1)[1].ends_with("*R*027"), "{}", a.ta1);

        // No ISA at all: nobody to address it to.
        assert!(acks_of_text("GS*HI*A*B~").is_none());
    }

    #[test]
    fn a_break_after_a_sound_interchange_rejects_the_whole_file() {
        // The second interchange's BIN announces more bytes than there are:
        // the file fails, so the first (sound) interchange is not taken either.
        let second = GOOD_ISA.replace("000000042", "000000043");
        let text = format!(
            "{GOOD_ISA}{BODY}{second}GS*PI*A*B*20261122*0930*8*X*005010X210~ST*275*0001~BIN*99*short~"
        );
        let a = acks_of_text(&text).expect("addressable");
        let ta1 = segments(&a.ta1);
        let ta1s: Vec<&&str> = ta1.iter().filter(|s| s.starts_with("TA1*")).collect();
        assert_eq!(
            ta1s,
            [
                &"TA1*000000042*261122*0930*R*022",
                &"TA1*000000043*261122*0930*R*024"
            ],
            "{ta1:?}"
        );
    }

    #[test]
    fn version_disagreements_are_accepted_with_errors() {
        // ISA12 00401, GS08 005010X279A1, ST03 005010X217 on a 271.
        let a = acks_of("fixtures/x12/271-version-mismatch.x12");
        let ta1 = segments(&a.ta1);
        // TA105 017: the interchange version does not fit its content.
        assert!(ta1[1].ends_with("*E*017"), "{ta1:?}");
        let s = segments(&a.ack999);
        for want in ["IK3*ST*1**8", "IK4*3**7", "IK5*E*5", "AK9*E*1*1*1"] {
            assert!(s.contains(&want), "missing {want}: {s:?}");
        }
    }

    #[test]
    fn a_malformed_isa_value_is_accepted_with_its_note() {
        let text = format!("{}{BODY}", GOOD_ISA.replace("*261122*", "*261340*"));
        let a = acks_of_text(&text).expect("addressable");
        // TA105 014: invalid interchange date; the groups are still acknowledged.
        assert!(segments(&a.ta1)[1].ends_with("*E*014"), "{}", a.ta1);
        let s = segments(&a.ack999);
        assert!(s.contains(&"IK5*A") && s.contains(&"AK9*A*1*1*1"), "{s:?}");
        let text = format!("{}{BODY}", GOOD_ISA.replace("*0*P*", "*0*X*"));
        assert!(segments(&acks_of_text(&text).expect("addressable").ta1)[1].ends_with("*E*020"));
    }

    #[test]
    fn a_broken_group_names_its_error_in_ak905() {
        let a = acks_of("fixtures/x12/278-bad-ge-count.x12");
        let s = segments(&a.ack999);
        let ak9 = s.iter().find(|x| x.starts_with("AK9*")).expect("AK9");
        assert!(
            ak9.starts_with("AK9*R*") && ak9.ends_with("*5"),
            "GE01 count: {s:?}"
        );
        // IEA01 disagreeing with the group count: TA105 021.
        let text = format!("{GOOD_ISA}{BODY}").replace("IEA*1*", "IEA*2*");
        assert!(segments(&acks_of_text(&text).expect("addressable").ta1)[1].ends_with("*R*021"));
    }
}
