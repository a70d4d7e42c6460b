#!/usr/bin/env python3
"""Writes a large, valid X12 278-response file for the throughput benchmark.

Usage: scripts/gen-x12-bench.py OUT.x12 [MEGABYTES=110] [SEED=42] [CONTROL_BASE=0] [CHANGED_PCT=0]

CONTROL_BASE shifts the interchange control numbers only: the same seed with
another base gives a different file (new sha256) with the same milestones,
which measures the re-sent-snapshot path (everything unchanged).
CHANGED_PCT moves that share of events to another decision (a pended or
denied request approved, an approval modified), drawn from a second seeded
stream, so the rest of the file stays byte-identical in content: the day-2
re-load with 1% changed.

Seeded, so the same arguments give the same bytes. Interchanges of 50
transaction sets, each set with 1-4 patient events (HL EV), decisions drawn
from A1/A2/A3/A4/A6/CT/C, some with a service-level HL SS. Envelopes and
SE counts are correct, so every event is a record.
"""
import random
import sys


def main():
    out = sys.argv[1]
    target = int(sys.argv[2]) if len(sys.argv) > 2 else 110
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 42)
    target_bytes = target * 1024 * 1024
    decisions = ["A1", "A1", "A1", "A2", "A3", "A4", "A6", "CT", "C"]
    written = 0
    isa_ctl = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    trace = 0
    changed_pct = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    change = random.Random(7919)  # its own stream: changing events must not shift the others
    with open(out, "w", newline="") as f:
        while written < target_bytes:
            isa_ctl += 1
            parts = [f"ISA*00*{' ' * 10}*00*{' ' * 10}*ZZ*{'BENCHPAYER':<15}*ZZ*{'HUBSYNC':<15}*261120*0815*^*00501*{isa_ctl:09d}*0*P*:~\n",
                     f"GS*HI*BENCHPAYER*HUBSYNC*20261120*0815*{isa_ctl}*X*005010X217~\n"]
            for s in range(1, 51):
                segs = [f"ST*278*{s:04d}*005010X217", f"BHT*0007*11*R{isa_ctl}-{s}*20261120*0815*18",
                        "HL*1**20*1", "NM1*X3*2*BENCH HEALTH PLAN*****PI*60054",
                        "HL*2*1*21*1", "NM1*1P*2*NORTHSIDE ONCOLOGY*****XX*1184795521",
                        "HL*3*2*22*1", f"NM1*IL*1*MEMBER*TEST****MI*W{rng.randrange(10**8):08d}"]
                hl = 3
                for _ in range(rng.randint(1, 4)):
                    hl += 1
                    ev = hl
                    trace += 1
                    d = drawn = rng.choice(decisions)
                    if changed_pct and change.random() * 100 < changed_pct:
                        d = "A6" if d == "A1" else "A1"
                    hcr = {"A1": f"HCR*A1*AUTH{trace}", "A2": f"HCR*A2*AUTH{trace}", "A6": f"HCR*A6*AUTH{trace}",
                           "A3": "HCR*A3**0U", "A4": "HCR*A4", "CT": "HCR*CT", "C": "HCR*C"}[d]
                    has_ss = rng.random() < 0.3
                    segs += [f"HL*{ev}*3*EV*{1 if has_ss else 0}", f"TRN*2*TRK{trace:010d}*9012345678",
                             "UM*SC*I*3*11:B", hcr, "DTP*007*D8*20261201", "DTP*036*D8*20270531",
                             f"DTP*102*D8*202611{rng.randint(1, 28):02d}", "HI*ABK:C50911", "HSD*VS*1",
                             "NM1*SJ*1*DOE*RILEY****XX*1234567893", "PER*IC**TE*4029993456"]
                    if drawn == "A4" and rng.random() < 0.5 and d == "A4":
                        segs.append("PWK*OZ*EL")
                    if has_ss:
                        hl += 1
                        segs += [f"HL*{hl}*{ev}*SS*0", "SV2*0510*HC:J9271*0*UN*6", "HCR*A1*AUTHSS"]
                segs.append(f"SE*{len(segs) + 1}*{s:04d}")
                parts.append("~\n".join(segs) + "~\n")
            parts.append(f"GE*50*{isa_ctl}~\nIEA*1*{isa_ctl:09d}~\n")
            chunk = "".join(parts)
            f.write(chunk)
            written += len(chunk)
    print(f"{out}: {written} bytes, {isa_ctl} interchanges, {trace} events")


if __name__ == "__main__":
    main()
