#!/usr/bin/env python3
"""Peer for deliveries: signed webhooks posted with `requests`, as a Python
integration team would (one requests.Session, one POST after another, each
signed with Standard Webhooks HMAC-SHA256, any non-2xx an error).

    python_deliver.py URL SECRET N

Bodies are milestone-sized (~900 bytes), one per message, each with its own
webhook-id. Prints one JSON line: sent, seconds, messages/s.
"""
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid

import requests


def body(i):
    return json.dumps({"type": "pa.approved", "timestamp": "2026-11-20T08:15:00Z", "data": {
        "program": "ACME-ONC", "case_id": f"CASE-{i:08d}", "patient_ref": "pt_" + hashlib.sha256(str(i).encode()).hexdigest()[:32],
        "milestone": "pa.approved", "occurred_at": "2026-11-19", "sequence": 3, "status": "ACTIVE",
        "attributes": {"auth_number": f"AUTH{i}", "auth_start": "2026-11-19", "auth_end": "2027-05-18",
                       "payer": "BENCH HEALTH PLAN", "sub_status": "approved with quantity limit"},
        "change": {"kind": "changed", "fields": ["occurred_at", "attributes.auth_number"]},
        "provenance": {"connector": "acme-hub", "file": "acme_status_20261120.csv", "sha256": "0" * 64,
                       "locator": f"line {i + 2}", "received_at": "2026-11-20T08:15:00Z"}}})


def main():
    url, secret, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    key = base64.b64decode(secret.removeprefix("whsec_"))
    bodies = [body(i) for i in range(n)]
    session = requests.Session()
    started = time.perf_counter()
    for payload in bodies:
        msg_id = "msg_" + uuid.uuid4().hex
        ts = str(int(time.time()))
        sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.{payload}".encode(), hashlib.sha256).digest()).decode()
        r = session.post(url, data=payload, headers={"webhook-id": msg_id, "webhook-timestamp": ts,
                                                     "webhook-signature": "v1," + sig,
                                                     "content-type": "application/json"})
        r.raise_for_status()
    secs = time.perf_counter() - started
    print(json.dumps({"sent": n, "seconds": secs, "per_s": n / secs}))


if __name__ == "__main__":
    main()
