//! X12 (ASC X12 5010/4010): a byte-level streaming tokenizer, envelope
//! validation, natural record units, and the path syntax mappings use to
//! address elements.
//!
//! No crate fits (the one complete parser is GPL, another hard-codes `*` and
//! `~`), and a tokenizer is small: segments end at one terminator byte, so
//! `memchr` finds them and nothing is ever decoded that a mapping does not read.
//!
//! A file is read twice, both times streaming in a fixed buffer:
//!
//! 1. [`validate`] checks every envelope (ISA/IEA, GS/GE, ST/SE control numbers
//!    and counts, the HL parent chain) and notes which interchanges, groups
//!    and transaction sets are broken. Two passes because a broken envelope
//!    is only known at its trailer, and its records must not have been
//!    emitted by then; buffering a whole interchange instead would hold the
//!    whole file in memory.
//! 2. [`X12Reader`] yields records, skipping broken envelopes (each becomes
//!    one reject naming its reason). A record is a natural unit: a 278
//!    patient event (HL EV) with its services, a 271 subscriber or dependent
//!    (HL 22/23). While a record is read, only its own segments, its
//!    ancestor loops' segments and the envelope headers are held.
//!
//! Elements are decoded (Windows-1252, a superset of Latin-1's printable
//! range) only when a mapping reads them, one element at a time.
//!
//! Layout: [`tokenizer`] splits bytes into segments, [`envelope`] is pass 1,
//! [`paths`] compiles and resolves mapping paths, [`reader`] is pass 2.

pub mod ack;
mod envelope;
pub mod guides;
mod paths;
mod reader;
mod tokenizer;

pub use envelope::{validate, validate_stream, Verdicts};
pub use paths::{parse_path, parse_path_in, Rep, X12Path, SEGMENTS};
pub use reader::{X12Next, X12Reader};
pub use tokenizer::{split_elements, Broken, Delims, TokenError, Tokenizer};

#[cfg(test)]
use super::Row;
#[cfg(test)]
use paths::write_element;

use super::Ctl;

// ---------------------------------------------------------------- options

/// What to do when ISA11 (repetition separator) equals ISA16 (component
/// separator). X12 has no escape, so the two cannot be told apart; a partner
/// that does this must be accepted knowingly, per connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeparatorCollision {
    /// The interchange is refused.
    #[default]
    Reject,
    /// The shared byte separates repetitions; elements have no components.
    Repetition,
    /// The shared byte separates components; elements have no repetitions.
    Component,
}

/// Validated X12 settings of one connector.
#[derive(Debug, Clone, Default)]
pub struct X12Format {
    pub collision: SeparatorCollision,
    /// Accept an ISA whose elements are not at their fixed widths (the
    /// delimiters are then found by counting separators), with a warning.
    pub lenient_isa_width: bool,
    /// HL03 level codes that start a record; empty means the default for the
    /// transaction set (278: EV; others: 22 and 23).
    pub record_levels: Vec<String>,
    /// ST01 transaction sets the connector accepts; others are refused with
    /// their reason. Empty: any (the mapping's `transaction` by default).
    pub transaction_sets: Vec<String>,
    /// Purpose codes (BHT02; BPT01 for an 867) the connector accepts, e.g.
    /// `11` for responses only. Empty: any.
    pub purposes: Vec<String>,
    /// Write a TA1 and a 999 beside every archived interchange.
    pub acknowledgments: bool,
}

// ---------------------------------------------------------------- helpers

pub(crate) fn elem<'s>(seg: &'s [u8], elems: &[(u32, u32)], n: usize) -> &'s [u8] {
    elems
        .get(n)
        .map_or(&[][..], |(s, e)| &seg[*s as usize..*e as usize])
}

pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    let t = b.trim_ascii();
    if t.is_empty() || t.len() > 18 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// Shows an id or control value from the envelope safely (never PHI: ids,
/// counts and control numbers only).
pub(crate) fn show(b: &[u8]) -> String {
    Ctl::new(b).to_string()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn segments(input: &[u8], fmt: &X12Format) -> Result<Vec<String>, String> {
        let mut t = Tokenizer::new(input, fmt);
        let mut out = Vec::new();
        loop {
            match t.next_segment() {
                Ok(true) => out.push(String::from_utf8_lossy(t.segment()).into_owned()),
                Ok(false) => return Ok(out),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub(crate) fn isa(elem: char, rep: char, comp: char, term: char, ctl: &str) -> String {
        format!(
            "ISA{e}00{e}          {e}00{e}          {e}ZZ{e}SENDER         {e}ZZ{e}RECEIVER       {e}261122{e}0930{e}{rep}{e}00501{e}{ctl}{e}0{e}P{e}{comp}{term}",
            e = elem
        )
    }

    #[test]
    fn isa_is_106_bytes() {
        assert_eq!(isa('*', '^', ':', '~', "000000001").len(), 106);
    }

    #[test]
    fn delimiters_bom_and_layout() {
        let text = format!(
            "\u{feff}{}\r\n  GS*HI*A*B*20261122*0930*1*X*005010X217~\r\n\tST*278*0001~SE*2*0001~GE*1*1~IEA*1*000000001~\r\n",
            isa('*', '^', ':', '~', "000000001")
        );
        let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
        assert_eq!(segs.len(), 6);
        assert_eq!(segs[1], "GS*HI*A*B*20261122*0930*1*X*005010X217");
        assert_eq!(segs[2], "ST*278*0001");
    }

    #[test]
    fn newline_and_gs_terminators() {
        for term in ['\n', '\u{1d}'] {
            let text = format!(
                "{}ST*278*1{term}SE*2*1{term}",
                isa('*', '^', ':', term, "000000001")
            );
            let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
            assert_eq!(segs[1..], ["ST*278*1", "SE*2*1"]);
        }
        // CRLF after a newline terminator.
        let text = format!(
            "{}\nST*278*1\r\nSE*2*1\r\n",
            &isa('*', '^', ':', '\n', "000000001")[..105]
        );
        let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
        assert_eq!(segs[1..], ["ST*278*1", "SE*2*1"]);
    }

    #[test]
    fn bin_payload_is_read_by_length() {
        let text = format!("{}BIN*7*a~b*c:d~SE*2*1~", isa('*', '^', ':', '~', "000000001"));
        let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
        assert_eq!(segs[1], "BIN*7*a~b*c:d");
        assert_eq!(segs[2], "SE*2*1");
    }

    #[test]
    fn token_errors_carry_offset_segment_and_reason() {
        let text = format!("{}ST*275*1~BIN*99*short~", isa('*', '^', ':', '~', "000000001"));
        let mut t = Tokenizer::new(text.as_bytes(), &X12Format::default());
        let err = loop {
            match t.next_segment() {
                Ok(true) => continue,
                Ok(false) => panic!("a truncated BIN must stop the tokenizer"),
                Err(e) => break e,
            }
        };
        match &err {
            TokenError::Broken {
                offset,
                segment,
                reason,
            } => {
                assert_eq!(*reason, Broken::BinTruncated { len: 99 });
                assert_eq!(*segment, 3, "ISA, ST, then the BIN");
                assert_eq!(*offset, 106 + "ST*275*1~".len() as u64);
            }
            TokenError::Io(e) => panic!("not an I/O error: {e}"),
        }
        assert!(err.to_string().contains("segment 3"), "{err}");
        let e = Tokenizer::new(&b"GS*HI~"[..], &X12Format::default())
            .next_segment()
            .expect_err("no ISA");
        assert!(
            matches!(
                e,
                TokenError::Broken {
                    reason: Broken::NoIsa,
                    segment: 1,
                    offset: 0
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn collision_is_refused_unless_allowed() {
        let text = isa('*', '^', '^', '~', "000000001");
        let e = segments(text.as_bytes(), &X12Format::default()).expect_err("collision");
        assert!(e.contains("ISA11"), "{e}");
        let fmt = X12Format {
            collision: SeparatorCollision::Repetition,
            ..X12Format::default()
        };
        segments(text.as_bytes(), &fmt).expect("accepted knowingly");
    }

    #[test]
    fn short_isa_is_refused_unless_lenient() {
        let text = isa('*', '^', ':', '~', "000000001").replacen("          ", "         ", 1);
        let e = segments(text.as_bytes(), &X12Format::default()).expect_err("short ISA02");
        assert!(e.contains("ISA02 is 9 characters"), "{e}");
        let fmt = X12Format {
            lenient_isa_width: true,
            ..X12Format::default()
        };
        segments(text.as_bytes(), &fmt).expect("lenient");
    }

    #[test]
    fn paths_parse_and_check() {
        let p = parse_path("NM1[01=IL]/NM109").expect("valid");
        assert_eq!(p.qualifier, Some((1, "IL".into())));
        assert_eq!(p.element, 9);
        let p = parse_path("EB[01=1]/EB03#*").expect("valid");
        assert_eq!(p.repetition, Rep::All);
        let p = parse_path("UM04.1").expect("valid");
        assert_eq!(p.component, Some(1));
        assert_eq!(parse_path("HCR01").expect("valid").segment, "HCR");
        let (_, m) = parse_path("HRC01").expect_err("typo");
        assert!(m.contains("did you mean HCR"), "{m}");
        let (_, m) = parse_path("HCR09").expect_err("past the end");
        assert!(m.contains("HCR01..HCR04"), "{m}");
        assert!(parse_path("NM1[01=IL]/REF02").is_err());
        assert_eq!(
            parse_path("EB[11=Y]/EB03#2").expect("valid").to_string(),
            "EB[11=Y]/EB03#2"
        );
    }

    #[test]
    fn element_parts() {
        let d = Delims {
            element: b'*',
            component: Some(b':'),
            repetition: Some(b'^'),
            terminator: b'~',
        };
        let get = |raw: &[u8], p: &str| {
            let mut s = String::new();
            write_element(&mut s, raw, &parse_path(p).expect("path"), d);
            s
        };
        assert_eq!(get(b"11:B", "UM04.1"), "11");
        assert_eq!(get(b"11:B", "UM04.2"), "B");
        assert_eq!(get(b"11:B", "UM04.3"), "");
        assert_eq!(get(b"1^33^88", "EB03#*"), "1,33,88");
        assert_eq!(get(b"1^33^88", "EB03#2"), "33");
        assert_eq!(get(b"1^33^88", "EB03"), "1");
        assert_eq!(get(b"Caf\xe9", "NM103"), "Café");
    }

    /// BIN02 is taken whole, by BIN01's length: the separators inside a
    /// binary payload are data (issue 18).
    #[test]
    fn bin_payload_reaches_the_mapping_whole() {
        let text = format!(
            "{}GS*PI*A*B*20261124*0900*9*X*005010X210~ST*275*0001*005010X210~BIN*10*a~b*c:d^ef~SE*3*0001~GE*1*9~IEA*1*000000009~",
            isa('*', '^', ':', '~', "000000009")
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("275.x12");
        std::fs::write(&path, text).expect("write fixture");
        let paths = vec![
            parse_path("BIN01").expect("valid"),
            parse_path("BIN02").expect("valid"),
        ];
        let mut r = X12Reader::open(&path, &X12Format::default(), paths).expect("opens");
        let mut row = Row::new();
        let next = r.next(&mut row).expect("reads");
        assert!(matches!(next, Some(X12Next::Record(_))), "{next:?}");
        assert_eq!(row.get(0), Some("10"));
        assert_eq!(row.get(1), Some("a~b*c:d^ef"));
        assert!(parse_path("BIN02.1").is_err(), "no components in a payload");
        assert!(parse_path("BIN02#*").is_err(), "no repetitions in a payload");
    }

    fn envelope(body: &str, se_count: usize) -> String {
        format!(
            "{}GS*HI*A*B*20261122*0930*7*X*005010X217~ST*278*0001~{body}SE*{se_count}*0001~GE*1*7~IEA*1*000000042~",
            isa('*', '^', ':', '~', "000000042")
        )
    }

    fn check(text: &str) -> Result<Verdicts, String> {
        validate_stream(text.as_bytes(), &X12Format::default(), "t.x12").map_err(|e| e.to_string())
    }

    #[test]
    fn good_envelope_passes() {
        let v = check(&envelope("HL*1**20*1~HL*2*1*21*1~", 4)).expect("valid");
        assert!(v.bad_sets.is_empty() && v.bad_groups.is_empty());
    }

    #[test]
    fn wrong_se_count_names_segment_and_control_numbers() {
        let v = check(&envelope("HL*1**20*1~", 9)).expect("interchange is fine");
        let r = &v.bad_sets[&1];
        assert!(
            r.contains("SE01=9") && r.contains("has 3 segments") && r.contains("ST02=0001"),
            "{r}"
        );
        assert!(r.contains("ISA13=000000042") && r.contains("GS06=7"), "{r}");
    }

    #[test]
    fn hl_chain_errors() {
        let v = check(&envelope("HL*1**20*1~HL*3*1*21*1~", 4)).expect("parses");
        assert!(
            v.bad_sets[&1].contains("HL01=3 at segment 3 is out of sequence"),
            "{}",
            v.bad_sets[&1]
        );
        let v = check(&envelope("HL*1**20*1~HL*2*5*21*1~", 4)).expect("parses");
        assert!(v.bad_sets[&1].contains("HL02=5"), "{}", v.bad_sets[&1]);
    }

    #[test]
    fn broken_interchange_fails_the_file() {
        let text = envelope("", 2).replace("IEA*1*000000042", "IEA*1*000000043");
        let e = check(&text).expect_err("IEA02 mismatch");
        assert!(
            e.contains("IEA02=000000043") && e.contains("ISA13=000000042"),
            "{e}"
        );
        let text = envelope("", 2).replace("GE*1*7", "GE*2*7");
        let v = check(&text).expect("the interchange is fine");
        assert!(v.bad_groups[&1].contains("GE01=2"), "{}", v.bad_groups[&1]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the delimiters and layout, the tokenizer gives back
            /// exactly the segments that were written.
            #[test]
            fn segments_round_trip(
                delims in prop::sample::select(vec![('*', '^', ':', '~'), ('~', '^', '>', '_'), ('|', '{', '}', '\n'), ('*', '^', ':', '\u{1d}')]),
                bodies in prop::collection::vec("[A-Z0-9 .-]{0,12}", 1..20),
                layout in prop::sample::select(vec!["", "\r\n", "\n  "]),
            ) {
                let (e, r, c, t) = delims;
                let mut text = String::from("\u{feff}");
                text.push_str(&isa(e, r, c, t, "000000001"));
                let mut want = Vec::new();
                for (i, b) in bodies.iter().enumerate() {
                    let seg = format!("REF{e}{i}{e}{}", b.trim());
                    text.push_str(if t == '\n' { "" } else { layout });
                    text.push_str(&seg);
                    text.push(t);
                    want.push(seg);
                }
                let got = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
                prop_assert_eq!(&got[1..], &want[..]);
            }

            /// Arbitrary bytes never panic the tokenizer or the validator.
            #[test]
            fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                let mut prefixed = isa('*', '^', ':', '~', "000000001").into_bytes();
                prefixed.extend_from_slice(&bytes);
                let _ = validate_stream(&prefixed[..], &X12Format::default(), "p");
                let _ = validate_stream(&bytes[..], &X12Format::default(), "p");
            }
        }
    }
}
