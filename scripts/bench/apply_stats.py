#!/usr/bin/env python3
"""Reads the sandbox's --request-log (JSON lines) of one apply run and prints one JSON object:
PATCH calls sent and accepted, 429 answers (split into quota hits, which incidentops caused,
and injected ones), the accepted calls in the WINDOW seconds after the first PATCH, and the time
from the first PATCH to the last.

    apply_stats.py LOG --window 180 [--all-calls]

--all-calls counts every accepted API call in the window (the hourly quota is shared by all
calls), not only PATCH.
"""
import argparse, json, sys
from datetime import datetime


def when(text):
    # 2026-12-04T16:40:01.1234567Z: seven fractional digits, more than fromisoformat takes.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head).timestamp() + (float("0." + frac) if frac else 0.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--all-calls", action="store_true")
    args = parser.parse_args()
    entries = [json.loads(line) for line in open(args.log) if line.strip()]
    api = [e for e in entries if e["path"].startswith("/api/")]
    patches = [e for e in api if e["method"] == "PATCH"]
    if not patches:
        sys.exit("apply_stats.py: no PATCH in the log")
    start = when(patches[0]["time"])
    counted = api if args.all_calls else patches
    accepted = [e for e in counted if e.get("status") == 200]
    in_window = [e for e in accepted if start <= when(e["time"]) < start + args.window]
    throttled = [e for e in api if e.get("status") == 429]
    # How old the concurrent-edit check was when each incident's first PATCH arrived: since the
    # last GET of that incident, or the last listing of recent changes, before the PATCH.
    ages = []
    last_get, last_listing, patched = {}, None, set()
    for e in api:
        t = when(e["time"])
        if e["method"] == "GET" and "lastUpdateTime" in e["path"] and e.get("status") == 200:
            last_listing = t
        elif e["method"] == "GET" and e["path"].startswith("/api/incidents/") and e.get("status") == 200:
            last_get[e["path"].rsplit("/", 1)[-1]] = t
        elif e["method"] == "PATCH":
            incident = e["path"].rsplit("/", 1)[-1]
            if incident in patched:
                continue
            patched.add(incident)
            checked = last_get.get(incident, last_listing)
            if checked is not None:
                ages.append(t - checked)
    ages.sort()
    print(json.dumps({
        "patches": len(patches),
        "patchesAccepted": sum(1 for e in patches if e.get("status") == 200),
        "apiCalls": len(api),
        "quota429": sum(1 for e in throttled if not e.get("fault")),
        "injected429": sum(1 for e in throttled if e.get("fault")),
        "acceptedInWindow": len(in_window),
        "window": args.window,
        "firstToLastPatch": round(when(patches[-1]["time"]) - start, 3),
        # The concurrent-edit check: a GET per incident, or listings of what changed lately.
        "getById": sum(1 for e in api if e["method"] == "GET" and e["path"].startswith("/api/incidents/")),
        "listings": sum(1 for e in api if e["method"] == "GET" and "lastUpdateTime" in e["path"]),
        "checkAgeMedian": round(ages[len(ages) // 2], 3) if ages else None,
        "checkAgeMax": round(ages[-1], 3) if ages else None,
    }))


if __name__ == "__main__":
    main()
