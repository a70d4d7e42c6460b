#!/usr/bin/env python3
"""Writes the Acme Hub sample files in fixtures/acme-hub/.

Deterministic (seeded). Day 1 is a full snapshot of 40 cases; day 2 is the
same snapshot with exactly three cases moved on: a PA approval, a shipment,
and a benefits verification completed. All names and identifiers are made up.
"""
import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "acme-hub"
HEADER = [
    "Case ID", "Patient ID", "Patient Last Name", "Patient DOB", "Status Code", "Status Date",
    "Sub Status", "Payer", "Plan Type", "PA Number", "PA Approval Date", "PA Start", "PA End",
    "Denial Reason", "Ship Date", "Carrier", "Tracking Number", "Fill Number", "NDC", "Quantity",
    "Days Supply", "Last Updated",
]
LAST = ["Okafor", "Lindqvist", "Moreau", "Nakamura", "Castillo", "Brennan", "Haddad", "Kowalski", "Adeyemi", "Fitzgerald"]
PAYERS = [("Blue Cross Blue Shield", "Commercial"), ("Aetna", "Commercial"), ("UnitedHealthcare", "Commercial"),
          ("Medicare Part D", "Medicare"), ("Humana", "Medicare"), ("State Medicaid", "Medicaid")]
# The hub's own status codes, in journey order.
JOURNEY = ["REF", "BI", "BC", "PAS", "PAA", "SHP"]
SIDE = ["PAD", "PAP", "CPE", "HOLD", "CANC"]
SUB = {"REF": "Intake", "BI": "Benefits Investigation", "BC": "Benefits Verified", "PAS": "Prior Authorization",
       "PAA": "Awaiting Dispense", "SHP": "On Therapy", "PAD": "Appeal Pending", "PAP": "Prior Authorization",
       "CPE": "Patient Financial", "HOLD": "Prescriber Contact", "CANC": "Patient Declined"}
NDC = "50242-0041-01"


def case_row(rng, i, code, day):
    payer, plan = PAYERS[i % len(PAYERS)]
    row = {h: "" for h in HEADER}
    row.update({
        "Case ID": f"AC-{100200 + i}",
        "Patient ID": f"P{rng.randint(1000000, 9999999)}",
        "Patient Last Name": rng.choice(LAST),
        "Patient DOB": f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1940, 2005)}",
        "Status Code": code,
        "Status Date": f"11/{rng.randint(1, 20):02d}/2026",
        "Sub Status": SUB[code],
        "Payer": payer,
        "Plan Type": plan,
        "Last Updated": f"2026-11-{day:02d} 23:{rng.randint(0, 59):02d}:00",
    })
    if JOURNEY.index(code) >= JOURNEY.index("PAS") if code in JOURNEY else code in ("PAD", "PAP"):
        row["PA Number"] = f"PA{rng.randint(10000000, 99999999)}"
    if code == "PAD":
        row["Denial Reason"] = rng.choice(["NMN", "STEP", "QL"])
    if code in ("PAA", "SHP"):
        fill_pa(row, rng)
    if code == "SHP":
        fill_ship(row, rng, 0)
    return row


def fill_pa(row, rng):
    row["PA Approval Date"] = f"11/{rng.randint(10, 20):02d}/2026"
    row["PA Start"] = row["PA Approval Date"]
    row["PA End"] = "11/20/2027"


def fill_ship(row, rng, fill):
    row["Ship Date"] = f"11/{rng.randint(15, 21):02d}/2026"
    row["Carrier"] = rng.choice(["UPS", "FedEx"])
    row["Tracking Number"] = f"1Z{rng.randint(10**15, 10**16 - 1)}"
    row["Fill Number"] = str(fill)
    row["NDC"] = NDC
    row["Quantity"] = "30"
    row["Days Supply"] = "30"


def write(name, rows, newline="\r\n"):
    with open(OUT / name, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, lineterminator=newline)
        w.writeheader()
        w.writerows(rows)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261122)
    codes = JOURNEY + SIDE
    day1 = [case_row(rng, i, codes[i % len(codes)], 22) for i in range(40)]
    write("status_20261122.csv", day1)

    # Day 2: three cases move on; everything else is byte-for-byte the same
    # content (a full snapshot re-sent), only Last Updated differs, which the
    # mapping does not read.
    day2 = [dict(r) for r in day1]
    for r in day2:
        r["Last Updated"] = r["Last Updated"].replace("2026-11-22", "2026-11-23")
    rng2 = random.Random(20261123)
    pas = next(r for r in day2 if r["Status Code"] == "PAS")
    pas.update({"Status Code": "PAA", "Status Date": "11/22/2026", "Sub Status": SUB["PAA"]})
    fill_pa(pas, rng2)
    pas["PA Approval Date"] = "11/22/2026"
    pas["PA Start"] = "11/22/2026"
    paa = next(r for r in day2 if r["Status Code"] == "PAA" and r is not pas)
    paa.update({"Status Code": "SHP", "Status Date": "11/22/2026", "Sub Status": SUB["SHP"]})
    fill_ship(paa, rng2, 0)
    paa["Ship Date"] = "11/22/2026"
    bi = next(r for r in day2 if r["Status Code"] == "BI")
    bi.update({"Status Code": "BC", "Status Date": "11/22/2026", "Sub Status": SUB["BC"]})
    write("status_20261123.csv", day2)

    # Bad input: a bad date, an unknown status code, an empty case id, and
    # good rows around them.
    bad = [dict(r) for r in day1[:6]]
    bad[1]["Status Date"] = "13/45/2026"
    bad[2]["Status Code"] = "ZZZ"
    bad[3]["Case ID"] = ""
    write("status_bad_rows.csv", bad)

    # A drifted header: "Status Code" renamed to "Stat Cd" (a required column).
    with open(OUT / "status_wrong_header.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow([("Stat Cd" if h == "Status Code" else h) for h in HEADER])
        for r in day1[:3]:
            w.writerow([r[h] for h in HEADER])


if __name__ == "__main__":
    main()
