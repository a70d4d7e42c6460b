//! Micro-benchmarks of the per-record hot paths (issue 8), with criterion:
//!
//! - `csv`: parsing the acme-hub snapshot, then one row through the shipped
//!   mapping, both ways the pipeline's producer does it: the fingerprint
//!   (every row of a re-load) and fingerprint + materialized content (every
//!   changed row);
//! - `x12`: the 278 tokenizer alone, the envelope-validation pass, and the
//!   full two-pass record reader;
//! - `delta_check`: `StateIndex::check` against a 1M-entry index;
//! - `webhook`: rendering a delta's body, and Standard Webhooks signing.
//!
//! Each bench calls the same public functions, in the same order, as
//! `pipeline::produce`, `Pipeline::commit` or the delivery worker's `call`,
//! so a figure here is a share of the end-to-end per-row budget in
//! BENCHMARKS.md. Data is generated at setup (seeded, same layout as
//! `scripts/gen-hub-csv.py` and `scripts/gen-x12-bench.py`) into a temp dir
//! where a reader takes a path, never committed.
//!
//! `cargo bench --bench hot_paths` measures (docs/bench-micro.md);
//! `cargo test --benches` runs every bench once, so CI keeps them compiling
//! and working without timing anything.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use hubsync::deliver::{envelope, sign};
use hubsync::diff::{Candidate, Delta, StateIndex, Verdict};
use hubsync::map::{Binding, Bound, ContentSink, FieldPath, Fingerprint, HashSink};
use hubsync::model::{ChangeKind, Content, Provenance};
use hubsync::outbox;
use hubsync::parse::csv::{CsvFormat, CsvReader};
use hubsync::parse::x12::{self, Tokenizer, X12Format, X12Next, X12Reader};
use hubsync::parse::{Fields, Row};
use hubsync::setup::{self, Config, Connector, Format};
use hubsync::store::Due;

/// Rows in the generated CSV snapshot: enough that the mapping benches cycle
/// through a realistic mix of status codes rather than one hot row.
const CSV_ROWS: usize = 20_000;
/// Size of the generated X12 file: big enough to stream through the
/// tokenizer's 256 KiB buffer several times, small enough for quick setup.
const X12_BYTES: usize = 2 * 1024 * 1024;
/// Entries in the state index: a large program's milestones.
const INDEX_ENTRIES: usize = 1_000_000;
/// Probes per delta-check bench, in a random order: as many as the index
/// holds, so one pass touches the whole table (~36 MB, past the 32 MiB L3)
/// and a lookup misses the cache, as each row's lookup does in a real file.
const PROBES: usize = 1 << 20;

const PSEUDONYM_KEY: &str = "bench-pseudonym-key-0123456789";
/// A valid Standard Webhooks secret (24 random bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repo's connectors and mappings, with one subscriber, loaded through
/// the same validation as the daemon's config.
fn load_config(dir: &Path) -> Config {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nconnectors_dir = {:?}\nmappings_dir = {:?}\n\
             [pseudonymization]\nkey_env = \"BENCH_PSEUDONYM_KEY\"\n\
             [[subscribers]]\nname = \"bench\"\nurl = \"http://127.0.0.1:9/webhooks\"\n\
             secret_env = \"BENCH_SECRET\"\n",
            dir.join("data"),
            repo().join("connectors"),
            repo().join("mappings"),
        ),
    )
    .expect("the temp dir is writable");
    setup::load_with_env(&cfg, &|k| match k {
        "BENCH_PSEUDONYM_KEY" => Some(PSEUDONYM_KEY.to_string()),
        "BENCH_SECRET" => Some(SECRET.to_string()),
        _ => None,
    })
    .unwrap_or_else(|d| panic!("the shipped connectors and mappings load:\n{d}"))
}

fn connector<'c>(config: &'c Config, name: &str) -> &'c Arc<Connector> {
    config
        .connectors
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("connector {name} is shipped in connectors/"))
}

// ---------------------------------------------------------------- data

/// An Acme Hub snapshot of `rows` cases, as `scripts/gen-hub-csv.py` writes
/// it (same columns, codes and fill rules; Rust's RNG, so not the same bytes).
fn gen_hub_csv(rows: usize, seed: u64) -> String {
    const HEADER: &str = "Case ID,Patient ID,Patient Last Name,Patient DOB,Status Code,Status Date,\
        Sub Status,Payer,Plan Type,PA Number,PA Approval Date,PA Start,PA End,Denial Reason,Ship Date,\
        Carrier,Tracking Number,Fill Number,NDC,Quantity,Days Supply,Last Updated";
    const CODES: [(&str, &str); 11] = [
        ("REF", "Intake"),
        ("BI", "Benefits Investigation"),
        ("BC", "Benefits Verified"),
        ("PAS", "Prior Authorization"),
        ("PAP", "Prior Authorization"),
        ("PAD", "Appeal Pending"),
        ("CPE", "Patient Financial"),
        ("HOLD", "Prescriber Contact"),
        ("CANC", "Patient Declined"),
        ("PAA", "Awaiting Dispense"),
        ("SHP", "On Therapy"),
    ];
    const PAYERS: [(&str, &str); 6] = [
        ("Blue Cross Blue Shield", "Commercial"),
        ("Aetna", "Commercial"),
        ("UnitedHealthcare", "Commercial"),
        ("Medicare Part D", "Medicare"),
        ("Humana", "Medicare"),
        ("State Medicaid", "Medicaid"),
    ];
    const LAST: [&str; 8] = [
        "Okafor",
        "Lindqvist",
        "Moreau",
        "Nakamura",
        "Castillo",
        "Brennan",
        "Haddad",
        "Kowalski",
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::with_capacity(rows * 160);
    out.push_str(HEADER);
    out.push('\n');
    for i in 0..rows {
        let (code, sub) = CODES[rng.random_range(0..CODES.len())];
        let (payer, plan) = PAYERS[i % PAYERS.len()];
        let mut row: Vec<String> = vec![String::new(); 22];
        row[0] = format!("AC-{i:09}");
        row[1] = format!("P{}", rng.random_range(100_000_000..1_000_000_000u64));
        row[2] = LAST[i % LAST.len()].to_string();
        row[3] = format!(
            "{:02}/{:02}/{}",
            rng.random_range(1..=12),
            rng.random_range(1..=28),
            rng.random_range(1940..=2005)
        );
        row[4] = code.to_string();
        row[5] = format!("11/{:02}/2026", rng.random_range(1..=20));
        row[6] = sub.to_string();
        row[7] = payer.to_string();
        row[8] = plan.to_string();
        row[21] = "2026-11-22 23:00:00".to_string();
        if ["PAS", "PAP", "PAD", "PAA", "SHP"].contains(&code) {
            row[9] = format!("PA{}", rng.random_range(10_000_000..100_000_000u64));
        }
        if code == "PAD" {
            row[13] = "NMN".to_string();
        }
        if code == "PAA" || code == "SHP" {
            row[10] = format!("11/{:02}/2026", rng.random_range(1..=20));
            row[11] = row[10].clone();
            row[12] = "11/20/2027".to_string();
        }
        if code == "SHP" {
            row[14] = format!("11/{:02}/2026", rng.random_range(1..=20));
            row[15] = "UPS".to_string();
            row[16] = format!("1Z{}", rng.random_range(10u64.pow(15)..10u64.pow(16)));
            row[17] = "0".to_string();
            row[18] = "50242-0041-01".to_string();
            row[19] = "30".to_string();
            row[20] = "30".to_string();
        }
        // No generated value holds a comma or a quote: joining is valid CSV.
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// A valid 278-response file of at least `target` bytes, as
/// `scripts/gen-x12-bench.py` writes it: interchanges of 50 transaction sets,
/// each with 1-4 patient events, some with a service-level HL.
fn gen_x12_278(target: usize, seed: u64) -> Vec<u8> {
    const DECISIONS: [&str; 9] = ["A1", "A1", "A1", "A2", "A3", "A4", "A6", "CT", "C"];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = String::with_capacity(target + 64 * 1024);
    let (mut isa_ctl, mut trace) = (0u64, 0u64);
    while out.len() < target {
        isa_ctl += 1;
        out.push_str(&format!(
            "ISA*00*{:10}*00*{:10}*ZZ*{:<15}*ZZ*{:<15}*261120*0815*^*00501*{isa_ctl:09}*0*P*:~\n",
            "", "", "BENCHPAYER", "HUBSYNC"
        ));
        out.push_str(&format!(
            "GS*HI*BENCHPAYER*HUBSYNC*20261120*0815*{isa_ctl}*X*005010X217~\n"
        ));
        for s in 1..=50 {
            let mut segs = vec![
                format!("ST*278*{s:04}*005010X217"),
                format!("BHT*0007*11*R{isa_ctl}-{s}*20261120*0815*18"),
                "HL*1**20*1".to_string(),
                "NM1*X3*2*BENCH HEALTH PLAN*****PI*60054".to_string(),
                "HL*2*1*21*1".to_string(),
                "NM1*1P*2*NORTHSIDE ONCOLOGY*****XX*1184795521".to_string(),
                "HL*3*2*22*1".to_string(),
                format!(
                    "NM1*IL*1*MEMBER*TEST****MI*W{:08}",
                    rng.random_range(0..100_000_000u64)
                ),
            ];
            let mut hl = 3;
            for _ in 0..rng.random_range(1..=4) {
                hl += 1;
                let ev = hl;
                trace += 1;
                let d = DECISIONS[rng.random_range(0..DECISIONS.len())];
                let hcr = match d {
                    "A1" | "A2" | "A6" => format!("HCR*{d}*AUTH{trace}"),
                    "A3" => "HCR*A3**0U".to_string(),
                    other => format!("HCR*{other}"),
                };
                let has_ss = rng.random_bool(0.3);
                segs.extend([
                    format!("HL*{ev}*3*EV*{}", u8::from(has_ss)),
                    format!("TRN*2*TRK{trace:010}*9012345678"),
                    "UM*SC*I*3*11:B".to_string(),
                    hcr,
                    "DTP*007*D8*20261201".to_string(),
                    "DTP*036*D8*20270531".to_string(),
                    format!("DTP*102*D8*202611{:02}", rng.random_range(1..=28)),
                    "HI*ABK:C50911".to_string(),
                    "HSD*VS*1".to_string(),
                    "NM1*SJ*1*DOE*RILEY****XX*1234567893".to_string(),
                    "PER*IC**TE*4029993456".to_string(),
                ]);
                if d == "A4" && rng.random_bool(0.5) {
                    segs.push("PWK*OZ*EL".to_string());
                }
                if has_ss {
                    hl += 1;
                    segs.extend([
                        format!("HL*{hl}*{ev}*SS*0"),
                        "SV2*0510*HC:J9271*0*UN*6".to_string(),
                        "HCR*A1*AUTHSS".to_string(),
                    ]);
                }
            }
            segs.push(format!("SE*{}*{s:04}", segs.len() + 1));
            out.push_str(&segs.join("~\n"));
            out.push_str("~\n");
        }
        out.push_str(&format!("GE*50*{isa_ctl}~\nIEA*1*{isa_ctl:09}~\n"));
    }
    out.into_bytes()
}

// ---------------------------------------------------------------- csv

/// Mirrors the producer's per-record loop for a record that reaches the
/// index: every rule that applies is walked into the reused `HashSink`.
fn fingerprint(
    bound: &Bound<'_>,
    fields: Fields<'_>,
    hasher: &mut HashSink,
    fps: &mut Vec<(usize, Fingerprint)>,
) {
    fps.clear();
    for (i, rule) in bound.mapping.rules.iter().enumerate() {
        let applies = bound
            .applies(rule, fields)
            .expect("generated rows satisfy the mapping (checked at setup)");
        if !applies {
            continue;
        }
        hasher.reset();
        bound
            .walk(rule, fields, hasher)
            .expect("generated rows satisfy the mapping (checked at setup)");
        fps.push((i, hasher.finish()));
    }
}

/// The changed-record path: each fingerprinted milestone walked again into a
/// `ContentSink`, as the producer does for index misses.
fn materialize(bound: &Bound<'_>, fields: Fields<'_>, fps: &[(usize, Fingerprint)], out: &mut Vec<Content>) {
    for (rule_idx, _) in fps {
        let mut sink = ContentSink::new();
        bound
            .walk(&bound.mapping.rules[*rule_idx], fields, &mut sink)
            .expect("the same rule on the same record succeeded a moment ago");
        out.push(sink.content);
    }
}

fn csv_format(connector: &Connector) -> &CsvFormat {
    match &connector.format {
        Format::Csv(f) => f,
        _ => panic!("acme-hub is a CSV connector"),
    }
}

fn read_all(path: &Path, fmt: &CsvFormat, recs: &mut Vec<csv::ByteRecord>) -> Vec<String> {
    let mut reader = CsvReader::open(path, fmt).expect("the generated CSV opens");
    let mut rec = csv::ByteRecord::new();
    while reader
        .next_record(&mut rec)
        .expect("the generated CSV is well-formed")
        .is_some()
    {
        recs.push(rec.clone());
    }
    reader.header().to_vec()
}

fn bench_csv(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = load_config(dir.path());
    let acme = connector(&config, "acme-hub");
    let fmt = csv_format(acme);
    let path = dir.path().join("status.csv");
    let text = gen_hub_csv(CSV_ROWS, 42);
    std::fs::write(&path, &text).expect("the temp dir is writable");
    let mut records = Vec::with_capacity(CSV_ROWS);
    let header = read_all(&path, fmt, &mut records);
    let binding: Binding = acme
        .mapping
        .bind(&header)
        .expect("the generated header fits the mapping");
    let bound = Bound {
        mapping: &acme.mapping,
        binding,
        program: &acme.program,
        time: acme.time,
        pseudonymizer: &config.pseudonymizer,
        content_seed: config.content_seed,
        coverage: None,
    };
    // Every generated row must map cleanly: a reject would silently measure
    // the error path instead.
    let mut hasher = HashSink::new(config.content_seed);
    let mut fps = Vec::with_capacity(4);
    let mut milestones = 0;
    for r in &records {
        for rule in &bound.mapping.rules {
            if bound.applies(rule, Fields::csv(r)).expect("row maps") {
                hasher.reset();
                bound.walk(rule, Fields::csv(r), &mut hasher).expect("row maps");
                milestones += 1;
            }
        }
    }
    println!(
        "csv: {} rows, {} bytes, {milestones} milestones ({:.2} per row)",
        records.len(),
        text.len(),
        milestones as f64 / records.len() as f64
    );

    let mut g = c.benchmark_group("csv");
    g.throughput(Throughput::Bytes(text.len() as u64));
    flat(&mut g, 20);
    g.bench_function("parse_file", |b| {
        let mut rec = csv::ByteRecord::new();
        b.iter(|| {
            let mut reader = CsvReader::open(&path, fmt).expect("the generated CSV opens");
            let mut n = 0u64;
            while reader
                .next_record(&mut rec)
                .expect("the generated CSV is well-formed")
                .is_some()
            {
                n += 1;
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("csv_row");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("fingerprint", |b| {
        let mut i = 0;
        b.iter(|| {
            let fields = Fields::csv(&records[i]);
            i = (i + 1) % records.len();
            fingerprint(&bound, black_box(fields), &mut hasher, &mut fps);
            black_box(&fps);
        })
    });
    // The keyed HMAC of the patient id, inside every fingerprint above: the
    // one cryptographic step a re-load does per milestone.
    let patient = records[0].get(1).expect("column 2 is the patient id");
    let patient = std::str::from_utf8(patient).expect("generated ids are ASCII");
    g.bench_function("pseudonymize_patient", |b| {
        b.iter(|| black_box(config.pseudonymizer.raw(&acme.program, black_box(patient))))
    });
    g.bench_function("fingerprint_and_materialize", |b| {
        let mut i = 0;
        let mut contents = Vec::with_capacity(4);
        b.iter(|| {
            let fields = Fields::csv(&records[i]);
            i = (i + 1) % records.len();
            fingerprint(&bound, black_box(fields), &mut hasher, &mut fps);
            contents.clear();
            materialize(&bound, fields, &fps, &mut contents);
            black_box(&contents);
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- x12

fn bench_x12(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = load_config(dir.path());
    let payer = connector(&config, "payer-278");
    let fmt: &X12Format = match &payer.format {
        Format::X12(f) => f,
        _ => panic!("payer-278 is an X12 connector"),
    };
    let paths: Vec<x12::X12Path> = payer
        .mapping
        .columns
        .iter()
        .filter_map(|c| match &c.path {
            Some(FieldPath::X12(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let data = gen_x12_278(X12_BYTES, 42);
    let path = dir.path().join("bench-278.x12");
    std::fs::write(&path, &data).expect("the temp dir is writable");
    // The generated file must be clean, or the benches would time rejects.
    let verdicts =
        x12::validate_stream(&data[..], fmt, "bench-278.x12").expect("the generated file tokenizes");
    assert!(
        verdicts.bad_interchanges.is_empty()
            && verdicts.bad_groups.is_empty()
            && verdicts.bad_sets.is_empty(),
        "the generated 278 has valid envelopes"
    );
    let mut events = 0u64;
    let mut row = Row::new();
    let mut reader = X12Reader::open(&path, fmt, paths.clone()).expect("the generated file opens");
    while let Some(next) = reader.next(&mut row).expect("the generated file reads") {
        assert!(matches!(next, X12Next::Record(_)), "no envelope is rejected");
        events += 1;
    }
    println!(
        "x12: {} bytes, {} interchanges, {} sets, {events} events, {} paths per record",
        data.len(),
        verdicts.interchanges,
        verdicts.sets,
        paths.len()
    );

    let mut g = c.benchmark_group("x12");
    g.throughput(Throughput::Bytes(data.len() as u64));
    flat(&mut g, 20);
    g.bench_function("tokenize", |b| {
        b.iter(|| {
            let mut tok = Tokenizer::new(black_box(&data[..]), fmt);
            let mut segments = 0u64;
            while tok.next_segment().expect("the generated file tokenizes") {
                // The id is what every pass looks at first.
                segments += tok.id().len() as u64;
            }
            black_box(segments)
        })
    });
    g.bench_function("validate_envelopes", |b| {
        b.iter(|| {
            black_box(
                x12::validate_stream(black_box(&data[..]), fmt, "bench-278.x12")
                    .expect("the generated file tokenizes"),
            )
        })
    });
    // Both passes, from the file (page cache), records projected into rows
    // with the shipped mapping's paths: the whole parse cost of an X12 file.
    g.bench_function("read_records", |b| {
        let mut row = Row::new();
        b.iter(|| {
            let mut reader = X12Reader::open(&path, fmt, paths.clone()).expect("the generated file opens");
            let mut n = 0u64;
            while reader.next(&mut row).expect("the generated file reads").is_some() {
                n += 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- delta check

fn bench_delta_check(c: &mut Criterion) {
    // Keys are xxh3 hashes in the pipeline: uniformly random u64s are the
    // same distribution.
    let mut rng = StdRng::seed_from_u64(7);
    let entries: Vec<(u64, u64)> = (0..INDEX_ENTRIES).map(|_| (rng.random(), rng.random())).collect();
    let fp = |key, content| Fingerprint {
        key,
        lane: 0,
        content,
    };
    let unchanged: Vec<Fingerprint> = (0..PROBES)
        .map(|_| {
            let (k, v) = entries[rng.random_range(0..entries.len())];
            fp(k, v)
        })
        .collect();
    let changed: Vec<Fingerprint> = unchanged.iter().map(|f| fp(f.key, !f.content)).collect();
    let absent: Vec<Fingerprint> = (0..PROBES).map(|_| fp(rng.random(), rng.random())).collect();
    let index = StateIndex::new(Some(entries), 2 * INDEX_ENTRIES);
    assert_eq!(index.len(), INDEX_ENTRIES, "random 64-bit keys do not collide");
    for (probes, want) in [
        (&unchanged, Verdict::Unchanged),
        (&changed, Verdict::Candidate),
        (&absent, Verdict::Candidate),
    ] {
        assert!(
            probes.iter().all(|f| index.check(f) == want),
            "each probe set gets the verdict it is named for"
        );
    }

    let mut g = c.benchmark_group("delta_check");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    for (name, probes) in [
        ("present_unchanged", &unchanged),
        ("present_changed", &changed),
        ("absent", &absent),
    ] {
        g.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let v = index.check(&probes[i]);
                i = (i + 1) & (PROBES - 1);
                black_box(v)
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- webhook

fn bench_webhook(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = load_config(dir.path());
    let acme = connector(&config, "acme-hub");
    let sub = config
        .subscribers
        .first()
        .expect("the bench config has one subscriber");
    // A shipment row: the richest milestone the acme mapping makes (status,
    // patient reference, six attributes), so its body is a realistic upper end.
    let text = gen_hub_csv(200, 42);
    let path = dir.path().join("status.csv");
    std::fs::write(&path, &text).expect("the temp dir is writable");
    let mut records = Vec::new();
    let header = read_all(&path, csv_format(acme), &mut records);
    let bound = Bound {
        mapping: &acme.mapping,
        binding: acme
            .mapping
            .bind(&header)
            .expect("the generated header fits the mapping"),
        program: &acme.program,
        time: acme.time,
        pseudonymizer: &config.pseudonymizer,
        content_seed: config.content_seed,
        coverage: None,
    };
    let shipped = records
        .iter()
        .find(|r| r.get(4) == Some(&b"SHP"[..]))
        .expect("200 generated rows include a shipment");
    let (mut hasher, mut fps, mut contents) = (HashSink::new(config.content_seed), Vec::new(), Vec::new());
    fingerprint(&bound, Fields::csv(shipped), &mut hasher, &mut fps);
    materialize(&bound, Fields::csv(shipped), &fps, &mut contents);
    let (fp, content) = fps
        .last()
        .map(|(_, fp)| *fp)
        .zip(contents.pop())
        .expect("a shipment row makes the shipment milestone last");
    let delta = Delta {
        candidate: Candidate {
            record: 41,
            locator: "line 42".to_string(),
            fp,
            content,
        },
        kind: ChangeKind::Updated,
        fields: vec![
            "occurred_at".to_string(),
            "attributes.tracking_number".to_string(),
        ],
    };
    let source = Provenance {
        connector: acme.name.clone(),
        file: "status_20261123.csv".to_string(),
        sha256: "9f2c".repeat(16),
        locator: "line 42".to_string(),
    };
    let timestamp = "2026-11-23T04:00:01.123Z";
    let body = outbox::render(&delta, &source, 17, timestamp);
    let webhook_id = outbox::new_webhook_id();
    let due = Due {
        pos: 1,
        lane: fp.lane as i64,
        attempts: 0,
        webhook_id: webhook_id.clone(),
        body: Some(body.clone()),
        connector: acme.name.clone(),
        program: delta.candidate.content.program.clone(),
        case_id: delta.candidate.content.case_id.clone(),
        milestone: delta.candidate.content.milestone.as_str().to_string(),
        seq: 17,
        created_at: 1_795_406_401_123,
    };
    let ts = 1_795_406_401;
    println!(
        "webhook: body of {} bytes, {} signing key(s)",
        body.len(),
        sub.keys.len()
    );

    let mut g = c.benchmark_group("webhook");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    // Once per delta, in the commit: the body that is stored and later sent.
    g.bench_function("render_body", |b| {
        b.iter(|| black_box(outbox::render(black_box(&delta), &source, 17, timestamp)))
    });
    // HMAC-SHA256 is linear in 64-byte blocks: the rendered body, and the
    // same body padded to the ~900 bytes BENCHMARKS.md quotes for an outbox
    // row (trailing whitespace keeps it valid JSON).
    let mut padded = body.clone().into_bytes();
    padded.resize(padded.len().max(900), b' ');
    for (name, bytes) in [("sign_rendered", body.as_bytes()), ("sign_900B", &padded[..])] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(sign::sign(&sub.keys, &webhook_id, ts, black_box(bytes))))
        });
    }
    g.throughput(Throughput::Bytes(body.len() as u64));
    // Once per attempt: the stored body prepared for the subscriber (standard
    // envelope, full payload: a copy), then signed.
    g.bench_function("prepare_and_sign", |b| {
        b.iter(|| {
            let prepared = envelope::prepare(sub, black_box(&due)).expect("a stored full body prepares");
            black_box(sign::sign(
                &sub.keys,
                &due.webhook_id,
                ts,
                prepared.body.as_bytes(),
            ))
        })
    });
    g.finish();
}

/// For benches whose one iteration is a whole file (milliseconds): the same
/// iteration count per sample, and fewer samples, so a run stays short.
fn flat(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, samples: usize) {
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(samples);
    g.measurement_time(Duration::from_secs(5));
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_csv, bench_x12, bench_delta_check, bench_webhook
}
criterion_main!(hot_paths);
