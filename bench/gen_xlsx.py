#!/usr/bin/env python3
"""Writes a Summit-Hub-like weekly workbook for the benchmark: several tabs.

    gen_xlsx.py OUT.xlsx ROWS [--changed-pct P] [--seed S]

One "Referrals" tab (two title rows above its header, typed dates) and three
"PA Status - <region>" tabs (a note above the header, typed date-times,
decisions, auth numbers, quantities): the layout the shipped `summit-excel`
connector reads. ROWS are spread 40/20/20/20 over the four tabs.

Seeded: the same arguments give the same cells. --changed-pct moves that
share of all rows' PA decisions on (Pended -> Approved, Approved -> a new
auth number), drawn from a second stream so the other cells do not move:
the day-2 workbook with 1% changed. Needs xlsxwriter (bench/run installs it
into bench/.peers/py).
"""
import argparse
import datetime
import random

import xlsxwriter

REGIONS = ["East", "Central", "West"]
DECISIONS = ["Approved", "Approved", "Approved", "Denied", "Pended"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("rows", type=int)
    ap.add_argument("--changed-pct", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    change = random.Random(a.seed + 7919)
    referrals = a.rows * 2 // 5
    per_region = (a.rows - referrals) // len(REGIONS)
    # constant_memory streams rows to disk: a 100k-row book stays small in RAM.
    wb = xlsxwriter.Workbook(a.out, {"constant_memory": True})
    # Fixed document properties: the same arguments give the same bytes.
    wb.set_properties({"created": datetime.datetime(2026, 11, 20, 8, 15)})
    date = wb.add_format({"num_format": "mm/dd/yyyy"})
    stamp = wb.add_format({"num_format": "mm/dd/yyyy hh:mm"})

    ws = wb.add_worksheet("Referrals")
    ws.write(0, 0, "Summit Hub - referrals")
    ws.write(1, 0, "week ending 11/20/2026")
    for c, h in enumerate(["Case #", "Patient Ref", "Received", "NDC", "Prescriber NPI"]):
        ws.write(2, c, h)
    for i in range(referrals):
        r = 3 + i
        ws.write_string(r, 0, f"SUM-{i:07d}")
        ws.write_string(r, 1, f"P-{rng.randrange(10**7):07d}")
        ws.write_datetime(r, 2, datetime.datetime(2026, rng.randint(1, 11), rng.randint(1, 28)), date)
        ws.write_string(r, 3, f"0002-{rng.randrange(10**4):04d}-01")
        ws.write_number(r, 4, 1_000_000_000 + rng.randrange(10**9))

    case = referrals
    for region in REGIONS:
        ws = wb.add_worksheet(f"PA Status - {region}")
        ws.write(0, 0, "Decisions received from payers this week.")
        for c, h in enumerate(["Case #", "Patient Ref", "PA Decision", "Decision Date", "Auth #", "Auth Expires",
                               "Approved Qty"]):
            ws.write(2, c, h)
        for i in range(per_region):
            r = 3 + i
            decision = rng.choice(DECISIONS)
            when = datetime.datetime(2026, rng.randint(1, 11), rng.randint(1, 28), rng.randint(7, 18), rng.randint(0, 59))
            auth = f"{region[:2].upper()}-{rng.randrange(10**6):06d}"
            qty = rng.randint(1, 90)
            if a.changed_pct and change.random() * 100 < a.changed_pct:
                # The decision moves on: a pended or denied request is
                # approved a day later; an approval gets a new auth number.
                auth = auth + "R" if decision == "Approved" else auth
                decision = "Approved"
                when += datetime.timedelta(days=1)
            ws.write_string(r, 0, f"SUM-{case:07d}")
            ws.write_string(r, 1, f"P-{rng.randrange(10**7):07d}")
            ws.write_string(r, 2, decision)
            ws.write_datetime(r, 3, when, stamp)
            if decision == "Approved":
                ws.write_string(r, 4, auth)
                ws.write_datetime(r, 5, when + datetime.timedelta(days=180), date)
                ws.write_number(r, 6, qty)
            case += 1
    wb.close()
    print(f"{a.out}: {referrals + per_region * len(REGIONS)} rows on {1 + len(REGIONS)} tabs")


if __name__ == "__main__":
    main()
