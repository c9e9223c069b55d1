#!/usr/bin/env python3
"""Helpers for bench/run.sh: parse load-generator output, medians, ratios.

  parse.py wrk FILE      -> "RPS P99_MS ERRORS"   (wrk --latency text output)
  parse.py oha FILE      -> "RPS P99_MS ERRORS"   (oha --output-format json)
  parse.py median V...   -> median of the numbers, as an integer
  parse.py median2 V...  -> the same with 2 decimals; values that are not numbers are skipped
  parse.py ratio A B     -> A/B with 2 decimals, or "-" if either is not a number

RPS counts responses per second; for oha only 2xx responses are counted.
ERRORS = socket errors + non-2xx responses (wrk) or errors + non-2xx (oha),
not counting requests that oha cancels when the duration runs out.
Prints "fail" when the output cannot be parsed.
"""
import json
import re
import statistics
import sys

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99(?:\.000)?%\s+(\S+)", text, re.M).group(1))
    errors = 0
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    if total == 0:
        raise ValueError("no requests completed")
    return rps, p99, errors


def parse_oha(path):
    data = json.load(open(path, encoding="utf-8"))
    summary = data["summary"]
    codes = data.get("statusCodeDistribution") or {}
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    bad = sum(n for code, n in codes.items() if not str(code).startswith("2"))
    errs = data.get("errorDistribution") or {}
    bad += sum(n for msg, n in errs.items() if "deadline" not in msg.lower())
    total_s = float(summary["total"])
    if ok == 0 or total_s <= 0:
        raise ValueError("no successful requests")
    p99 = (data.get("latencyPercentiles") or {}).get("p99")
    p99_ms = float(p99) * 1000.0 if p99 is not None else float("nan")
    return ok / total_s, p99_ms, bad


def main(argv):
    cmd = argv[1]
    if cmd in ("wrk", "oha"):
        try:
            rps, p99, errors = (parse_wrk if cmd == "wrk" else parse_oha)(argv[2])
            print(f"{rps:.0f} {p99:.2f} {errors}")
        except Exception as e:  # noqa: BLE001 - any parse problem is a failed run
            print(f"parse error: {e}", file=sys.stderr)
            print("fail fail fail")
    elif cmd == "median":
        vals = [float(v) for v in argv[2:]]
        print(f"{statistics.median(vals):.0f}" if vals else "fail")
    elif cmd == "median2":
        vals = []
        for v in argv[2:]:
            try:
                vals.append(float(v))
            except ValueError:
                pass
        print(f"{statistics.median(vals):.2f}" if vals else "-")
    elif cmd == "ratio":
        try:
            a, b = float(argv[2]), float(argv[3])
            print(f"{a / b:.2f}" if b != 0 else "-")
        except (ValueError, IndexError):
            print("-")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
