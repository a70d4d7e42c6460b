#!/usr/bin/env python3
"""Peers for reading a workbook: every cell of every tab, as a Python user would.

    read_xlsx.py openpyxl|calamine FILE.xlsx

openpyxl in read-only mode (its streaming reader, the documented way to read
large files) and python-calamine (Rust's calamine behind Python). Both
produce each row's typed values, which is what hubsync's parser hands its
mapping. Prints one JSON line: rows, seconds, rows/s.
"""
import json
import sys
import time


def with_openpyxl(path):
    import openpyxl
    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    rows = 0
    for ws in wb.worksheets:
        for _ in ws.iter_rows(values_only=True):
            rows += 1
    wb.close()
    return rows


def with_calamine(path):
    from python_calamine import CalamineWorkbook
    wb = CalamineWorkbook.from_path(path)
    rows = 0
    for name in wb.sheet_names:
        for _ in wb.get_sheet_by_name(name).iter_rows():
            rows += 1
    return rows


def main():
    which, path = sys.argv[1:3]
    started = time.perf_counter()
    rows = {"openpyxl": with_openpyxl, "calamine": with_calamine}[which](path)
    secs = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": secs, "rows_per_s": rows / secs}))


if __name__ == "__main__":
    main()
