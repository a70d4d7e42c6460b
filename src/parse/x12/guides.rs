//! The loop structure of the transactions hubsync ships mappings for, as
//! data: one table per transaction, transcribed from the public structure of
//! the implementation guides (5010 278 X217, 270/271 X279A1; the 4010 guides
//! X094/X092 share the same loops) and of the 867 standard.
//!
//! The reader walks a table to tag each segment with its loop, so that a
//! mapping can say `2100A/NM1[01=PR]/NM103` (the information source) and
//! not be handed the `NM1*PR` of a 2120C benefit-related entity. `hubsync
//! check` uses the same tables to refuse a path naming a loop or segment the
//! transaction does not have. Adding a transaction is adding a table here,
//! not code.

/// How a loop starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The transaction header (ST, BHT): the table's first loop.
    Root,
    /// An `HL` whose HL03 is this level code.
    Hl(&'static str),
    /// This segment, inside its parent loop; when `values` is not empty,
    /// only with element `element` equal to one of them.
    Seg {
        id: &'static str,
        element: usize,
        values: &'static [&'static str],
    },
}

/// What a loop is to the record reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Context: its segments are seen by the records inside it.
    Context,
    /// Starts a record (a natural unit: one patient event, one subscriber).
    Record,
    /// A part of a record that is also its own record after it (a 278
    /// service under its patient event): it sees its record's segments.
    Sub,
    /// A line of a record (an 867 product line: QTY with its LIN): a
    /// record with lines is emitted once per line instead of as a whole,
    /// each line seeing its record's segments before the first line; a
    /// record without lines is emitted whole.
    Line,
}

#[derive(Debug)]
pub struct LoopDef {
    pub id: &'static str,
    pub name: &'static str,
    /// The enclosing loop's id; `None` only for the root.
    pub parent: Option<&'static str>,
    pub start: Start,
    pub unit: Unit,
    /// Segments of the loop itself (its trigger first), not of its children.
    pub segments: &'static [&'static str],
}

#[derive(Debug)]
pub struct Transaction {
    /// ST01.
    pub id: &'static str,
    pub name: &'static str,
    /// GS01 functional identifier.
    pub functional_id: &'static str,
    /// ST03/GS08 implementation guide references this table follows.
    pub guides: &'static [&'static str],
    /// Where the transaction's purpose code is (BHT02, BPT01).
    pub purpose: (&'static str, usize),
    pub loops: &'static [LoopDef],
}

impl Transaction {
    pub fn loop_index(&self, id: &str) -> Option<usize> {
        self.loops.iter().position(|l| l.id == id)
    }
    /// The HL loop for level code `level`.
    pub fn hl_loop(&self, level: &[u8]) -> Option<usize> {
        self.loops
            .iter()
            .position(|l| matches!(l.start, Start::Hl(c) if c.as_bytes() == level))
    }
    /// Whether segment `seg` can occur anywhere in the transaction.
    pub fn has_segment(&self, seg: &str) -> bool {
        self.loops.iter().any(|l| l.segments.contains(&seg))
    }
}

/// Segments that belong to no loop: the envelope around every transaction.
pub const ENVELOPE: &[&str] = &["ISA", "GS", "ST", "SE", "GE", "IEA"];

/// The table for ST01 `id`.
pub fn transaction(id: &[u8]) -> Option<&'static Transaction> {
    TRANSACTIONS.iter().find(|t| t.id.as_bytes() == id)
}

pub const TRANSACTIONS: &[Transaction] = &[T278, T271, T270, T867];

const fn seg(id: &'static str, element: usize, values: &'static [&'static str]) -> Start {
    Start::Seg { id, element, values }
}

const NAME: &[&str] = &[];

/// 278 health care services review, request and response (005010X217, 004010X094).
pub const T278: Transaction = Transaction {
    id: "278",
    name: "health care services review (prior authorization)",
    functional_id: "HI",
    guides: &["005010X217", "005010X216", "004010X094A1", "004010X094"],
    purpose: ("BHT", 2),
    loops: &[
        LoopDef {
            id: "HEADER",
            name: "transaction header",
            parent: None,
            start: Start::Root,
            unit: Unit::Context,
            segments: &["ST", "BHT", "SE"],
        },
        LoopDef {
            id: "2000A",
            name: "utilization management organization (UMO) level",
            parent: Some("HEADER"),
            start: Start::Hl("20"),
            unit: Unit::Context,
            segments: &["HL", "AAA"],
        },
        LoopDef {
            id: "2010A",
            name: "UMO name",
            parent: Some("2000A"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "PER", "AAA"],
        },
        LoopDef {
            id: "2000B",
            name: "requester level",
            parent: Some("2000A"),
            start: Start::Hl("21"),
            unit: Unit::Context,
            segments: &["HL"],
        },
        LoopDef {
            id: "2010B",
            name: "requester name",
            parent: Some("2000B"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "PER", "AAA", "PRV"],
        },
        LoopDef {
            id: "2000C",
            name: "subscriber level",
            parent: Some("2000B"),
            start: Start::Hl("22"),
            unit: Unit::Context,
            segments: &["HL", "TRN"],
        },
        LoopDef {
            id: "2010C",
            name: "subscriber name",
            parent: Some("2000C"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "AAA", "DMG", "INS"],
        },
        LoopDef {
            id: "2000D",
            name: "dependent level",
            parent: Some("2000C"),
            start: Start::Hl("23"),
            unit: Unit::Context,
            segments: &["HL", "TRN"],
        },
        LoopDef {
            id: "2010D",
            name: "dependent name",
            parent: Some("2000D"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "AAA", "DMG", "INS"],
        },
        LoopDef {
            id: "2000E",
            name: "patient event level",
            parent: Some("2000C"),
            start: Start::Hl("EV"),
            unit: Unit::Record,
            segments: &[
                "HL", "TRN", "AAA", "UM", "HCR", "REF", "DTP", "HI", "HSD", "CRC", "CL1", "CR1", "CR2",
                "CR4", "CR5", "CR6", "CR7", "CR8", "PWK", "MSG",
            ],
        },
        LoopDef {
            id: "2010EA",
            name: "patient event provider name",
            parent: Some("2000E"),
            start: seg(
                "NM1",
                1,
                &[
                    "1T", "71", "72", "73", "77", "AAJ", "DD", "DK", "DN", "FA", "G3", "P3", "QB", "QV", "SJ",
                ],
            ),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "PER", "AAA", "PRV"],
        },
        LoopDef {
            id: "2010EB",
            name: "additional patient information contact name",
            parent: Some("2000E"),
            start: seg("NM1", 1, &["2B", "ABG", "PR", "X3"]),
            unit: Unit::Context,
            segments: &["NM1", "N3", "N4", "PER"],
        },
        LoopDef {
            id: "2010EC",
            name: "patient event transport information",
            parent: Some("2000E"),
            start: seg("NM1", 1, &["45", "FS", "ND", "PW", "R3"]),
            unit: Unit::Context,
            segments: &["NM1", "N3", "N4"],
        },
        LoopDef {
            id: "2000F",
            name: "service level",
            parent: Some("2000E"),
            start: Start::Hl("SS"),
            unit: Unit::Sub,
            segments: &[
                "HL", "TRN", "AAA", "UM", "HCR", "REF", "DTP", "SV1", "SV2", "SV3", "TOO", "HSD", "PWK",
                "MSG",
            ],
        },
        LoopDef {
            id: "2010F",
            name: "service provider name",
            parent: Some("2000F"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "PER", "AAA", "PRV"],
        },
    ],
};

/// 271 eligibility, coverage or benefit information (005010X279A1, 004010X092A1).
pub const T271: Transaction = Transaction {
    id: "271",
    name: "eligibility, coverage or benefit information",
    functional_id: "HB",
    guides: &["005010X279A1", "005010X279", "004010X092A1", "004010X092"],
    purpose: ("BHT", 2),
    loops: &[
        LoopDef {
            id: "HEADER",
            name: "transaction header",
            parent: None,
            start: Start::Root,
            unit: Unit::Context,
            segments: &["ST", "BHT", "SE"],
        },
        LoopDef {
            id: "2000A",
            name: "information source level",
            parent: Some("HEADER"),
            start: Start::Hl("20"),
            unit: Unit::Context,
            segments: &["HL", "AAA"],
        },
        LoopDef {
            id: "2100A",
            name: "information source name (the payer)",
            parent: Some("2000A"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "PER", "AAA"],
        },
        LoopDef {
            id: "2000B",
            name: "information receiver level",
            parent: Some("2000A"),
            start: Start::Hl("21"),
            unit: Unit::Context,
            segments: &["HL"],
        },
        LoopDef {
            id: "2100B",
            name: "information receiver name",
            parent: Some("2000B"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "AAA", "PRV"],
        },
        LoopDef {
            id: "2000C",
            name: "subscriber level",
            parent: Some("2000B"),
            start: Start::Hl("22"),
            unit: Unit::Record,
            segments: &["HL", "TRN"],
        },
        LoopDef {
            id: "2100C",
            name: "subscriber name",
            parent: Some("2000C"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &[
                "NM1", "REF", "N3", "N4", "AAA", "PRV", "DMG", "INS", "HI", "DTP", "MPI",
            ],
        },
        LoopDef {
            id: "2110C",
            name: "subscriber eligibility or benefit information",
            parent: Some("2100C"),
            start: seg("EB", 1, NAME),
            unit: Unit::Context,
            segments: &["EB", "HSD", "REF", "DTP", "AAA", "MSG", "LS", "LE"],
        },
        LoopDef {
            id: "2115C",
            name: "subscriber eligibility or benefit additional information",
            parent: Some("2110C"),
            start: seg("III", 1, NAME),
            unit: Unit::Context,
            segments: &["III"],
        },
        LoopDef {
            id: "2120C",
            name: "subscriber benefit related entity name",
            parent: Some("2110C"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "N3", "N4", "PER", "PRV"],
        },
        LoopDef {
            id: "2000D",
            name: "dependent level",
            parent: Some("2000C"),
            start: Start::Hl("23"),
            unit: Unit::Record,
            segments: &["HL", "TRN"],
        },
        LoopDef {
            id: "2100D",
            name: "dependent name",
            parent: Some("2000D"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &[
                "NM1", "REF", "N3", "N4", "AAA", "PRV", "DMG", "INS", "HI", "DTP", "MPI",
            ],
        },
        LoopDef {
            id: "2110D",
            name: "dependent eligibility or benefit information",
            parent: Some("2100D"),
            start: seg("EB", 1, NAME),
            unit: Unit::Context,
            segments: &["EB", "HSD", "REF", "DTP", "AAA", "MSG", "LS", "LE"],
        },
        LoopDef {
            id: "2115D",
            name: "dependent eligibility or benefit additional information",
            parent: Some("2110D"),
            start: seg("III", 1, NAME),
            unit: Unit::Context,
            segments: &["III"],
        },
        LoopDef {
            id: "2120D",
            name: "dependent benefit related entity name",
            parent: Some("2110D"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "N3", "N4", "PER", "PRV"],
        },
    ],
};

/// 270 eligibility, coverage or benefit inquiry (005010X279A1, 004010X092A1).
pub const T270: Transaction = Transaction {
    id: "270",
    name: "eligibility, coverage or benefit inquiry",
    functional_id: "HS",
    guides: &["005010X279A1", "005010X279", "004010X092A1", "004010X092"],
    purpose: ("BHT", 2),
    loops: &[
        LoopDef {
            id: "HEADER",
            name: "transaction header",
            parent: None,
            start: Start::Root,
            unit: Unit::Context,
            segments: &["ST", "BHT", "SE"],
        },
        LoopDef {
            id: "2000A",
            name: "information source level",
            parent: Some("HEADER"),
            start: Start::Hl("20"),
            unit: Unit::Context,
            segments: &["HL"],
        },
        LoopDef {
            id: "2100A",
            name: "information source name",
            parent: Some("2000A"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1"],
        },
        LoopDef {
            id: "2000B",
            name: "information receiver level",
            parent: Some("2000A"),
            start: Start::Hl("21"),
            unit: Unit::Context,
            segments: &["HL"],
        },
        LoopDef {
            id: "2100B",
            name: "information receiver name",
            parent: Some("2000B"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "PRV"],
        },
        LoopDef {
            id: "2000C",
            name: "subscriber level",
            parent: Some("2000B"),
            start: Start::Hl("22"),
            unit: Unit::Record,
            segments: &["HL", "TRN"],
        },
        LoopDef {
            id: "2100C",
            name: "subscriber name",
            parent: Some("2000C"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "PRV", "DMG", "INS", "HI", "DTP"],
        },
        LoopDef {
            id: "2110C",
            name: "subscriber eligibility or benefit inquiry",
            parent: Some("2100C"),
            start: seg("EQ", 1, NAME),
            unit: Unit::Context,
            segments: &["EQ", "AMT", "III", "REF", "DTP"],
        },
        LoopDef {
            id: "2000D",
            name: "dependent level",
            parent: Some("2000C"),
            start: Start::Hl("23"),
            unit: Unit::Record,
            segments: &["HL", "TRN"],
        },
        LoopDef {
            id: "2100D",
            name: "dependent name",
            parent: Some("2000D"),
            start: seg("NM1", 1, NAME),
            unit: Unit::Context,
            segments: &["NM1", "REF", "N3", "N4", "PRV", "DMG", "INS", "HI", "DTP"],
        },
        LoopDef {
            id: "2110D",
            name: "dependent eligibility or benefit inquiry",
            parent: Some("2100D"),
            start: seg("EQ", 1, NAME),
            unit: Unit::Context,
            segments: &["EQ", "III", "REF", "DTP"],
        },
    ],
};

/// 867 product transfer and resale report (004010), how specialty
/// pharmacies report dispenses. The standard numbers no loops, so they are
/// named for their trigger within their parent: `PTD`, `PTD-N1`, `PTD-QTY`.
pub const T867: Transaction = Transaction {
    id: "867",
    name: "product transfer and resale report",
    functional_id: "PT",
    guides: &["004010", "005010"],
    purpose: ("BPT", 1),
    loops: &[
        LoopDef {
            id: "HEADER",
            name: "heading and summary",
            parent: None,
            start: Start::Root,
            unit: Unit::Context,
            segments: &[
                "ST", "BPT", "CUR", "DTM", "REF", "PER", "MEA", "PSA", "CTT", "AMT", "SE",
            ],
        },
        LoopDef {
            id: "N1",
            name: "report party identification",
            parent: Some("HEADER"),
            start: seg("N1", 1, NAME),
            unit: Unit::Context,
            segments: &["N1", "N2", "N3", "N4", "REF", "PER"],
        },
        LoopDef {
            id: "LM",
            name: "code source information",
            parent: Some("HEADER"),
            start: seg("LM", 1, NAME),
            unit: Unit::Context,
            segments: &["LM", "LQ"],
        },
        LoopDef {
            id: "PTD",
            name: "product transfer and resale detail (one dispense report)",
            parent: Some("HEADER"),
            start: seg("PTD", 1, NAME),
            unit: Unit::Record,
            segments: &["PTD", "DTM", "REF", "PRF", "PER", "MAN", "LCD", "LQ", "MEA"],
        },
        LoopDef {
            id: "PTD-N1",
            name: "detail party identification (ship-to, pharmacy, patient)",
            parent: Some("PTD"),
            start: seg("N1", 1, NAME),
            unit: Unit::Context,
            segments: &["N1", "N2", "N3", "N4", "REF", "PER"],
        },
        LoopDef {
            id: "PTD-SII",
            name: "sales item information",
            parent: Some("PTD"),
            start: seg("SII", 1, NAME),
            unit: Unit::Context,
            segments: &["SII", "N9"],
        },
        LoopDef {
            id: "PTD-QTY",
            name: "quantity and product (NDC)",
            parent: Some("PTD"),
            start: seg("QTY", 1, NAME),
            // Each product line of a dispense is its own record.
            unit: Unit::Line,
            segments: &[
                "QTY", "LIN", "PO3", "PO4", "UIT", "AMT", "ITA", "PID", "MEA", "PWK", "PKG", "REF", "PER",
                "DTM", "CUR",
            ],
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table is well formed: one root first, parents exist and come
    /// earlier, loop ids are unique, HL levels are unique, every segment is
    /// one a path may name.
    #[test]
    fn tables_are_well_formed() {
        for t in TRANSACTIONS {
            assert!(matches!(t.loops[0].start, Start::Root), "{}", t.id);
            for (i, l) in t.loops.iter().enumerate() {
                assert_eq!(t.loop_index(l.id), Some(i), "{} {}: duplicate id", t.id, l.id);
                match l.parent {
                    None => assert_eq!(i, 0, "{} {}: only the root has no parent", t.id, l.id),
                    Some(p) => assert!(
                        t.loop_index(p).is_some_and(|pi| pi < i),
                        "{} {}: parent {p} must come first",
                        t.id,
                        l.id
                    ),
                }
                if let Start::Hl(level) = l.start {
                    assert_eq!(t.hl_loop(level.as_bytes()), Some(i), "{} {}", t.id, l.id);
                }
                for s in l.segments {
                    assert!(
                        super::super::SEGMENTS.iter().any(|(id, _)| id == s),
                        "{} {}: segment {s} is not in SEGMENTS",
                        t.id,
                        l.id
                    );
                }
            }
        }
    }
}
