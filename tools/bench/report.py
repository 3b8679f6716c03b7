#!/usr/bin/env python3
"""Turn run.sh's log into one markdown table: medians over rounds, urt's ratio
to each peer, and the performance targets marked met or missed.

The log holds every program's output, each under a "### round R NAME: CMD"
header. The new programs print "result <workload> <impl> <metric> <value>"
lines; the three older ones (urt-bench-sleepers, -yield, -offload) print
only for people, and are parsed here by their own formats.
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import sys
from collections import defaultdict

values = defaultdict(list)  # (workload, impl, metric) -> one value per round


def add(wl, impl, metric, v):
    values[(wl, impl, metric)].append(float(v))


# The older programs' lines.
SLEEPERS = re.compile(r"^(\d+) tasks x one 10 ms sleep: cold ([\d.]+) ms, warm ([\d.]+) ms; "
                      r"peak RSS (\d+) KiB \(([\d.]+) KiB per task")
OFF_W2 = re.compile(r"^run \d+ W2 (\S+)\s+(.+?)\s+spin (on|off)\s+p50\s+(\d+) p90\s+(\d+) "
                    r"p99\s+(\d+) ns")
OFF_W3 = re.compile(r"^run \d+ W3 (.+?)\s+spin (on|off)\s+(\d+) jobs/s")


def parse(path):
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("result "):
                _, wl, impl, metric, v = line.split()
                add(wl, impl, metric, v)
            elif m := SLEEPERS.match(line):
                wl = f"W1.{m[1]}"
                add(wl, "urt", "cold_ms", m[2])
                add(wl, "urt", "warm_ms", m[3])
                add(wl, "urt", "peak_rss_kib", m[4])
                add(wl, "urt", "kib_per_task", m[5])
            elif m := OFF_W2.match(line):
                place, variant, spin = m[1], m[2], m[3]
                if variant == "urt_to_thread":
                    impl = "urt"
                elif variant.startswith("raw MSG_RING"):
                    impl = "raw"
                elif variant == "raw eventfd":
                    impl = "raw-eventfd"
                else:
                    continue
                # Unpinned with urt's default spin is the workload as a
                # service runs it. On one CPU urt never spins (it sees the
                # worker could not run meanwhile), so that the floors there
                # are the ones without spinning too.
                if place == "unpinned" and spin == "on":
                    wl = "W2"
                elif place == "same-cpu" and spin == "off":
                    wl = "W2.1cpu"
                else:
                    continue
                for metric, v in zip(("p50_ns", "p90_ns", "p99_ns"), m.groups()[3:]):
                    add(wl, impl, metric, v)
            elif m := OFF_W3.match(line):
                variant, spin = m[1], m[2]
                impl = {("urt_to_thread", "on"): "urt",
                        ("urt_to_thread WORKER_RINGS", "on"): "urt-worker-rings",
                        ("raw MSG_RING ring-less", "on"): "raw-ringless",
                        ("raw MSG_RING worker rings", "on"): "raw-worker-rings",
                        ("raw MSG_RING batched", "on"): "raw-batched",
                        ("raw MSG_RING to sleeper", "on"): "raw-sleeper",
                        ("raw MSG_RING ring-less no DEFER", "on"): "raw-ringless-nodefer",
                        ("raw MSG_RING worker rings no DEFER", "on"): "raw-ringless-nodefer",
                        ("raw MSG_RING batched no DEFER", "on"): "raw-batched-nodefer",
                        ("raw eventfd", "on"): "raw-eventfd"}.get((variant, spin))
                if impl:
                    add("W3", impl, "jobs_per_s", m[3])


def med(wl, impl, metric):
    v = values.get((wl, impl, metric))
    return statistics.median(v) if v else None


def n_of(wl, impl, metric):
    return len(values.get((wl, impl, metric), []))


# ---- formatting ----

def num(v, digits=3):
    """v with about `digits` significant digits, thousands separated."""
    if v is None:
        return "—"
    a = abs(v)
    if a >= 10 ** digits:
        return f"{v:,.0f}"
    if a == 0:
        return "0"
    decimals = max(0, digits - 1 - int(f"{a:e}".split("e")[1]))
    return f"{v:,.{decimals}f}"


def rate(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    return f"{num(v / 1e3)} k"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rx(r):
    return "—" if r is None else f"{r:.2f}×"


def verdict(ok):
    return "**met**" if ok else "**missed**"


# ---- the table ----

rows = []
verdicts = []


def row(wl, figure, urt, floor, uv, py, other, r_floor, r_uv, target):
    rows.append((wl, figure, urt, floor, uv, py, other, rx(r_floor), rx(r_uv), target))


def target(text, checks):
    """checks: list of (label, ratio or None, ok or None); None = missing."""
    parts, oks = [], []
    for label, r, ok in checks:
        if ok is None:
            parts.append(f"{label}: no figure")
            oks.append(None)
        else:
            # Three decimals, so that a ratio just past the bound does not
            # print as the bound itself.
            parts.append(" ".join(x for x in (label, None if r is None else f"{r:.3f}×") if x))
            oks.append(ok)
    if None in oks:
        v = "n/a"
    else:
        v = verdict(all(oks))
    verdicts.append((text, v))
    return f"{text} — {'; '.join(parts)}: {v}"


def w1_rows():
    for n in ("10000", "100000"):
        wl = f"W1.{n}"
        label = f"W1 {int(n) // 1000}k"
        # At 100k, the second performance round's targets; 10k keeps the
        # first round's.
        cold_max, warm_max = (1.5, 3) if n == "100000" else (1.2, 1.2)
        u_c, u_w = med(wl, "urt", "cold_ms"), med(wl, "urt", "warm_ms")
        h_c, h_w = med(wl, "raw-heap", "cold_ms"), med(wl, "raw-heap", "warm_ms")
        fault, mfault = med(wl, "raw-fault", "ms"), med(wl, "raw-mmap-fault", "ms")
        uv_c, uv_w = med(wl, "libuv", "cold_ms"), med(wl, "libuv", "warm_ms")
        floor_c = h_c + fault if h_c is not None and fault is not None else None
        r = ratio(u_c, floor_c)
        row(label, "cold wall ms (first fan-out in the process)", num(u_c),
            f"{num(floor_c)} (heap {num(h_c)} + faults {num(fault)})", num(uv_c),
            num(med(wl, "asyncio", "cold_ms")),
            f"faults with a 64 KiB mmap per task: {num(mfault)}", r, ratio(u_c, uv_c),
            target(f"≤ {cold_max}× heap + fault floor",
                   [("", r, None if r is None else r <= cold_max)]))
        r = ratio(u_w, h_w)
        ru = ratio(u_w, uv_w)
        row(label, "warm wall ms (same fan-out again)", num(u_w), f"{num(h_w)} (heap)",
            num(uv_w), num(med(wl, "asyncio", "warm_ms")), "", r, ru,
            target(f"≤ {warm_max}× heap floor, below libuv",
                   [("floor", r, None if r is None else r <= warm_max),
                    ("libuv", ru, None if ru is None else ru < 1)]))
    wl = "W1.100000"

    def mem(impl):
        rss, per = med(wl, impl, "peak_rss_kib"), med(wl, impl, "kib_per_task")
        if rss is None:
            return "—"
        return f"{rss / 1024:.0f} MiB, {per:.2f} KiB/task"

    per = med(wl, "urt", "kib_per_task")
    row("W1 100k", "peak RSS after the cold fan-out; KiB per task over the start", mem("urt"),
        "—", mem("libuv"), mem("asyncio"), "", None,
        ratio(med(wl, "urt", "peak_rss_kib"), med(wl, "libuv", "peak_rss_kib")),
        target("≤ 5 KiB per task", [(f"{num(per)} KiB", None, None if per is None else per <= 5)]))


def w2_rows():
    for wl, where in (("W2", "unpinned, urt's default 20 µs spin on"),
                      ("W2.1cpu", "one CPU (all pinned to it), no spin")):
        for p in ("p50", "p99"):
            m = f"{p}_ns"
            u, f, uv = med(wl, "urt", m), med(wl, "raw", m), med(wl, "libuv", m)
            us = (lambda x: None if x is None else x / 1e3)
            r, ru = ratio(u, f), ratio(u, uv)
            t = ""
            if p == "p50":
                t = target(("≤ 1.2× raw MSG_RING, below libuv" if wl == "W2" else
                            "same target, on one CPU"),
                           [("floor", r, None if r is None else r <= 1.2),
                            ("libuv", ru, None if ru is None else ru < 1)])
            row("W2", f"round trip {p} µs, {where}", num(us(u)), num(us(f)), num(us(uv)),
                num(us(med(wl, "asyncio", m))),
                f"raw eventfd {num(us(med(wl, 'raw-eventfd', m)))}", r, ru, t)


# W3's MSG_RING floors, every ring setup urt-bench-offload measures; the
# fastest is the floor.
W3_FLOORS = (("raw-ringless", "raw ring-less"), ("raw-worker-rings", "raw worker rings"),
             ("raw-batched", "raw batched"), ("raw-sleeper", "raw to sleeper"),
             ("raw-ringless-nodefer", "raw ring-less no DEFER"),
             ("raw-batched-nodefer", "raw batched no DEFER"))


def w3_rows():
    u = med("W3", "urt", "jobs_per_s")
    floors = [(med("W3", i, "jobs_per_s"), i) for i, _ in W3_FLOORS]
    floors = [x for x in floors if x[0] is not None]
    f, fname = max(floors) if floors else (None, "")
    uv = med("W3", "libuv", "jobs_per_s")
    r, ru = ratio(u, f), ratio(u, uv)
    names = dict(W3_FLOORS)
    other = [f"floor: {names.get(fname, fname)} MSG_RING"]
    for i, label in W3_FLOORS + (("raw-eventfd", "raw eventfd"),
                                 ("urt-worker-rings", "urt WORKER_RINGS")):
        if i != fname and med("W3", i, "jobs_per_s") is not None:
            other.append(f"{label} {rate(med('W3', i, 'jobs_per_s'))}")
    row("W3", "jobs/s, 64 in flight, 2 threads (higher is better)", rate(u), rate(f), rate(uv),
        rate(med("W3", "asyncio", "jobs_per_s")), "; ".join(other), r, ru,
        target("≥ 0.9× raw floor, ≥ 1.5× libuv",
               [("floor", r, None if r is None else r >= 0.9),
                ("libuv", ru, None if ru is None else ru >= 1.5)]))


def w4_rows():
    u, f = med("W4", "urt", "iops"), med("W4", "raw-read", "iops")
    uv, fx = med("W4", "libuv", "iops"), med("W4", "raw-read-fixed", "iops")
    r = ratio(u, f)
    row("W4", "IOPS, 4 KiB random reads, QD 32 (higher is better)", rate(u),
        f"{rate(f)} (READ)", rate(uv), "—",
        "", r, ratio(u, uv),
        target("≥ 0.95× raw READ", [("", r, None if r is None else r >= 0.95)]))
    # The option: a registered file and buffers on both sides.
    ufx = med("W4", "urt-fixed", "iops")
    r = ratio(ufx, fx)
    row("W4 fixed", "IOPS, the same with a registered file and buffers: urt_read_fixed, raw "
        "READ_FIXED (higher is better)", rate(ufx), f"{rate(fx)} (READ_FIXED)", "—", "—", "",
        r, None,
        target("≥ 0.95× raw READ_FIXED", [("", r, None if r is None else r >= 0.95)]))


# Go's 32 goroutines on 2 CPUs in the benchmark plan, on another machine
# of this kind; the mark is set against Go in the same run where it ran.
GO_W4_2CPU = 1.56e6


def w4_loops_rows():
    one, two = med("W4", "urt", "iops"), med("W4", "urt-2loops", "iops")
    go = med("W4", "go", "iops")
    r = ratio(two, one)
    row("W4 2 loops", "IOPS, W4 on a set of 2 loops, QD 32 each (higher is better; ratio: to one "
        "loop)", rate(two), f"{rate(one)} (urt, one loop)", "—", "—",
        f"Go, 32 goroutines: {rate(go)} (plan, another machine: {rate(GO_W4_2CPU)})", r, None,
        target("≥ 1.8× one loop, above Go",
               [("one loop", r, None if r is None else r >= 1.8),
                ("Go", ratio(two, go), None if two is None or go is None else two > go)]))


def xloop_rows():
    u, f, e = (med("XLOOP", i, "rt_p50_ns") for i in ("urt", "raw-msg-ring", "eventfd"))
    r = med("XLOOP", "urt", "rt_over_raw")
    row("XLOOP rt", "ns p50, round trip of urt_call between two sleeping loops; floors: two "
        "threads ping-ponging MSG_RING, or eventfd (lower is better)", num(u),
        f"{num(f)} (MSG_RING)", "—", "—", f"eventfd {num(e)}", r, None,
        target("p50 ≤ 1.2× MSG_RING", [("", r, None if r is None else r <= 1.2)]))
    b, one = med("XLOOP", "urt", "chan_msgs_per_s_batched"), med("XLOOP", "urt", "chan_msgs_per_s")
    fl = med("XLOOP", "spsc-floor", "chan_msgs_per_s_batched")
    sp, calls = med("XLOOP", "urt", "spawns_per_s"), med("XLOOP", "urt", "calls_per_s")
    row("XLOOP msgs", "messages/s through a channel between two loops, batches of 64; floor: two "
        "threads polling a single-producer ring (higher is better)", rate(b),
        f"{rate(fl)} (SPSC, polling)", "—", "—",
        f"one by one {rate(one)}; urt_spawn_on {rate(sp)}/s; urt_call {rate(calls)}/s "
        "(64 callers)", med("XLOOP", "urt", "chan_over_spsc"), None,
        target("≥ 10 M batched", [("", ratio(b, 10e6), None if b is None else b >= 10e6)]))


def w5_rows():
    for load in ("idle", "offload", "inline"):
        wl = f"W5.{load}"

        def cell(impl):
            p50, p99, mx = (med(wl, impl, m) for m in ("p50_us", "p99_us", "max_us"))
            if p50 is None:
                return "—"
            return f"{num(p50)} / {num(p99)} / {num(mx)}"

        u, f = med(wl, "urt", "p99_us"), med(wl, "raw", "p99_us")
        uv, py = med(wl, "libuv", "p99_us"), med(wl, "asyncio", "p99_us")
        r, ru, rp = ratio(u, f), ratio(u, uv), ratio(u, py)
        t = ""
        if load == "offload":
            t = target("p99 ≤ 1.2× raw, below libuv and asyncio",
                       [("raw", r, None if r is None else r <= 1.2),
                        ("libuv", ru, None if ru is None else ru < 1),
                        ("asyncio", rp, None if rp is None else rp < 1)])
        row(f"W5 {load}", "lateness µs p50 / p99 / max (ratios: p99)", cell("urt"), cell("raw"),
            cell("libuv") if load != "inline" else "— (not run)", cell("asyncio"), "", r, ru, t)


def w6_rows():
    u, b = med("W6", "urt", "ns_per_switch"), med("W6", "boost-fcontext", "ns_per_switch")
    r = ratio(u, b)
    row("W6", "ns per switch: urt per urt_yield (one task-to-task stack switch and the "
        "run queue's bookkeeping); boost per jump_fcontext (1 stack switch); asyncio per sleep(0)",
        num(u), "—", "—", num(med("W6", "asyncio", "ns_per_switch")),
        f"boost.context jump_fcontext {num(b)}", None, None,
        target("≤ 2× jump_fcontext", [("", r, None if r is None else r <= 2)]))


def echo_rows():
    # No target: the figures and the ratios are printed, nothing is judged.
    u, e, uv = (med("ECHO", i, "rtps") for i in ("urt", "epoll", "libuv"))
    row("ECHO", "round trips/s, 100 connections x 64 B ping-pong on loopback, one event loop "
        "each, server and client pinned to two CPUs (to one, if that is all) (higher is better)",
        rate(u), f"{rate(e)} (plain epoll server)", rate(uv), "—", "", ratio(u, e), ratio(u, uv),
        "no target")
    u2 = med("ECHO", "urt-2loops", "rtps")
    r = ratio(u2, u)
    row("ECHO 2 loops", "round trips/s, the urt server on 2 loops (SO_REUSEPORT), server and "
        "client unpinned, sharing the CPUs (ratio: to one loop)", rate(u2),
        f"{rate(u)} (urt, one loop)", "—", "—", "", r, None,
        target("≥ 1.6× one loop", [("", r, None if r is None else r >= 1.6)]))


def epoll_rows():
    # urt on its epoll backend (URT_BACKEND=epoll), set against libuv, which
    # is epoll plus a thread pool too.
    u, uv, io = (med("ECHO", i, "rtps") for i in ("urt-epoll", "libuv", "urt"))
    r = ratio(u, uv)
    row("ECHO epoll", "round trips/s, ECHO with urt's server on its epoll backend (higher is "
        "better)", rate(u), f"{rate(io)} (urt on io_uring)", rate(uv), "—", "", ratio(u, io), r,
        target("≥ 1.0× libuv", [("", r, None if r is None else r >= 1.0)]))
    u, uv, io = (med("W4", i, "iops") for i in ("urt-epoll", "libuv", "urt"))
    r = ratio(u, uv)
    row("W4 epoll", "IOPS, W4 on the epoll backend: cached pages read on the loop "
        "(RWF_NOWAIT), the rest on the pool (higher is better)", rate(u),
        f"{rate(io)} (urt on io_uring)", rate(uv), "—", "", ratio(u, io), r,
        target("≥ 1.0× libuv uv_fs_read", [("", r, None if r is None else r >= 1.0)]))
    u, up = (med("W4", i, "iops") for i in ("urt-pool-epoll", "urt-epoll"))
    r = ratio(u, uv)
    row("W4 epoll pool", "IOPS, W4 on the epoll backend with URT_LOOP_FILES_ON_POOL: every "
        "read on the pool, as uv_fs_read (higher is better)", rate(u),
        f"{rate(up)} (cached reads on the loop)", rate(uv), "—", "", ratio(u, up), r,
        target("≥ 1.0× libuv uv_fs_read", [("", r, None if r is None else r >= 1.0)]))
    for load in ("idle", "offload"):
        wl = f"W5.{load}"
        u, uv, io = (med(wl, i, "p99_us") for i in ("urt-epoll", "libuv", "urt"))
        r = ratio(u, uv)
        t = ""
        if load == "offload":
            t = target("p99 ≤ libuv's", [("", r, None if r is None else r <= 1.0)])
        row(f"W5 {load} epoll", "lateness µs p99 on the epoll backend (lower is better)", num(u),
            f"{num(io)} (urt on io_uring)", num(uv), "—", "", ratio(u, io), r, t)


def watched_rows():
    # What watching a loop costs: URT_LOOP_METRICS and a 10 ms lag monitor
    # (URT_BENCH_METRICS=1; the echo server's default) against without.
    def cost_row(wl, metric, label, fmt, higher_better):
        u, w = med(wl, "urt", metric), med(wl, "urt-watched", metric)
        r = ratio(w, u)
        ok = None if r is None else (r >= 0.98 if higher_better else r <= 1.02)
        row(f"{wl} watched", f"{label}, with URT_LOOP_METRICS and a 10 ms lag monitor",
            fmt(w), f"{fmt(u)} (urt, not watched)", "—", "—", "", r, None,
            target("cost ≤ 2%", [("", r, ok)]))
    cost_row("W6", "ns_per_switch", "ns per switch (lower is better)", num, False)
    cost_row("W4", "iops", "IOPS (higher is better)", rate, True)
    cost_row("ECHO", "rtps", "round trips/s (higher is better)", rate, True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--mode", default="default")
    ap.add_argument("--wall-s", type=int, default=0)
    ap.add_argument("--file-mib", type=int, default=256)
    ap.add_argument("--sizes", default="")
    ap.add_argument("--build-type", default="")
    ap.add_argument("--commit", default="")
    a = ap.parse_args()
    parse(a.log)
    w1_rows()
    w2_rows()
    w3_rows()
    w4_rows()
    w4_loops_rows()
    xloop_rows()
    w5_rows()
    w6_rows()
    echo_rows()
    epoll_rows()
    watched_rows()

    now = datetime.datetime.now().astimezone()
    print(f"## urt against its peers — {now:%Y-%m-%d %H:%M %Z}\n")
    print(f"- machine: Linux {platform.release()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), {cpu_model()}")
    print(f"- {a.runs} round(s), {a.mode} sizes, programs interleaved round by round; every "
          f"cell is the median over rounds; ratios are urt's median over the peer's median")
    print(f"- sizes: W1 10k and 100k tasks; {a.sizes}; W4 file {a.file_mib} MiB "
          f"(the workload says 1 GiB)")
    print(f"- urt {a.commit or '(commit unknown)'}, build {a.build_type or 'default'}; "
          f"total wall time of the run (build included) {a.wall_s // 60} min {a.wall_s % 60} s\n")
    hdr = ("workload", "figure", "urt", "raw floor", "libuv", "asyncio", "other",
           "urt/floor", "urt/libuv", "target")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    met = sum(1 for _, v in verdicts if v == "**met**")
    print(f"\nTargets: {met} of {len(verdicts)} met.")
    # Maxima and p90s are left out: they always spread.
    judged = {"cold_ms", "warm_ms", "ms", "p50_ns", "p99_ns", "jobs_per_s", "iops", "p99_us",
              "ns_per_switch", "rtps"}
    spread = [(k, v) for k, v in sorted(values.items())
              if k[2] in judged and len(v) > 1 and statistics.median(v) and
              (max(v) - min(v)) / abs(statistics.median(v)) > 0.3]
    if spread:
        print("\nFigures whose rounds spread over more than 30% of their median (min–max): " +
              "; ".join(f"{' '.join(k)} {num(min(v))}–{num(max(v))}" for k, v in spread))
    missing = sorted({k for k in values if len(values[k]) != a.runs})
    if missing:
        print("\nFigures with fewer rounds than asked: " +
              ", ".join(f"{'/'.join(k)} ({len(values[k])})" for k in missing))
    print("""
Notes:
- Floors: W1, a binary heap of plain structs with one IORING_OP_TIMEOUT (ABS) armed for
  the earliest, plus the time to fault in one fresh page per task (one mapping, THP off);
  W2/W3, urt-bench-offload's raw hand-off (urt's queue, the worker posting IORING_OP_MSG_RING;
  W3 takes the fastest of every ring setup: one message per job ring-less or per batch from
  worker rings, a done list with a message when it was empty ("batched") or only to a
  sleeping main thread, and main rings with and without DEFER_TASKRUN); W4, IORING_OP_READ at
  QD 32 from one thread; W5, one thread waiting on its ring for an ABS timeout, the offload
  jobs on two threads completing by MSG_RING. Every other raw ring gets urt's setup flags.
- W2 unpinned: everything may run on every CPU; urt and the raw floor spin 20 µs (urt's
  default), libuv (UV_THREADPOOL_SIZE=1) and asyncio (1 executor thread) do not. W2 one
  CPU: urt-bench-offload's same-cpu cells without spin, libuv and asyncio under taskset.
- libuv 1.44 runs W4's reads on its thread pool (4 threads); W5 inline is not run on it.
- Go (Debian's golang-go) runs W4 as 32 goroutines calling ReadAt (pread) with GOMAXPROCS at
  the CPUs of the run: it is set against urt's two loops.
- W5: lateness = (t_k − t_{k−1}) − 1 ms; offload = 2 blocking 5 ms usleep jobs always in
  flight; inline = a task spinning 5 ms between yields (asyncio: sleep(0)).
- asyncio is Debian's python3; W3 and W6 on asyncio run fewer jobs (see sizes): per-job
  figures, so comparable.
- ECHO: urt-bench-echo-client (plain epoll, one thread, every byte checked) against
  examples/urt-echo-server, urt-bench-epoll-echo (level-triggered epoll) and
  urt-bench-uv-echo, each server on the first allowed CPU and the client on the second
  (unpinned when there is only one); urt/floor is urt over the epoll server.""")


if __name__ == "__main__":
    sys.exit(main())
