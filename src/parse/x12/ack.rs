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
        // TA1: A accepted, R rejected; TA105 000 no error, 001 the control
        // numbers (or group count) in the header and trailer do not match.
        let _ = writeln!(
            out.ta1,
            "{isa}TA1*{}*{}*{}*{}*{}~\nIEA*0*{ctl}~",
            i.control,
            i.date,
            i.time,
            if bad_isa { "R" } else { "A" },
            if bad_isa { "001" } else { "000" }
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
            for s in &g.sets {
                seg(format!("AK2*{}*{}*{}", s.id, s.control, s.guide)
                    .trim_end_matches('*')
                    .to_string());
                let rejected = bad_group || v.bad_sets.contains_key(&s.ordinal);
                if let Some((id, pos, code, element)) = &s.segment_error {
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
                } else {
                    accepted += 1;
                    seg("IK5*A".to_string());
                }
            }
            let n = g.sets.len();
            let ak901 = if bad_group || (accepted == 0 && n > 0) {
                "R"
            } else if accepted < n {
                "P"
            } else {
                "A"
            };
            seg(format!("AK9*{ak901}*{n}*{n}*{accepted}"));
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
    let v = super::envelope::verdicts_of_file(file, &fmt).ok()?;
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
        let v = super::super::envelope::verdicts_of_file(&path, &fmt).expect("pass 1 reads the fixture");
        build(&v, ("261124", "0900", "20261124"))
    }

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
}
