"""Renders the benchmark results (one `name<TAB>json` line each) as markdown."""
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores, {mem} memory, Linux {platform.release()}, {rustc}"


def verdict(ratio, target):
    if ratio is None:
        return "not measured"
    return "met" if ratio >= target else "**missed**"


def main():
    path, mode = sys.argv[1], sys.argv[2]
    results = {}
    with open(path) as f:
        for line in f:
            name, _, payload = line.rstrip("\n").partition("\t")
            try:
                results[name] = json.loads(payload)
            except json.JSONDecodeError:
                results[name] = {"error": payload}

    rows = []

    def row(stage, figure, value, ceiling_name, ceiling, target):
        if value is None or ceiling in (None, 0):
            rows.append(f"| {stage} | {figure} | – | {ceiling_name} | – | – | {target:.0%} | not measured |")
            return
        ratio = value / ceiling
        rows.append(
            f"| {stage} | {figure} | {value:,.0f} | {ceiling_name} | {ceiling:,.0f} | {ratio:.1%} | ≥ {target:.0%} | {verdict(ratio, target)} |"
        )

    ledger = results.get("ledger", {})
    row("ledger", "batched applies/s", ledger.get("ledger_batched_applies_per_s"),
        "plain SQLite inserts/s of the same rows (payment, history, event)", ledger.get("raw_same_rows_batched_per_s"), 0.5)
    row("ledger", "batched applies/s", ledger.get("ledger_batched_applies_per_s"),
        "plain SQLite single-row inserts/s, batched", ledger.get("raw_batched_inserts_per_s"), 0.5)
    row("ledger", "single applies/s (one commit each)", ledger.get("ledger_single_applies_per_s"),
        "plain SQLite single-row commits/s", ledger.get("raw_single_inserts_per_s"), 0.5)
    publish = results.get("publish", {})
    row("queue", "confirmed publishes/s through paysettle-queue", publish.get("queue_rate"),
        "raw lapin pipelined confirmed publishes/s, same quorum queue type", publish.get("raw_rate"), 0.8)
    ingest = results.get("ingest", {})
    row("ingest", f"authenticated callbacks made durable/s ({ingest.get('backend', '?')}, {ingest.get('connections', '?')} connections)",
        ingest.get("callbacks_durable_per_sec"), "raw Queue::publish/s from as many tasks, no HTTP, same queue type",
        ingest.get("raw_publishes_per_sec"), 0.8)
    worker = results.get("worker", {})
    for name in ("worker", "worker_20ms"):
        poll = results.get(name, {}).get("poll", {})
        row("poll", f"status checks/s against the simulator at {poll.get('latency_ms', '?')} ms latency, concurrency {poll.get('concurrency', '?')}",
            poll.get("checks_per_sec"), "concurrency ÷ latency", poll.get("bound_per_sec"), 0.9)
    apply = worker.get("apply", {})
    row("apply", "callbacks applied/s end to end (embedded queue → applier → ledger → ack)", apply.get("applied_per_sec"),
        "plain SQLite single-row inserts/s, batched (ledger bench)", ledger.get("raw_batched_inserts_per_s"), 0.5)
    reconcile = results.get("reconcile", {})
    row("reconcile", f"payments reconciled/s ({reconcile.get('payments', 0):,} payments, {reconcile.get('latency_ms', '?')} ms latency, "
        f"concurrency {reconcile.get('concurrency', '?')}; peak RSS {reconcile.get('peak_rss_mb', '?')} MB, target < 100 MB)",
        reconcile.get("per_sec"), "concurrency ÷ latency", reconcile.get("bound_per_sec"), 0.9)
    checks = results.get("sim_checks", {})
    sim_rate = checks.get("checks_per_sec")

    print("# Benchmarks")
    print()
    print(f"Written by `make bench{'-quick' if mode == 'quick' else ''}` on "
          f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.")
    print()
    print(f"Machine: {machine()}.")
    print()
    print("Every figure stands beside the ceiling it is compared with, measured in the same run on the same machine; "
          "the ratio is what the target applies to. No benchmark is a test.")
    print()
    print("| stage | figure | value | ceiling | ceiling value | ratio | target | verdict |")
    print("|---|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        print(r)
    if sim_rate is not None:
        verdict_sim = "met" if sim_rate >= 5000 else "**missed**"
        print(f"| simulator | status checks/s, zero added latency, {checks.get('connections')} connections | {sim_rate:,.0f} | "
              f"the target itself | 5,000 | {sim_rate / 5000:.1%} | ≥ 100% | {verdict_sim} |")
    latency = ingest.get("latency_ms_at_half_rate")
    rss = ingest.get("peak_rss_mb")
    if latency or rss:
        print()
        print("| stage | figure | value | target | verdict |")
        print("|---|---|---:|---:|---|")
        if latency:
            p99 = latency.get("p99")
            print(f"| ingest | p50 / p99 latency at half the max rate ({ingest.get('half_rate_target_per_sec', 0):,.0f}/s) | "
                  f"{latency.get('p50')} / {p99} ms | p99 < 10 ms | {'met' if p99 is not None and p99 < 10 else '**missed**'} |")
        if rss:
            print(f"| resources | peak RSS under full ingest load (receiver, queue client and load generator) | {rss} MB | < 50 MB | "
                  f"{'met' if rss < 50 else '**missed**'} |")
    print()
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    if errors:
        print("Benchmarks that failed to run: " + ", ".join(f"`{k}`" for k in errors) + ".")
        print()
    print("## Raw results")
    print()
    print("```json")
    for name, value in results.items():
        print(json.dumps({name: value}))
    print("```")


if __name__ == "__main__":
    main()
