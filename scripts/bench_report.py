#!/usr/bin/env python3
"""The performance harness's report (used by scripts/bench.sh).

  bench_report.py machine DIR COMMIT   record the machine and the commit in DIR/machine.json
  bench_report.py summary DIR          read the benchmarks' JSON in DIR, print the four tables
                                       and the goals of docs/design.md §9, write summary.json
  bench_report.py compare A B          compare two runs' key figures (B against A)

Exit codes: 0 done, 1 a benchmark's results are missing or unreadable, 2 bad usage.
"""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine(out: Path, commit: str):
    cpu = next((l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines()
                if l.startswith("Model name")), platform.processor())
    mem_kb = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                   if l.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    m = {
        "commit": commit,
        "date_utc": sh("date", "-u", "+%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(),
        "rustc": sh("rustc", "-V"),
    }
    (out / "machine.json").write_text(json.dumps(m, indent=2))
    print(f"machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
          f"{m['rustc']}; commit {commit}")


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"bench_report: cannot read {path}: {e}", file=sys.stderr)
        return None


def criterion(dirpath: Path):
    """Criterion's estimates under DIR/criterion: {full_id: (median_ns, low_ns, high_ns)}."""
    out = {}
    for bj in sorted((dirpath / "criterion").glob("*/new/benchmark.json")):
        b, e = load(bj), load(bj.parent / "estimates.json")
        if b and e:
            med = e["median"]
            ci = med["confidence_interval"]
            out[b["full_id"]] = (med["point_estimate"], ci["lower_bound"], ci["upper_bound"])
    return out


def us(v):
    return "—" if v is None else (f"{v:,.0f} µs" if v >= 100 else f"{v:,.1f} µs")


def ms(v_us):
    return "—" if v_us is None else f"{v_us / 1000:,.1f} ms"


def table(title, head, rows):
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def summary(d: Path):
    m = load(d / "machine.json") or {}
    eo, ks, cc = (load(d / f) if (d / f).exists() else None
                  for f in ("edge_overhead.json", "kill_switch.json", "core_cluster.json"))
    crit = criterion(d)
    figures, goals = {}, []

    def goal(name, value, limit, lower_is_better=True):
        if value is None:
            return
        ok = value <= limit if lower_is_better else value >= limit
        goals.append({"goal": name, "value": value, "limit": limit, "met": ok})

    print(f"\nmachine: {m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB; "
          f"commit {m.get('commit')}; {m.get('date_utc')}")
    if eo:
        rows = []
        for t in eo["targets"]:
            u, h = t["unloaded"], t["half_load"]
            direct = t["target"] == "direct"
            rows.append([
                t["target"], f"{us(u['p50_us'])} / {us(u['p99_us'])}",
                f"{t['max_rps']:,.0f}" + ("" if direct else f" ({t['ratio_max_rps']:.2f}×)"),
                f"{us(h['p50_us'])} / {us(h['p99_us'])} / {us(h['p999_us'])}",
                "—" if direct else f"+{us(t['added_half_load_p50_us'])} / +{us(t['added_half_load_p99_us'])}",
                "—" if t.get("edge_cpu_us_per_call") is None else us(t["edge_cpu_us_per_call"]),
                t["max_errors"] + t["half_load_errors"],
            ])
            key = t["target"].replace(", ", "_").replace(",", "").replace(" ", "_")
            figures[f"edge_overhead.{key}.max_rps"] = (t["max_rps"], "higher")
            figures[f"edge_overhead.{key}.half_load_p50_us"] = (h["p50_us"], "lower")
            figures[f"edge_overhead.{key}.half_load_p99_us"] = (h["p99_us"], "lower")
            figures[f"edge_overhead.{key}.half_load_p999_us"] = (h["p999_us"], "lower")
            if not direct:
                goal(f"{t['target']}: added p50 at half load (µs)", t["added_half_load_p50_us"], 100)
                goal(f"{t['target']}: added p99 at half load (µs)", t["added_half_load_p99_us"], 1000)
                goal(f"{t['target']}: throughput vs direct (×)", t["ratio_max_rps"], 0.5, False)
                if t.get("edge_cpu_us_per_call") is not None:
                    figures[f"edge_overhead.{key}.cpu_us_per_call"] = (t["edge_cpu_us_per_call"], "lower")
                    goal(f"{t['target']}: edge CPU per call (µs)", t["edge_cpu_us_per_call"], 30)
        table(f"1. Edge overhead ({eo['placement']}; open loop at {eo['half_load_rps']:,.0f} req/s "
              "= half the 20-policy edge's max)",
              ["target", "unloaded p50 / p99", "max req/s (vs direct)",
               "open loop p50 / p99 / p99.9", "added p50 / p99", "edge CPU/call", "errors"], rows)
        by_name = {t["target"]: t for t in eo["targets"]}
        for tr in eo.get("tracing", []):
            pct_ = f"{tr['sample_ratio'] * 100:.0f}%"
            t = by_name.get(f"edge, 20 policies, traced {pct_}")
            if not t:
                continue
            cpu = t.get("added_cpu_us_per_call_vs_untraced")
            print(f"tracing at {pct_}: max req/s {t['ratio_max_rps_vs_untraced']:.2f}× the untraced edge's, "
                  f"edge CPU {'?' if cpu is None else f'{cpu:+.1f} µs'}/call; "
                  f"{tr['spans_exported']:,.0f} spans exported, {tr['spans_dropped']:,.0f} dropped, "
                  f"{tr['spans_failed']:,.0f} failed ({tr['calls']:,} calls)")
            figures[f"edge_overhead.tracing_{pct_[:-1]}pct.ratio_max_rps_vs_untraced"] = (
                t["ratio_max_rps_vs_untraced"], "higher")
        rss = eo.get("edge_peak_rss_bytes")
        print(f"audit: {eo['audit_records_acked']:,.0f} decisions acknowledged by the core, none "
              f"pending; edge peak RSS {0 if rss is None else rss / 1048576:.1f} MiB")
        if rss is not None:
            figures["edge_overhead.peak_rss_mib"] = (rss / 1048576, "lower")
            goal("edge peak RSS (MiB)", rss / 1048576, 20)
    if ks:
        rows = []
        for s in ks["scenarios"]:
            n = s["edges"]
            for label, k, before, admin, rounds in (
                    ("all nodes up", "enforced_after_reply", "enforced_before_reply", "admin_call", "rounds"),
                    ("leader killed", "leader_killed_enforced_after_reply",
                     "leader_killed_enforced_before_reply", "leader_killed_admin_call", "leader_killed_rounds")):
                v = s[k]
                rows.append([f"{n} edges, {label}", s[rounds], ms(v["p50_us"]), ms(v["p99_us"]),
                             ms(v["max_us"]), s[before], ms(s[admin]["p50_us"])])
                tag = "leader_killed" if label == "leader killed" else "steady"
                figures[f"kill_switch.{n}_edges.{tag}.p99_us"] = (v["p99_us"], "lower")
                figures[f"kill_switch.{n}_edges.{tag}.max_us"] = (v["max_us"], "lower")
            if n == 10:
                goal("kill switch to 10 edges: p99 (ms)", s["enforced_after_reply"]["p99_us"] / 1000, 50)
        table("2. Kill-switch propagation (admin call returned → each edge enforcing)",
              ["edges", "rounds", "p50", "p99", "max", "enforced before the reply",
               "admin call p50 (leader killed: from the kill)"], rows)
    if cc:
        a = cc["audit_batch_ack"]
        table("3. Audit ingest (3-node core: replicated, hash-chained, indexed)",
              ["records/s", "batch ack p50", "batch ack p99", "kill-switch commit p50 / p99 (leader)",
               "(via follower)"],
              [[f"{cc['audit_records_per_sec']:,.0f}", ms(a["p50_us"]), ms(a["p99_us"]),
                f"{ms(cc['kill_switch_commit_via_leader']['p50_us'])} / {ms(cc['kill_switch_commit_via_leader']['p99_us'])}",
                f"{ms(cc['kill_switch_commit_via_follower']['p50_us'])} / {ms(cc['kill_switch_commit_via_follower']['p99_us'])}"]])
        figures["core.audit_records_per_sec"] = (cc["audit_records_per_sec"], "higher")
        figures["core.audit_ack_p99_us"] = (a["p99_us"], "lower")
        goal("audit ingest (records/s)", cc["audit_records_per_sec"], 50_000, False)
    if crit:
        rows = []
        for fid, (med, lo, hi) in sorted(crit.items()):
            rows.append([fid, us(med / 1000), f"{us(lo / 1000)} – {us(hi / 1000)}"])
            figures[f"decision_path.{fid}.median_us"] = (med / 1000, "lower")
        table("4. Decision path (criterion, in-process, per call)", ["benchmark", "median", "95 % CI"], rows)
    if goals:
        table("Goals (design.md §9)", ["goal", "measured", "limit", ""],
              [[g["goal"], f"{g['value']:,.2f}", f"{g['limit']:,}", "met" if g["met"] else "MISSED"]
               for g in goals])
    missing = [n for n, v in (("edge_overhead", eo), ("kill_switch", ks), ("core_cluster", cc),
                              ("decision_path", crit)) if not v]
    s = {"machine": m, "edge_overhead": eo, "kill_switch": ks, "core_cluster": cc,
         "decision_path": {k: {"median_ns": v[0], "ci_ns": [v[1], v[2]]} for k, v in crit.items()},
         "goals": goals, "figures": {k: {"value": v, "better": b} for k, (v, b) in figures.items()},
         "missing": missing}
    (d / "summary.json").write_text(json.dumps(s, indent=2))
    print(f"\nwrote {d / 'summary.json'}" + (f" (not run: {', '.join(missing)})" if missing else ""))
    return 0


def compare(a: str, b: str):
    def open_summary(p):
        p = Path(p)
        return load(p / "summary.json" if p.is_dir() else p)
    sa, sb = open_summary(a), open_summary(b)
    if not sa or not sb:
        return 1
    fa, fb = sa["figures"], sb["figures"]
    rows = []
    for k in sorted(set(fa) | set(fb)):
        va, vb = fa.get(k, {}).get("value"), fb.get(k, {}).get("value")
        better = (fa.get(k) or fb.get(k))["better"]
        if va is None or vb is None or va == 0:
            rows.append([k, va, vb, "—", ""])
            continue
        r = vb / va
        worse = r > 1.1 if better == "lower" else r < 1 / 1.1
        improved = r < 1 / 1.1 if better == "lower" else r > 1.1
        rows.append([k, f"{va:,.1f}", f"{vb:,.1f}", f"{r:.2f}×",
                     "worse" if worse else ("better" if improved else "")])
    table(f"B ({sb['machine'].get('commit')}) against A ({sa['machine'].get('commit')}); "
          "changes within 10 % are not marked", ["figure", "A", "B", "B/A", ""], rows)
    if sa["machine"].get("cpu") != sb["machine"].get("cpu") or sa["machine"].get("cpus") != sb["machine"].get("cpus"):
        print("note: the two runs come from different machines; ratios mix code and hardware")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "machine":
        machine(Path(argv[2]), argv[3])
        return 0
    if len(argv) == 3 and argv[1] == "summary":
        return summary(Path(argv[2]))
    if len(argv) == 4 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
