#!/usr/bin/env python3
"""The targets of issue 22 checked against one run of scripts/bench.sh, and its plots.

    bench-report.py RESULTS.jsonl OUTDIR --machine M --commit C --command CMD

Prints Markdown (the far-token and nodes tables, the targets with their ratios and verdicts,
links to the plots) and writes OUTDIR/latency.svg and OUTDIR/far-token.svg. Every target is a
ratio or a difference between figures of the same run. Standard library only.
"""
import argparse
import json
import math
import os
import re
import statistics

p = argparse.ArgumentParser()
p.add_argument("jsonl")
p.add_argument("outdir")
p.add_argument("--machine", default="")
p.add_argument("--commit", default="")
p.add_argument("--command", default="")
a = p.parse_args()
rows = [json.loads(l) for l in open(a.jsonl) if l.strip()]


def find(case, conc=None, label=None):
    return [
        r
        for r in rows
        if r.get("case") == case
        and (conc is None or r.get("concurrency") == conc)
        and (label is None or r.get("label") == label)
    ]


def one(case, conc=None, label=None):
    f = find(case, conc, label)
    return f[0] if f else None


targets = []  # (target, measured, verdict)


def check(name, ok, measured):
    targets.append((name, measured, "met" if ok else "**not met**"))


http1, http64 = one("HTTP baseline", 1), one("HTTP baseline", 64)
fsync = one("fdatasync 8 KiB")
enc1 = one("Encrypt 64 B", 1, "kms")
floor = one("the trail's append alone (Postgres)", 1)
if http1 and fsync and enc1:
    limit = http1["p50_us"] + fsync["p50_us"] + 150
    check(
        "Encrypt 64 B, c=1, audit on: p50 ≤ HTTP p50 + one fdatasync + 150 µs",
        enc1["p50_us"] <= limit,
        f'{enc1["p50_us"]} µs against {http1["p50_us"]} + {fsync["p50_us"]} + 150 = {limit} µs '
        f'({enc1["p50_us"] - limit:+d} µs)'
        + (f'; the trail\'s append alone (Postgres, no HTTP, no token): {floor["p50_us"]} µs p50'
           if floor else ""),
    )
for case in ("Encrypt 64 B", "Decrypt", "GenerateDataKey"):
    r = one(case, 64, "kms")
    if r and http64:
        check(
            f"{case}, c=64: ≥ 0.5 × the bare HTTP server",
            r["rps"] >= 0.5 * http64["rps"],
            f'{r["rps"]:.0f} / {http64["rps"]:.0f} req/s = {r["rps"] / http64["rps"]:.2f} ×',
        )
        check(
            f"{case}, c=64: p99 ≤ 4 × p50",
            r["p99_us"] <= 4 * r["p50_us"],
            f'{r["p99_us"]} µs = {r["p99_us"] / max(r["p50_us"], 1):.1f} × {r["p50_us"]} µs',
        )
for case, tok, want in (
    ("Sign P-256", "token P-256 ECDSA sign", 0.8),
    ("Sign RSA-2048 PSS", "token RSA-2048 PSS sign", 1.0),
):
    r, t = one(case, 64, "kms"), one(tok, 1, "kms")
    if r and t:
        check(
            f"{case}, c=64: ≥ {want} × the token's rate (one session)",
            r["rps"] >= want * t["rps"],
            f'{r["rps"]:.0f} / {t["rps"]:.0f} = {r["rps"] / t["rps"]:.2f} ×',
        )
on = [r["rps"] for r in find("Encrypt 64 B", 64, "audit-on")]
off = [r["rps"] for r in find("Encrypt 64 B", 64, "audit-off")]
if on and off:
    m_on, m_off = statistics.median(on), statistics.median(off)
    check(
        "Audit on ≥ 0.9 × audit off, Encrypt c=64 (medians of the rounds in turns)",
        m_on >= 0.9 * m_off,
        f"{m_on:.0f} / {m_off:.0f} req/s = {m_on / m_off:.2f} × ({len(on)} rounds each)",
    )
small = [r for r in rows if r.get("case") == "Encrypt 64 B, 10 keys"]
large = [r for r in rows if str(r.get("case", "")).startswith("Encrypt 64 B, 1,000 of")]
if small and large:
    pairs = list(zip(small, large))
    good = sum(1 for s, l in pairs if l["rps"] >= 0.9 * s["rps"])
    check(
        f"{large[0]['case'][len('Encrypt 64 B, 1,000 of '):]} within 10 % of 10 keys, "
        f"{len(pairs)} rounds out of {len(pairs)}",
        good == len(pairs),
        ", ".join(f'{l["rps"] / s["rps"]:.2f} ×' for s, l in pairs) + f" ({good} of {len(pairs)})",
    )

# The far token: label "far[ TOKEN] rtt=<us>us pool=<n>", the token's round trip
# "far[ TOKEN] rtt=<us>us". No TOKEN: SoftHSM2 (PKCS#11 2.40: two calls an Encrypt); "kryoptic":
# Kryoptic (PKCS#11 3.0 messages: one call an Encrypt once a session is set up for the key).
TOKENS = {"": "SoftHSM2 (2.40)", "kryoptic": "Kryoptic (3.0 messages)"}
far = {}
rtt_measured = {}
for r in rows:
    m = re.fullmatch(r"far(?: (\w+))? rtt=(\d+)us(?: pool=(\d+))?", str(r.get("label", "")))
    if not m:
        continue
    tok, rtt = m.group(1) or "", int(m.group(2))
    if m.group(3) is None:
        if r.get("case") == "token round trip (C_GetSessionInfo)" and r["rps"] > 0:
            rtt_measured[(tok, rtt)] = 1e6 / r["rps"]
    elif r.get("case") == "Encrypt 64 B":
        far[(tok, rtt, int(m.group(3)))] = r
far_lines = []
if far:
    far_lines += [
        "| Token | Round trip (set; measured) | Session pool | Encrypt 64 B c=64 req/s | p50 µs | p99 µs "
        "| pool ÷ round trip | × that | × pool ÷ (2 round trips) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (tok, rtt, pool), r in sorted(far.items()):
        rt = rtt_measured.get((tok, rtt), float(rtt))
        ideal = pool / (rt / 1e6)
        far_lines.append(
            f'| {TOKENS.get(tok, tok)} | {rtt} µs; {rt:.0f} µs | {pool} | {r["rps"]:.0f} | {r["p50_us"]} '
            f'| {r["p99_us"]} | {ideal:.0f} | {r["rps"] / ideal:.2f} | {2 * r["rps"] / ideal:.2f} |'
        )
    for (tok, rtt, pool), r in sorted(far.items()):
        if rtt != 1000:
            continue
        rt = rtt_measured.get((tok, rtt), float(rtt))
        ideal = pool / (rt / 1e6)
        check(
            f"Far token ({TOKENS.get(tok, tok)}), 1 ms a call, pool {pool}, inline_calls = false: "
            "≥ 0.8 × pool ÷ round trip",
            r["rps"] >= 0.8 * ideal,
            f'{r["rps"]:.0f} / {ideal:.0f} = {r["rps"] / ideal:.2f} ×',
        )

node_rows = {int(r["label"][6:]): r for r in rows if str(r.get("label", "")).startswith("nodes=")}
node_lines = []
if node_rows:
    node_lines += [
        "| Servers | Encrypt 64 B c=64 in all, req/s | × one server | each server's p99 µs | × one server's p99 |",
        "|---:|---:|---:|---|---|",
    ]
    base = node_rows.get(1)
    for n, r in sorted(node_rows.items()):
        p99s = [x["p99_us"] for x in r.get("nodes", [])] or [r["p99_us"]]
        ratios = ", ".join("%.2f" % (x / base["p99_us"]) for x in p99s)
        node_lines.append(
            f'| {n} | {r["rps"]:.0f} | {r["rps"] / base["rps"]:.2f} | {", ".join(map(str, p99s))} '
            f"| {ratios} |"
        )
        if n > 1 and base:
            check(
                f"{n} servers on one Postgres: ≥ 0.9 × one server's throughput",
                r["rps"] >= 0.9 * base["rps"],
                f'{r["rps"]:.0f} / {base["rps"]:.0f} = {r["rps"] / base["rps"]:.2f} ×',
            )
            check(
                f"{n} servers: each server's p99 within 20 % of one server's",
                all(x <= 1.2 * base["p99_us"] for x in p99s),
                ", ".join(f"{x / base['p99_us']:.2f} ×" for x in p99s),
            )


# Where a request's time goes: the server's own stage metric, mean µs a request, by concurrency.
STAGES = ("receive", "authenticate", "operation", "record", "respond")
stage_rows = {(r["case"][len("stage "):], r["concurrency"]): r for r in rows
              if r.get("label") == "stages" and str(r.get("case", "")).startswith("stage ")}
stage_lines = []
concs = sorted({c for _, c in stage_rows})
if stage_rows:
    p50 = {c: one("Encrypt 64 B", c, "stages") for c in concs}
    stage_lines += [
        "| Stage | " + " | ".join(f"c={c}: mean µs | share" for c in concs) + " |",
        "|---|" + "---:|---:|" * len(concs),
    ]
    totals = {c: sum(stage_rows[(s, c)]["mean_us"] for s in STAGES if (s, c) in stage_rows) for c in concs}
    for s in STAGES:
        cells = []
        for c in concs:
            r = stage_rows.get((s, c))
            cells.append(f'{r["mean_us"]:.0f} | {r["mean_us"] / totals[c]:.0%}' if r else " | ")
        stage_lines.append(f"| {s} | " + " | ".join(cells) + " |")
    stage_lines.append("| all stages | " + " | ".join(f"{totals[c]:.0f} | " for c in concs) + " |")
    stage_lines.append(
        "| the client's p50, same run | "
        + " | ".join(f'{p50[c]["p50_us"]} | ' if p50[c] else " | " for c in concs) + " |")


# ---- plots: small hand-made SVG line charts -------------------------------------------------
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def chart(path, title, xlabel, ylabel, series, logy=True):
    """series: [(name, [(x, y)], dashed)]; x on a log2 axis, y on a log10 (or linear) axis."""
    W, H, L, R, T, Bm = 720, 420, 80, 200, 40, 50
    pts = [(x, y) for _, s, _ in series for x, y in s if y > 0]
    if not pts:
        return False
    xs = sorted({x for x, _ in pts})
    x0, x1 = math.log2(min(xs)), math.log2(max(xs))
    if x1 == x0:
        x1 = x0 + 1
    ys = [y for _, y in pts]
    if logy:
        y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
        if y1 == y0:
            y1 += 1
        fy = lambda y: T + (H - T - Bm) * (1 - (math.log10(y) - y0) / (y1 - y0))
        yticks = [10**e for e in range(y0, y1 + 1)]
    else:
        y0, y1 = 0, max(ys) * 1.1
        fy = lambda y: T + (H - T - Bm) * (1 - (y - y0) / (y1 - y0))
        step = 10 ** math.floor(math.log10(y1 / 5))
        yticks = [step * i for i in range(0, int(y1 / step) + 1, max(1, int(y1 / step / 6)))]
    fx = lambda x: L + (W - L - R) * (math.log2(x) - x0) / (x1 - x0)
    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
        f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{xlabel}</text>',
        f'<text x="16" y="{(T + H - Bm) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - Bm) / 2})">{ylabel}</text>',
    ]
    for y in yticks:
        Y = fy(y)
        o.append(f'<line x1="{L}" x2="{W - R}" y1="{Y:.1f}" y2="{Y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y + 4:.1f}" text-anchor="end">{y:g}</text>')
    for x in xs:
        X = fx(x)
        o.append(f'<line x1="{X:.1f}" x2="{X:.1f}" y1="{T}" y2="{H - Bm}" stroke="#eee"/>')
        o.append(f'<text x="{X:.1f}" y="{H - Bm + 16}" text-anchor="middle">{x:g}</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - Bm}" fill="none" stroke="#444"/>')
    for i, (name, s, dashed) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        s = sorted((x, y) for x, y in s if y > 0)
        d = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in s)
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        o.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for x, y in s:
            o.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{c}"/>')
        ly = T + 14 + 18 * i
        o.append(f'<line x1="{W - R + 12}" x2="{W - R + 36}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{W - R + 42}" y="{ly}">{name}</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o))
    return True


plots = []
series = []
for case in ("Encrypt 64 B", "Decrypt", "GenerateDataKey"):
    rs = sorted(find(case, None, "kms"), key=lambda r: r["concurrency"])
    if len(rs) > 1:
        for k, name, dashed in (("p50_us", "p50", False), ("p99_us", "p99", True)):
            series.append((f"{case} {name}", [(r["concurrency"], r[k]) for r in rs], dashed))
hs = sorted(find("HTTP baseline"), key=lambda r: r["concurrency"])
if hs:
    series.append(("HTTP baseline p50", [(r["concurrency"], r["p50_us"]) for r in hs], False))
if chart(f"{a.outdir}/latency.svg", "Latency by concurrency (audit on)", "concurrent connections",
         "µs (log)", series):
    plots.append(("Latency percentiles by concurrency", "latency.svg"))
series = []
for tok, rtt in sorted({k[:2] for k in far}):
    pts = [(pool, r["rps"]) for (k, t, pool), r in far.items() if (k, t) == (tok, rtt)]
    series.append((f"{TOKENS.get(tok, tok)}, {rtt} µs round trip", pts, False))
    rt = rtt_measured.get((tok, rtt), float(rtt))
    series.append((f"pool ÷ {rt:.0f} µs", [(p, p / (rt / 1e6)) for p, _ in pts], True))
if chart(f"{a.outdir}/far-token.svg", "Encrypt c=64 with a far token, by session pool size",
         "hsm.session_pool_size", "requests/s (log)", series):
    plots.append(("Throughput by session pool size and round trip", "far-token.svg"))

if os.path.exists(f"{a.outdir}/flamegraph.svg"):
    plots.append(("Flame graph of the server, Encrypt 64 B at c=64", "flamegraph.svg"))

print()
if far_lines:
    print("### A far token (every PKCS#11 call delayed by one round trip; `inline_calls = false`)")
    print()
    print("\n".join(far_lines))
    print()
if stage_lines:
    print("### Where a request's time goes (Encrypt 64 B, audit on; the server's `kms_request_stage_duration_seconds`)")
    print()
    print("\n".join(stage_lines))
    print()
if node_lines:
    print("### Several nodes on one Postgres and one token (64 connections in all, spread evenly)")
    print()
    print("\n".join(node_lines))
    print()
print("### Targets (issue 22)")
print()
print("| Target | Measured | Verdict |")
print("|---|---|---|")
for name, measured, verdict in targets:
    print(f"| {name} | {measured} | {verdict} |")
print()
for title, f in plots:
    print(f"![{title}]({f})")
    print()
print(f"Commit: {a.commit}. Machine: {a.machine}.  ")
print(f"Command: `{a.command}`")
