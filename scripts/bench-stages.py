#!/usr/bin/env python3
"""The mean time of each stage of an API request between two scrapes of the server's metrics.

    bench-stages.py BEFORE AFTER CONCURRENCY [OPERATION]

Reads `kms_request_stage_duration_seconds_{sum,count}{operation="…",stage="…"}` of OPERATION
(Encrypt unless named) from two OpenMetrics texts of the same server, and prints one JSON line a
stage (label "stages", case "stage <name>", the concurrency, mean_us and count) for
bench-report.py. Standard library only.
"""
import json
import re
import sys

SERIES = re.compile(r'^kms_request_stage_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$')
OPERATION = sys.argv[4] if len(sys.argv) > 4 else "Encrypt"


def read(path):
    out = {}
    for line in open(path):
        m = SERIES.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if labels.get("operation") == OPERATION:
            out[(labels.get("stage"), m.group(1))] = float(m.group(3))
    return out


before, after, conc = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
for stage in ("receive", "authenticate", "operation", "record", "respond"):
    n = after.get((stage, "count"), 0) - before.get((stage, "count"), 0)
    s = after.get((stage, "sum"), 0) - before.get((stage, "sum"), 0)
    if n > 0:
        print(json.dumps({"label": "stages", "case": f"stage {stage}", "concurrency": conc,
                          "mean_us": round(s / n * 1e6, 1), "count": int(n)}))
