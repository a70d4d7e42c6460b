#!/usr/bin/env python3
"""Peer for X12: pyx12's reader over the whole file, the parse alone.

    pyx12_parse.py FILE.x12

pyx12.x12file.X12Reader tokenizes every segment and checks the ISA/IEA,
GS/GE and ST/SE envelopes (control numbers and counts), which is what
`hubsync parse` does before projecting records. Prints one JSON line:
segments, envelope errors, seconds, MB/s.
"""
import json
import os
import sys
import time

import pyx12.x12file


def main():
    path = sys.argv[1]
    started = time.perf_counter()
    segments = errors = 0
    with open(path, encoding="ascii", newline="") as f:
        reader = pyx12.x12file.X12Reader(f)
        for _ in reader:
            segments += 1
        errors = len(list(reader.pop_errors()))
    secs = time.perf_counter() - started
    print(json.dumps({"segments": segments, "errors": errors, "seconds": secs,
                      "mb_per_s": os.path.getsize(path) / 1e6 / secs}))


if __name__ == "__main__":
    main()
