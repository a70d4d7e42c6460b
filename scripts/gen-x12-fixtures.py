#!/usr/bin/env python3
"""Writes hubsync's own X12 fixtures in fixtures/x12/.

The public samples (fixtures/x12-public/) have one approved 278 and a few
271s; these add pended, info-requested, denied, modified, contact-payer and
cancelled 278 responses, and broken envelopes. Deterministic; every name and
identifier is made up. SE01 is computed unless a case breaks it on purpose.
"""
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "x12"


def isa(ctl, elem="*", rep="^", comp=":", term="~", date="261120", time="0815"):
    e = elem
    return (f"ISA{e}00{e}{' ' * 10}{e}00{e}{' ' * 10}{e}ZZ{e}{'ACMEPAYER':<15}{e}ZZ{e}{'HUBSYNC':<15}"
            f"{e}{date}{e}{time}{e}{rep}{e}00501{e}{ctl:09d}{e}0{e}P{e}{comp}{term}")


def event(hl, parent, trace, hcr, dtps=(), extra=(), services=()):
    segs = [f"HL*{hl}*{parent}*EV*{1 if services else 0}", f"TRN*2*{trace}*9012345678",
            "UM*SC*I*3*11:B", hcr, *dtps, *extra, "HI*ABK:C50911", "NM1*SJ*1*DOE*RILEY****XX*1234567893"]
    n = hl
    for s in services:
        n += 1
        segs += [f"HL*{n}*{hl}*SS*0", *s]
    return segs, n


def st(ctl, events_fn, se_count=None, payer="ACME HEALTH PLAN"):
    body = ["BHT*0007*11*REF{}*20261120*0815*18".format(ctl),
            "HL*1**20*1", f"NM1*X3*2*{payer}*****PI*60054",
            "HL*2*1*21*1", "NM1*1P*2*NORTHSIDE ONCOLOGY*****XX*1184795521",
            "HL*3*2*22*1", "NM1*IL*1*QUINN*AVERY****MI*W100200300"]
    body += events_fn(4)
    segs = [f"ST*278*{ctl:04d}*005010X217", *body]
    count = len(segs) + 1 if se_count is None else se_count
    return segs + [f"SE*{count}*{ctl:04d}"]


def interchange(ctl, sets, term="~", ge_count=None, iea_ctl=None, sep_nl="\r\n", **kw):
    segs = [f"GS*HI*ACMEPAYER*HUBSYNC*20261120*0815*{ctl}*X*005010X217"]
    for s in sets:
        segs += s
    segs += [f"GE*{len(sets) if ge_count is None else ge_count}*{ctl}", f"IEA*1*{(iea_ctl or ctl):09d}"]
    return isa(ctl, term=term, **kw) + sep_nl + (term + sep_nl).join(segs) + term + sep_nl


def one(segs_n):
    return segs_n[0]


def write(name, text, encoding="latin-1"):
    (OUT / name).write_bytes(text.encode(encoding))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # Pended: A4, no paperwork asked.
    write("278-pended.x12", interchange(101, [st(1, lambda h: one(event(h, 3, "TRK-PEND-1", "HCR*A4**0U",
                                                                       ["DTP*102*D8*20261119"])))]))
    # Info requested: A4 with a PWK (the payer wants clinical notes).
    write("278-info-requested.x12", interchange(102, [st(1, lambda h: one(event(h, 3, "TRK-INFO-1", "HCR*A4",
                                                                                ["DTP*102*D8*20261119"],
                                                                                ["PWK*OZ*EL"])))]))
    # Denied: A3, no certification number (empty HCR02), reason in HCR03.
    write("278-denied.x12", interchange(103, [st(1, lambda h: one(event(h, 3, "TRK-DENY-1", "HCR*A3**0U",
                                                                        ["DTP*102*D8*20261118"])))]))
    # Modified: A6 with dates, and a service whose own HCR differs (A1).
    write("278-modified.x12", interchange(104, [st(1, lambda h: one(event(
        h, 3, "TRK-MOD-1", "HCR*A6*AUTH-7781",
        ["DTP*007*D8*20261201", "DTP*036*D8*20270531", "DTP*102*D8*20261120"],
        ["REF*NT*ADMIN-55"],
        services=[["SV2*0510*HC:J9271*0*UN*6", "HCR*A1*AUTH-7781-1"]])))]))
    # One set, three events: contact payer, cancelled, partially approved.
    def three(h):
        a, n = event(h, 3, "TRK-CT-1", "HCR*CT", ["DTP*102*D8*20261117"])
        b, n = event(n + 1, 3, "TRK-CAN-1", "HCR*C", ["DTP*102*D8*20261117"])
        c, n = event(n + 1, 3, "TRK-PART-1", "HCR*A2*AUTH-9001", ["DTP*AAH*RD8*20261120-20270519"])
        return a + b + c
    write("278-three-events.x12", interchange(105, [st(1, three)]))
    # 0x1D terminator, no line breaks, a Windows-1252 payer name (é = 0xE9).
    write("278-gs-terminator.x12", interchange(106, [st(1, lambda h: one(event(h, 3, "TRK-GS-1", "HCR*A1*AUTH-1D",
                                                                               ["DTP*102*D8*20261120"]))),
                                                     ], term="\x1d", sep_nl="",), encoding="cp1252")
    (OUT / "278-gs-terminator.x12").write_bytes(
        (OUT / "278-gs-terminator.x12").read_bytes().replace(b"ACME HEALTH PLAN", b"SANT\xc9 MUTUELLE"))
    # Broken: a bad set (SE01 wrong) beside a good one: the good one flows.
    good = st(1, lambda h: one(event(h, 3, "TRK-GOOD-1", "HCR*A1*AUTH-G1", ["DTP*102*D8*20261120"])))
    bad = st(2, lambda h: one(event(h, 3, "TRK-BAD-1", "HCR*A1*AUTH-B1", ["DTP*102*D8*20261120"])), se_count=99)
    write("278-bad-set-count.x12", interchange(107, [good, bad]))
    # Broken: HL02 names a parent that is not open.
    def orphan(h):
        segs, _ = event(h, 9, "TRK-ORPHAN-1", "HCR*A1*AUTH-O1", ["DTP*102*D8*20261120"])
        return segs
    write("278-bad-hl-parent.x12", interchange(108, [st(1, orphan)]))
    # Broken interchange: IEA02 does not match ISA13 -> the whole file fails.
    write("278-bad-iea.x12", interchange(109, [st(1, lambda h: one(event(h, 3, "TRK-IEA-1", "HCR*A1*AUTH-I1",
                                                                        ["DTP*102*D8*20261120"])))], iea_ctl=110))
    # Broken group: GE01 counts two sets, the group has one.
    write("278-bad-ge-count.x12", interchange(111, [st(1, lambda h: one(event(h, 3, "TRK-GE-1", "HCR*A1*AUTH-E1",
                                                                             ["DTP*102*D8*20261120"])))], ge_count=2))
    # Two interchanges in one file; the second breaks IEA01: the first flows.
    first = interchange(112, [st(1, lambda h: one(event(h, 3, "TRK-TWO-1", "HCR*A1*AUTH-T1", ["DTP*102*D8*20261120"])))])
    second = interchange(113, [st(1, lambda h: one(event(h, 3, "TRK-TWO-2", "HCR*A1*AUTH-T2", ["DTP*102*D8*20261120"])))])
    second = second.replace("IEA*1*000000113", "IEA*3*000000113")
    write("278-two-interchanges.x12", first + second)


if __name__ == "__main__":
    main()
