#!/usr/bin/env python3
"""The pipeline an integration team writes today, as a fair peer for hubsync.

Reads a hub CSV with the csv module, maps each row to a milestone the way the
acme-hub mapping does (status code -> milestone, dates to ISO), keeps the last
state per milestone key in a SQLite table, and POSTs each new or changed
milestone with requests, signed with Standard Webhooks HMAC. Idiomatic and
short, not deliberately slow: one transaction per file, a dict of the stored
state loaded up front, executemany for the writes, one requests.Session.

    python_pipeline.py STATE.db FILE.csv URL SECRET
"""
import base64
import csv
import datetime
import hashlib
import hmac
import json
import sqlite3
import sys
import time
import uuid

import requests

STATUS = {"REF": "referral.received", "BI": "bv.started", "BC": "bv.completed", "PAS": "pa.submitted",
          "PAP": "pa.pended", "PAD": "pa.denied", "CPE": "copay.enrolled", "HOLD": "therapy.on_hold",
          "CANC": "case.cancelled"}


def iso(d):
    return datetime.datetime.strptime(d, "%m/%d/%Y").date().isoformat() if d else None


def milestones(row, key):
    code = row["Status Code"].strip().upper()
    pid = hmac.new(key, ("ACME-ONC\0" + row["Patient ID"].strip()).encode(), hashlib.sha256).hexdigest()[:32]
    base = {"program": "ACME-ONC", "case_id": row["Case ID"].strip(), "patient_ref": "pt_" + pid}
    if code not in ("PAA", "SHP"):
        yield dict(base, milestone=STATUS[code], occurred_at=iso(row["Status Date"]),
                   sub_status=row["Sub Status"], payer=row["Payer"], auth_number=row["PA Number"])
    if row["PA Approval Date"]:
        yield dict(base, milestone="pa.approved", occurred_at=iso(row["PA Approval Date"]),
                   auth_number=row["PA Number"], auth_start=iso(row["PA Start"]), auth_end=iso(row["PA End"]))
    if row["Ship Date"]:
        yield dict(base, milestone="dispense.shipped", occurred_at=iso(row["Ship Date"]),
                   carrier=row["Carrier"], tracking_number=row["Tracking Number"], occurrence=row["Fill Number"])


def main():
    db, path, url, secret = sys.argv[1:5]
    key = b"dev-only-pseudonym-key-0123"
    sign_key = base64.b64decode(secret.removeprefix("whsec_"))
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, body TEXT)")
    state = dict(con.execute("SELECT k, body FROM state"))
    session = requests.Session()
    started = time.time()
    rows = sent = 0
    changed = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            rows += 1
            for m in milestones(row, key):
                k = f'{m["program"]}|{m["case_id"]}|{m["milestone"]}|{m.get("occurrence", "")}'
                body = json.dumps(m, sort_keys=True)
                if state.get(k) != body:
                    state[k] = body
                    changed.append((k, body))
    con.executemany("INSERT INTO state (k, body) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET body = excluded.body", changed)
    con.commit()
    committed = time.time() - started
    for _, body in changed:
        msg_id = "msg_" + uuid.uuid4().hex
        ts = str(int(time.time()))
        payload = json.dumps({"type": json.loads(body)["milestone"], "data": json.loads(body)})
        sig = base64.b64encode(hmac.new(sign_key, f"{msg_id}.{ts}.{payload}".encode(), hashlib.sha256).digest()).decode()
        r = session.post(url, data=payload, headers={"webhook-id": msg_id, "webhook-timestamp": ts,
                                                     "webhook-signature": "v1," + sig, "content-type": "application/json"})
        r.raise_for_status()
        sent += 1
    secs = time.time() - started
    print(json.dumps({"rows": rows, "deltas": len(changed), "sent": sent, "seconds": secs, "rows_per_s": rows / secs,
                      "rows_per_s_to_commit": rows / committed}))


if __name__ == "__main__":
    main()
