#!/usr/bin/env python3
"""Seeded generator of Acme-Hub-style status snapshots for benchmarks.

    gen-hub-csv.py CASES OUT.csv [--changed-pct P] [--base-seed S] [--repeat K]

Writes ROWS cases (one row each) with realistic columns. With --changed-pct,
writes the "next night" of the same seed: the same snapshot with P% of the
cases moved on (a new status date), so a re-load has exactly that many deltas.
"""
import argparse
import csv
import random

HEADER = ["Case ID", "Patient ID", "Patient Last Name", "Patient DOB", "Status Code", "Status Date",
          "Sub Status", "Payer", "Plan Type", "PA Number", "PA Approval Date", "PA Start", "PA End",
          "Denial Reason", "Ship Date", "Carrier", "Tracking Number", "Fill Number", "NDC", "Quantity",
          "Days Supply", "Last Updated"]
CODES = ["REF", "BI", "BC", "PAS", "PAP", "PAD", "CPE", "HOLD", "CANC", "PAA", "SHP"]
SUB = {"REF": "Intake", "BI": "Benefits Investigation", "BC": "Benefits Verified", "PAS": "Prior Authorization",
       "PAP": "Prior Authorization", "PAD": "Appeal Pending", "CPE": "Patient Financial", "HOLD": "Prescriber Contact",
       "CANC": "Patient Declined", "PAA": "Awaiting Dispense", "SHP": "On Therapy"}
PAYERS = [("Blue Cross Blue Shield", "Commercial"), ("Aetna", "Commercial"), ("UnitedHealthcare", "Commercial"),
          ("Medicare Part D", "Medicare"), ("Humana", "Medicare"), ("State Medicaid", "Medicaid")]
LAST = ["Okafor", "Lindqvist", "Moreau", "Nakamura", "Castillo", "Brennan", "Haddad", "Kowalski"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int)
    ap.add_argument("out")
    ap.add_argument("--changed-pct", type=float, default=0.0)
    ap.add_argument("--base-seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=1,
                    help="write each case's row this many times (an event-log-like file whose size grows without new cases)")
    a = ap.parse_args()
    rng = random.Random(a.base_seed)
    change = random.Random(a.base_seed + 1)
    every = int(round(100 / a.changed_pct)) if a.changed_pct > 0 else 0
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for i in range(a.rows):
            code = CODES[rng.randrange(len(CODES))]
            payer, plan = PAYERS[i % len(PAYERS)]
            day = rng.randint(1, 20)
            if every and i % every == 0:
                day = 21 + change.randint(0, 7)
            row = [f"AC-{i:09d}", f"P{rng.randrange(10**8, 10**9)}", LAST[i % len(LAST)],
                   f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1940, 2005)}",
                   code, f"11/{day:02d}/2026", SUB[code], payer, plan, "", "", "", "", "", "", "", "", "", "", "", "",
                   "2026-11-22 23:00:00"]
            if code in ("PAS", "PAP", "PAD", "PAA", "SHP"):
                row[9] = f"PA{rng.randrange(10**7, 10**8)}"
            if code == "PAD":
                row[13] = "NMN"
            if code in ("PAA", "SHP"):
                row[10] = row[11] = f"11/{rng.randint(1, 20):02d}/2026"
                row[12] = "11/20/2027"
            if code == "SHP":
                row[14] = f"11/{rng.randint(1, 20):02d}/2026"
                row[15], row[16], row[17] = "UPS", f"1Z{rng.randrange(10**15, 10**16)}", "0"
                row[18], row[19], row[20] = "50242-0041-01", "30", "30"
            for _ in range(a.repeat):
                w.writerow(row)


if __name__ == "__main__":
    main()
