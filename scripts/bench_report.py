"""Renders the benchmark results (one `name<TAB>json` line each) as markdown:
a table per stage, each figure beside the ceiling measured in the same run,
the ratio, the target and whether it was met."""
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone


def command_output(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def rabbitmq_version():
    status = command_output(["rabbitmqctl", "status"])
    match = re.search(r"RabbitMQ version: (\S+)", status)
    if match:
        return match.group(1)
    version = command_output(["rabbitmqctl", "version"])
    return version.splitlines()[0] if version else "unknown"


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
    rustc = command_output(["rustc", "--version"])
    return (f"{cpu}, {os.cpu_count()} cores, {mem} memory, Linux {platform.release()}, "
            f"RabbitMQ {rabbitmq_version()}, {rustc}")


def fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float) and value < 100:
        return f"{value:,.1f}{unit}"
    return f"{value:,.0f}{unit}"


class Table:
    """One stage's table: figure, value, ceiling, ceiling value, ratio, target, verdict."""

    def __init__(self):
        self.rows = []

    def ratio(self, figure, value, ceiling_name, ceiling, target):
        """A figure judged by its ratio to a ceiling; target None = reported only."""
        if value is None or not ceiling:
            self.rows.append([figure, fmt(value), ceiling_name, fmt(ceiling), "–",
                              f"≥ {target:.0%}" if target else "reported", "not measured"])
            return
        ratio = value / ceiling
        if target is None:
            verdict, target_text = "–", "reported"
        else:
            verdict, target_text = ("met" if ratio >= target else "**missed**"), f"≥ {target:.0%}"
        self.rows.append([figure, fmt(value), ceiling_name, fmt(ceiling), f"{ratio:.1%}", target_text, verdict])

    def absolute(self, figure, value_text, target_text, met):
        """A figure judged on its own (latency, memory, time); met None = reported only."""
        verdict = "–" if met is None else ("met" if met else "**missed**")
        if value_text is None:
            value_text, verdict = "–", "not measured"
        self.rows.append([figure, value_text, "–", "–", "–", target_text, verdict])

    def render(self):
        lines = ["| figure | value | ceiling (same run) | ceiling value | ratio | target | verdict |",
                 "|---|---:|---|---:|---:|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


OTHER = "rest of the machine"


def ceiling_arithmetic(rounds):
    """What the CPU figures allow: with the cores saturated, rates go as the inverse of the CPU a message
    costs on the machine, so the ingest/raw ratio cannot exceed raw cost ÷ ingest cost."""
    if not rounds:
        return None
    cpu = rounds[len(rounds) // 2].get("cpu_us_per_message", {})

    def own(kind):
        return sum(v for k, v in cpu.get(kind, {}).items() if k not in ("machine_busy_percent", OTHER))

    raw, ingest, bare = own("raw"), own("ingest"), own("bare")
    if not raw or not ingest:
        return None
    raw_busy = cpu.get("raw", {}).get("machine_busy_percent")
    ingest_busy = cpu.get("ingest", {}).get("machine_busy_percent")
    text = (f"Ceiling arithmetic: on the shared cores a raw publish costs {raw:.0f} µs of CPU (broker and "
            f"publisher) and a callback {ingest:.0f} µs (broker, receiver and load generator), so at the same "
            f"machine utilisation the callback rate is {raw / ingest:.0%} of the raw rate.")
    if raw_busy and ingest_busy:
        text += (f" This round's callback phase kept the machine {ingest_busy}% busy against the raw phase's "
                 f"{raw_busy}% (both are bound by their clients each awaiting its answer, not by the cores), "
                 f"hence about {raw / ingest * ingest_busy / raw_busy:.0%}.")
    receiver = cpu.get("ingest", {}).get("receiver")
    others = ingest - receiver if receiver is not None else None
    if others is not None:
        allowed = raw / 0.8 - others
        text += (f" For 80% at the same utilisation a callback may cost {raw / 0.8:.0f} µs: after the broker's and "
                 f"the load generator's {others:.0f} µs that leaves {max(allowed, 0):.0f} µs for the receiver, "
                 f"which spent {receiver:.0f} µs.")
    if bare:
        text += (f" HTTP alone (bare server and load generator, at its own much higher rate, so at its cheapest) "
                 f"costs {bare:.0f} µs a request.")
    return text


def cpu_table(rounds, kinds):
    """CPU µs per message by process, per kind of phase (first round shown)."""
    if not rounds:
        return None
    cpu = rounds[len(rounds) // 2].get("cpu_us_per_message", {})
    names = []
    for kind in kinds:
        for name in cpu.get(kind, {}):
            if name not in ("machine_busy_percent", OTHER) and name not in names:
                names.append(name)
    names.append(OTHER)
    lines = ["| phase | " + " | ".join(names).replace(OTHER, "other processes") + " | total | machine busy |",
             "|---|" + "---:|" * (len(names) + 2)]
    for kind, label in kinds.items():
        row = cpu.get(kind, {})
        total = sum(v for k, v in row.items() if k != "machine_busy_percent")
        cells = [fmt(row.get(n)) for n in names]
        busy = row.get("machine_busy_percent")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {fmt(total)} | {fmt(busy, ' %')} |")
    return "\n".join(lines)


def attack_section(attack):
    """The door under attack (issue 17): the same figures with and without the attacks, same run."""
    out = []
    say = out.append
    say("## Under attack (issue 17)")
    say("")
    if not attack or "error" in attack:
        say("Not measured (`bench_attack` did not run).")
        return out
    secs = attack.get("seconds_per_phase", "?")
    rates = attack.get("attack_rates_per_sec", {})
    say(f"`paysettle receive` (release build, RabbitMQ backend, the product's default door limits; the load "
        f"generator's one address may hold 256 connections, as a proxy would) in its own process; "
        f"`paysettle-loadgen` sending genuine signed PaySys and Plutu callbacks over {attack.get('connections', '?')} "
        f"keep-alive connections; `bench_attack` attacking from other loopback addresses for the whole phase with "
        f"the attacks of `tests/hostile/load.rs`: 300 idle HTTP/2 connections and 200 stalled 64 KiB bodies held "
        f"(what the server closes is reopened, at most {fmt(rates.get('reopened_per_holding_attack'))}/s each), "
        f"wrong PaySys credentials with 64 KiB declared at {fmt(rates.get('wrong_credentials'))}/s and random "
        f"Portmanat hints from 200 addresses at {fmt(rates.get('hints'))}/s. Phases of {secs} s, calm first, then "
        f"under attack, in the same run; the p99 at half the calm rate, open loop. The attacker runs on the same "
        f"two cores as everything else, so its own CPU is part of what the genuine callbacks compete with.")
    quiet = attack.get("broker_before_start") or {}
    if quiet.get("measured", True) and "waited_s" in quiet:
        say("")
        say(f"Before the first phase the bench waited {quiet['waited_s']} s for the broker to be quiet (under a "
            f"tenth of a core; it was at {quiet.get('busy_percent')} % of one"
            + ("" if quiet.get("quiet") else ", so it was **not** quiet: the figures carry what it was still doing")
            + "): a broker still digesting what ran before would be counted against one phase and not the other.")
    say("")
    calm, under = attack.get("calm", {}), attack.get("attack", {})
    t = Table()
    t.ratio("genuine callbacks made durable/s under attack", under.get("callbacks_per_sec"),
            "the same without the attacks", calm.get("callbacks_per_sec"), 0.8)
    p99 = attack.get("p99_ms", {})
    a99, c99 = p99.get("attack"), p99.get("calm")
    half = under.get("half_rate", {})
    t.absolute(f"p99 latency of genuine callbacks under attack at {fmt(half.get('offered_per_sec'))}/s offered "
               f"({half.get('failed', '?')} failed); without the attacks: {fmt(c99)} ms",
               None if a99 is None else f"{a99:.1f} ms", "< 50 ms", None if a99 is None else a99 < 50)
    peak = attack.get("peak_rss_mib")
    ratio = attack.get("peak_rss_vs_limit")
    t.absolute(f"peak RSS of `paysettle receive` over both phases (VmHWM); "
               f"{'' if ratio is None else f'{ratio:.0%} of '}the k8s limit of 64 MiB; "
               f"{calm.get('peak_rss_mib', '?')} MiB after the calm phases",
               None if peak is None else f"{peak} MiB", "< 64 MiB", None if peak is None else peak < 64)
    up, down = (under.get("readyz_up_down") or [None, None])[:2]
    t.absolute("`/readyz` probes answered 200 during the attack (every 250 ms)",
               None if up is None else f"{up} of {up + down}", "all", None if up is None else down == 0)
    say(t.render())
    say("")
    say("CPU time per genuine callback by process (µs; `/proc/<pid>/stat` over each measured window; the attacker's "
        "work is counted against the genuine callbacks too):")
    say("")
    names = ["broker", "receiver", "load generator", "attacker"]
    say("| phase | callbacks/s | " + " | ".join(names) + " | machine busy |")
    say("|---|---:|" + "---:|" * len(names) + "---:|")
    for label, phase in (("calm", calm), ("under attack", under)):
        cpu = phase.get("cpu_us_per_callback", {})
        cells = [fmt(cpu.get(n)) for n in names]
        busy = cpu.get("machine_busy_percent")
        say(f"| {label} | {fmt(phase.get('callbacks_per_sec'))} | " + " | ".join(cells)
            + f" | {'–' if busy is None else f'{busy} %'} |")
    calm_busy = calm.get("cpu_us_per_callback", {}).get("machine_busy_percent")
    if a99 is not None and a99 >= 50:
        say("")
        say("The p99 target is missed in this run; not profiled further. "
            + (f"The machine was already {calm_busy}% busy in the calm phase (other work on the shared cores), so "
               "what the attack adds (the receiver's and the attacker's CPU per callback, table above) lands on "
               "saturated cores and shows as queueing in the tail."
               if calm_busy is not None and calm_busy >= 95 else ""))
    attackers = under.get("attackers", {})
    if attackers:
        say("")
        say("What the attackers did during the attack phases: " + ", ".join(
            f"{k.replace('_', ' ')}: {v:,}" for k, v in attackers.items()) + ".")
    return out


LEDGER_WORKERS = "## Shared ledger: 1, 2, 3 workers (issue 20)"
CPU_ROLES = ["bench (ledger and client)", "postgres backends (this database)",
             "postgres server (wal writer, checkpointer, ...)", "rest of the machine"]


def ledger_workers_section(lw):
    """The shared ledger with 1, 2 and 3 workers on PostgreSQL beside raw inserts, and SQLite beside it."""
    out = []
    say = out.append
    say(LEDGER_WORKERS)
    say("")
    if not lw or "error" in lw:
        say("Not measured (`bench_ledger_workers` did not run).")
        return out
    pg, lite = lw.get("postgres", {}), lw.get("sqlite", {})
    n, checks_n = lw.get("observations"), lw.get("check_payments")
    say(f"`bench_ledger_workers` (release build). **Applies**: each worker is a ledger handle of its own (its own "
        f"pool on PostgreSQL, its own writer thread on SQLite), as separate processes would have; together they "
        f"apply {fmt(n)} observations, each a new payment that succeeds, in batches of {lw.get('batch', '?')} "
        f"(`apply_batch`), all at once, into a fresh database. **Checks**: a fresh ledger pre-filled with "
        f"{fmt(checks_n)} due payments; each worker loops `claim_due_checks` (owner of its own, claims of "
        f"{lw.get('claim_limit', '?')}, a {lw.get('lease_s', '?')} s lease) and records each claimed check in turn, "
        "alternately `record_check` with a next time and `apply_check` with a final answer, until nothing is due; "
        "a check is one claim and its record. **Raw**: the rows one applied observation writes (payment, history "
        "with its raw payload, outbox event) inserted in the same batches into the ledger's own schema, no reads, "
        "no locks, no dedupe, no decision: the storage's limit for the same data, on the same server (PostgreSQL, "
        "planned as the ledger plans) or in a file opened with the ledger's own pragmas (SQLite: WAL, "
        "synchronous=FULL, foreign keys).")
    say("")
    raw = pg.get("raw_batched_inserts", {}).get("per_s")
    t = Table()
    applies = pg.get("applies", [])
    for row in applies:
        w = row.get("workers")
        t.ratio(f"PostgreSQL: applies/s with {w} worker{'s' if w != 1 else ''}", row.get("per_s"),
                "raw batched inserts/s of the same rows into the same PostgreSQL", raw, 0.5 if w == 3 else None)
    for row in pg.get("checks", []):
        w = row.get("workers")
        doubled = (row.get("held_by_two_workers_at_once") or 0) + (row.get("claimed_more_than_once") or 0)
        t.absolute(f"PostgreSQL: checks/s with {w} worker{'s' if w != 1 else ''} ({fmt(row.get('checked'))} checked, "
                   f"{row.get('still_due_after')} left due; payments held by two workers at once: "
                   f"{row.get('held_by_two_workers_at_once')}, claimed twice: {row.get('claimed_more_than_once')})",
                   fmt(row.get("checks_per_s")), "no payment held by two workers: 0", doubled == 0)
    lraw = lite.get("raw_batched_inserts", {}).get("per_s")
    la = lite.get("applies", {})
    t.ratio("SQLite: applies/s with 1 worker", la.get("per_s"),
            "raw batched inserts/s of the same rows into an SQLite file, the ledger's pragmas", lraw, None)
    lc = lite.get("checks", {})
    if lc:
        doubled = (lc.get("held_by_two_workers_at_once") or 0) + (lc.get("claimed_more_than_once") or 0)
        t.absolute(f"SQLite: checks/s with 1 worker ({fmt(lc.get('checked'))} checked, {lc.get('still_due_after')} "
                   f"left due; claimed twice: {lc.get('claimed_more_than_once')})", fmt(lc.get("checks_per_s")),
                   "no payment held by two workers: 0", doubled == 0)
    t.absolute("SQLite: applies/s and checks/s with 2 and 3 workers", "not applicable", "–", None)
    say(t.render())
    say("")
    say("SQLite with 2 and 3 workers is " + lite.get("workers_2_and_3", "not applicable") + ".")
    # CPU per unit of work, against the raw inserts' cost.
    phases = [("PostgreSQL raw batched inserts", pg.get("raw_batched_inserts", {}), "cpu_us_per_unit")]
    phases += [(f"PostgreSQL applies, {r.get('workers')} worker{'s' if r.get('workers') != 1 else ''}", r,
                "cpu_us_per_unit") for r in applies]
    phases += [(f"PostgreSQL checks, {r.get('workers')} worker{'s' if r.get('workers') != 1 else ''}", r,
                "cpu_us_per_check") for r in pg.get("checks", [])]
    phases += [("SQLite raw batched inserts", lite.get("raw_batched_inserts", {}), "cpu_us_per_unit"),
               ("SQLite applies, 1 worker", la, "cpu_us_per_unit"), ("SQLite checks, 1 worker", lc, "cpu_us_per_check")]
    raw_cost = {"PostgreSQL": pg.get("raw_batched_inserts", {}).get("cpu_us_per_unit", {}).get("total_measured"),
                "SQLite": lite.get("raw_batched_inserts", {}).get("cpu_us_per_unit", {}).get("total_measured")}
    say("")
    say("CPU time per observation (applies, raw) or per check, by process (µs; `/proc/<pid>/stat` over each "
        "measured window; the backends are those serving the round's own database; \"rest of the machine\" is "
        "the machine's other busy time, work that is not this benchmark's). \"Raw ÷ this\" is what the raw "
        "inserts' CPU per row is of this phase's CPU per observation: on saturated cores, the share of the raw "
        "rate this phase's CPU allows.")
    say("")
    names = ["bench process", "postgres backends", "postgres server", "rest of the machine"]
    say("| phase | per s | " + " | ".join(names) + " | measured total | raw ÷ this | machine busy |")
    say("|---|---:|" + "---:|" * (len(names) + 3))
    for label, row, key in phases:
        cpu = row.get(key, {})
        total = cpu.get("total_measured")
        backend = label.split()[0]
        base = raw_cost.get(backend)
        share = f"{base / total:.0%}" if base and total and "checks" not in label else "–"
        rate = row.get("per_s", row.get("checks_per_s"))
        busy = cpu.get("machine_busy_percent")
        cells = [fmt(cpu.get(n)) for n in CPU_ROLES]
        say(f"| {label} | {fmt(rate)} | " + " | ".join(cells) + f" | {fmt(total)} | {share} | "
            + ("–" if busy is None else f"{busy} %") + " |")
    ratio3 = pg.get("ratio_3_workers_to_raw")
    if ratio3 is not None:
        say("")
        say(f"3 workers reach {ratio3:.0%} of the raw inserts on the same PostgreSQL (target ≥ 50%). Load average "
            f"before / after the run: {lw.get('load_before', '?')} / {lw.get('load_after', '?')} (the machine is "
            "shared; the \"rest of the machine\" column says how much other work ran in each window).")
    return out


def replace_section(path, section, heading="## Under attack (issue 17)", before="## Raw results"):
    """Replaces one section of an existing report (a run of that section alone)."""
    with open(path) as f:
        text = f.read()
    start = text.find(heading)
    body = "\n".join(section) + "\n\n"
    if start < 0:
        anchor = text.find(before)
        anchor = len(text) if anchor < 0 else anchor
        text = text[:anchor] + body + text[anchor:]
    else:
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end + 1
        text = text[:start] + body + text[end:]
    with open(path, "w") as f:
        f.write(text)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "attack-section":
        # scripts/bench.sh attack: the section alone, into the report named third.
        with open(path) as f:
            line = f.readline()
        name, _, payload = line.rstrip("\n").partition("\t")
        try:
            attack = json.loads(payload)
        except json.JSONDecodeError:
            attack = {"error": payload}
        section = attack_section(attack)
        section += ["", f"Measured alone (`make bench-attack`) on "
                    f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, machine: {machine()}; "
                    f"the rest of this file is from the run named at its top. Raw result:", "",
                    "```json", json.dumps({"attack": attack}), "```"]
        replace_section(sys.argv[3], section)
        return
    if mode == "ledger-workers-section":
        # scripts/bench.sh ledger-workers: the section alone, into the report named third.
        with open(path) as f:
            line = f.readline()
        name, _, payload = line.rstrip("\n").partition("\t")
        try:
            lw = json.loads(payload)
        except json.JSONDecodeError:
            lw = {"error": payload}
        section = ledger_workers_section(lw)
        section += ["", f"Measured alone (`bash scripts/bench.sh ledger-workers`) on "
                    f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, machine: {machine()}; "
                    f"the rest of this file is from the run named at its top. Raw result:", "",
                    "```json", json.dumps({"ledger_workers": lw}), "```"]
        replace_section(sys.argv[3], section, LEDGER_WORKERS, "## Apply")
        return
    results = {}
    with open(path) as f:
        for line in f:
            name, _, payload = line.rstrip("\n").partition("\t")
            try:
                results[name] = json.loads(payload)
            except json.JSONDecodeError:
                results[name] = {"error": payload}

    ledger = results.get("ledger", {})
    publish = results.get("publish", {})
    ingest = results.get("ingest", {})
    relay = results.get("relay", {})
    reconcile = results.get("reconcile", {})
    checks = results.get("sim_checks", {})
    meta = results.get("meta", {})
    out = []
    say = out.append

    say("# Benchmarks")
    say("")
    say(f"Written by `make bench{'-quick' if mode == 'quick' else ''}` on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f" in {meta['seconds']} s" if "seconds" in meta else "") + ".")
    say("")
    say(f"Machine: {machine()}.")
    say("")
    say("Every figure stands beside the ceiling it is compared with, measured in the same run on the same "
        "machine; the ratio is what the target applies to. No benchmark is a test, and no test asserts a "
        "timing. Everything shares the machine's cores: the broker, the process measured and the load "
        "generator (and, on a shared machine, whatever else runs; the CPU tables below say how much that was).")
    say("")
    say("Where a target is missed, the section says what bounds it; `docs/profiles.md` has the profiles "
        "(perf) behind those explanations and how they were taken.")
    if mode == "quick":
        say("")
        say("*A quick run: short phases, one round. `make bench` gives the figures to quote.*")

    # --- ingest -----------------------------------------------------------------
    say("")
    say("## Ingest (issue #6)")
    say("")
    conns = ingest.get("connections", "?")
    say(f"`paysettle receive` (release build, RabbitMQ backend, JSON access log at info as deployed, output to "
        f"/dev/null) in its own process; `paysettle-loadgen` in another, sending genuine signed callbacks of "
        f"PaySys, Plutu and Portmanat in turn over {conns} keep-alive connections. A callback counts once "
        f"answered 200/303, which the receiver does only after the broker's confirm. Medians of "
        f"{ingest.get('rounds', '?')} rounds of {ingest.get('seconds_per_phase', '?')} s, the phases alternating."
        + (" Receiver on CPU 1, load generator on CPU 0 (`taskset`)." if ingest.get("pinned") else ""))
    say("")
    t = Table()
    rate = ingest.get("callbacks_durable_per_sec")
    t.ratio(f"authenticated callbacks made durable/s", rate,
            f"raw pipelined confirmed publishes/s (lapin, {conns} publishers each awaiting its confirm, "
            f"quorum queue, {ingest.get('message_bytes', '?')}-byte messages)",
            ingest.get("raw_publishes_per_sec"), 0.8)
    t.ratio("authenticated callbacks made durable/s", rate,
            "bare hyper server that only reads the body, same load generator", ingest.get("bare_http_per_sec"), None)
    half = ingest.get("half_rate", {})
    p99 = half.get("p99_ms_median")
    if p99 is not None:
        each = half.get("each_round", [])
        failed = half.get("failed", 0) or 0
        p99s = ", ".join(str(r.get("latency_ms", {}).get("p99")) for r in each)
        raw_p99s = ", ".join(str(r.get("raw_publish_latency_ms", {}).get("p99")) for r in each)
        t.absolute(f"p50 / p99 latency at half the max rate ({fmt(half.get('offered_per_sec'))}/s offered, open loop, "
                   f"{failed} failed), median of {len(each)} rounds of {ingest.get('seconds_per_phase', '?')} s; "
                   f"p99 of each round: {p99s} ms; raw publishes at the same rate, p99 of each round: {raw_p99s} ms",
                   f"{half.get('p50_ms_median')} / {p99} ms", "p99 < 10 ms", p99 < 10 and failed == 0)
    else:
        t.absolute("p50 / p99 latency at half the max rate", None, "p99 < 10 ms", None)
    say(t.render())
    table = cpu_table(ingest.get("each_round", []),
                      {"raw": "raw publishes", "ingest": "callbacks through the receiver", "bare": "bare HTTP"})
    if table:
        say("")
        say("CPU time per message by process (µs, the middle round; `/proc/<pid>/stat` over each measured "
            "window; the load generator and raw publisher report their own; \"other processes\" is the rest "
            "of the machine's busy time, work that is not part of the benchmark):")
        say("")
        say(table)
        bound = ceiling_arithmetic(ingest.get("each_round", []))
        if bound:
            say("")
            say(bound)

    # --- ledger -----------------------------------------------------------------
    say("")
    say("## Ledger (issue #3)")
    say("")
    say(f"`bench_ledger`: {fmt(ledger.get('observations'))} observations, each a new payment that succeeds "
        "(a payment row, a history row with its redacted raw payload, an outbox event), into a fresh ledger; "
        "the raw figures insert into fresh files on the same disk with the same journal mode and "
        "synchronous=FULL.")
    say("")
    t = Table()
    t.ratio(f"ledger batched applies/s (`apply_batch`, batches of {ledger.get('batch', '?')}: dedupe, state "
            "machine, history, outbox, schedule)", ledger.get("ledger_batched_applies_per_s"),
            "raw batched inserts/s of the same rows into the ledger's own schema, no reads, no logic",
            ledger.get("raw_same_rows_batched_per_s"), 0.5)
    t.ratio("ledger batched applies/s", ledger.get("ledger_batched_applies_per_s"),
            "raw batched single-row inserts/s into a one-table schema (the floor of SQLite itself)",
            ledger.get("raw_batched_inserts_per_s"), None)
    t.ratio("ledger single-observation commits/s (`apply`, one transaction and fsync each)",
            ledger.get("ledger_single_applies_per_s"), "raw single-row inserts/s, one commit each",
            ledger.get("raw_single_inserts_per_s"), None)
    say(t.render())

    # --- shared ledger -----------------------------------------------------------
    say("")
    for line in ledger_workers_section(results.get("ledger_workers")):
        say(line)

    # --- apply ------------------------------------------------------------------
    say("")
    say("## Apply")
    say("")
    t = Table()
    worker = results.get("worker", {})
    apply = worker.get("apply", {})
    t.ratio("callbacks applied to the ledger/s end to end (embedded queue → applier → ledger commit → ack, "
            f"batches of {apply.get('batch_size', '?')})", apply.get("applied_per_sec"),
            "raw batched SQLite inserts/s of the rows an apply writes (payment, history, outbox; batches of "
            f"{ledger.get('batch', '?')}, same disk and synchronous=FULL)",
            ledger.get("raw_same_rows_batched_per_s"), 0.5)
    t.ratio("ledger batched applies/s alone (no queue)", ledger.get("ledger_batched_applies_per_s"),
            "the same raw batched inserts of the same rows", ledger.get("raw_same_rows_batched_per_s"), None)
    t.ratio("callbacks applied/s end to end", apply.get("applied_per_sec"),
            "raw batched single-row inserts/s into a one-table schema (the floor of SQLite itself)",
            ledger.get("raw_batched_inserts_per_s"), None)
    say(t.render())
    cpu = apply.get("cpu_us_per_message")
    rate = apply.get("applied_per_sec")
    raw_rows = ledger.get("raw_same_rows_batched_per_s")
    if cpu and rate and raw_rows:
        cores = apply.get("cores", 2)
        say("")
        alone = ledger.get("ledger_batched_applies_per_s")
        busy = apply.get("cpu_busy_percent")
        say(f"What bounds it: the ledger's one writer, sharing the cores. The stages overlap (the next batch is "
            "taken and the last one acknowledged while a batch commits), so a batch takes as long as its "
            "commit. Alone, the ledger commits "
            + (f"{fmt(alone)} observations/s ({alone / raw_rows:.0%} of the raw rate, table above); " if alone else "")
            + "end to end its writer shares the two cores with the embedded queue's writer, which writes every "
            "message twice more (lease, acknowledgement) with its own fsyncs, and with the applier decoding and "
            f"redacting each message. The process spent {cpu} µs of CPU per message and used {busy}% of a core "
            f"on average, of the {cores * 100}% there is (`/proc/self/stat`): the commits' fsyncs and the "
            f"hand-offs between the three threads leave the rest idle. `docs/profiles.md` has the profile.")

    # --- relay ------------------------------------------------------------------
    say("")
    say("## Relay")
    say("")
    t = Table()
    t.ratio(f"settled events published/s (outbox read → confirmed publish → marked sent, batches of "
            f"{relay.get('batch', '?')}, {fmt(relay.get('events'))} events)", relay.get("relay_events_per_sec"),
            "confirmed publishes/s of the same events to the same exchange and quorum queue, as many in flight, "
            "no ledger", relay.get("raw_confirmed_publishes_per_sec"), 0.8)
    t.ratio("confirmed publishes/s through paysettle-queue (supporting)", publish.get("queue_rate"),
            f"raw lapin pipelined confirmed publishes/s, one publisher, {publish.get('concurrency', '?')} in flight, "
            "quorum queue", publish.get("raw_rate"), None)
    say(t.render())

    # --- poll -------------------------------------------------------------------
    say("")
    say("## Poll")
    say("")
    t = Table()
    served = []
    for name in ("worker", "worker_20ms"):
        poll = results.get(name, {}).get("poll", {})
        t.ratio(f"status checks/s against the simulator at {poll.get('latency_ms', '?')} ms latency, "
                f"concurrency {poll.get('concurrency', '?')}", poll.get("checks_per_sec"),
                "concurrency ÷ latency", poll.get("bound_per_sec"), 0.9)
        if poll.get("served_latency_ms") is not None:
            served.append(poll)
            t.ratio(f"the same checks/s", poll.get("checks_per_sec"),
                    f"concurrency ÷ the latency the simulator really served ({poll['served_latency_ms']} ms, "
                    "its own measurement)", poll.get("bound_at_served_latency_per_sec"), None)
    sim_rate = checks.get("checks_per_sec")
    t.absolute(f"the simulator alone: status checks/s, no added latency, {checks.get('connections', '?')} "
               "connections (supporting)", fmt(sim_rate), "≥ 5,000", None if sim_rate is None else sim_rate >= 5000)
    say(t.render())
    if served:
        late = ", ".join(f"{p['served_latency_ms'] - p['latency_ms']:.2f} ms at {p['latency_ms']} ms" for p in served)
        say("")
        say("What bounds it: the simulator's timer. It answers after `tokio::time::sleep(latency)`, which is "
            "never early and, rounding up to the next millisecond tick, late on average by " + late + " "
            "(the simulator sums the real time of every wait); the shorter the latency, the larger that "
            "late millisecond's share. Against the latency really served the poller reaches "
            + ", ".join(f"{p['ratio_at_served_latency']:.1%} at {p['latency_ms']} ms" for p in served)
            + "; the rest is each check's own HTTP round trip and parsing, which run inside the provider's "
            "concurrency slot. The verdict stays against the set latency, as the target is written.")

    # --- reconcile --------------------------------------------------------------
    say("")
    say("## Reconcile")
    say("")
    t = Table()
    rate = reconcile.get("per_sec", reconcile.get("payments_per_sec"))
    if rate is not None:
        t.ratio(f"payments reconciled/s: `paysettle reconcile` over {fmt(reconcile.get('payments'))} payments "
                f"against the simulator at {reconcile.get('latency_ms', '?')} ms latency, concurrency "
                f"{reconcile.get('concurrency', '?')}, start to exit", rate, "concurrency ÷ latency",
                reconcile.get("bound_per_sec"), 0.9)
        peak = reconcile.get("peak_rss_mb")
        if peak is not None:
            t.absolute("peak RSS of `paysettle reconcile` during that run", f"{peak} MB", "< 100 MB", peak < 100)
    else:
        t.ratio("payments reconciled/s (100,000 payments) — `bench_reconcile` did not run", None,
                "concurrency ÷ latency", None, 0.9)
    say(t.render())

    # --- under attack -------------------------------------------------------------
    say("")
    for line in attack_section(results.get("attack")):
        say(line)

    # --- resources --------------------------------------------------------------
    say("")
    say("## Resources")
    say("")
    t = Table()
    rss = ingest.get("receiver_rss_mb", {})
    peak = rss.get("peak")
    t.absolute("peak RSS of `paysettle receive` under full ingest load (VmHWM after every phase)",
               None if peak is None else f"{peak} MB", "< 50 MB", None if peak is None else peak < 50)
    idle = rss.get("idle_after_5s")
    t.absolute("idle RSS of `paysettle receive` (RabbitMQ backend), 5 s after ready",
               None if idle is None else f"{idle} MB", "reported", None)
    startup = ingest.get("startup_to_ready_ms", {})
    median = startup.get("median")
    each = startup.get("each", [])
    t.absolute(f"start-up to ready: spawn → `/readyz` 200, embedded queue, fresh directory "
               f"(median of {len(each)}: {', '.join(str(x) for x in each)} ms)",
               None if median is None else f"{median} ms", "< 200 ms", None if median is None else median < 200)
    size = ingest.get("binary_bytes")
    t.absolute("release binary `target/release/paysettle` (thin LTO, debuginfo stripped)",
               None if size is None else f"{size / 1024 / 1024:.1f} MB", "reported", None)
    say(t.render())

    errors = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    if errors:
        say("")
        say("Benchmarks that failed to run: " + ", ".join(f"`{k}`" for k in errors) + ".")
    say("")
    say("## Raw results")
    say("")
    say("```json")
    for name, value in results.items():
        say(json.dumps({name: value}))
    say("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
