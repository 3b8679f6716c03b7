#!/usr/bin/env python3
"""The asyncio peers of urt's benchmarks (W1, W2, W3, W5, W6).

    bench_asyncio.py sleepers N         W1: N tasks each asyncio.sleep(0.01) once,
                                        cold and warm; wall ms, peak RSS
    bench_asyncio.py rt N [NAME]        W2: N no-op asyncio.to_thread calls one at a
                                        time after 1,000 warm-up, 1 executor thread,
                                        reported as workload NAME (default W2)
    bench_asyncio.py tp N               W3: N no-op to_thread calls, 64 in flight,
                                        2 executor threads; jobs per second
    bench_asyncio.py timer LOAD SECONDS W5: a 1 ms asyncio.sleep ticker; LOAD is
                                        idle, offload (2 to_thread jobs of
                                        time.sleep(0.005) in flight) or inline
                                        (a task spins 5 ms, then sleep(0))
    bench_asyncio.py yield N            W6: two tasks ping-pong with sleep(0) N times

Each prints a line for people and "result <workload> asyncio <metric> <value>"
lines for run.sh. Every job returns an answer computed from its input, checked
on the loop; the sleepers and ping-pong check their own counts. A failed check
exits 1.
"""
import asyncio
import concurrent.futures
import resource
import sys
import time

MS = 1_000_000


def result(workload, metric, value):
    print(f"result {workload} asyncio {metric} {value:.6g}", flush=True)


def fail(msg):
    print(f"bench_asyncio.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def peak_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def answer(x):
    return (x * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF


def pct(sorted_v, p):
    """Nearest rank, as the C programs' bench_pct."""
    rank = max(1, -(-len(sorted_v) * p // 100))
    return sorted_v[int(rank) - 1]


# ---- W1 ----

async def fan_out(n):
    woke = [0] * n
    early = 0

    async def sleeper(i, start):
        nonlocal early
        await asyncio.sleep(0.01)
        if time.monotonic_ns() - start < 10 * MS:
            early += 1
        woke[i] += 1

    t0 = time.monotonic_ns()
    tasks = [asyncio.create_task(sleeper(i, time.monotonic_ns())) for i in range(n)]
    await asyncio.gather(*tasks)
    ms = (time.monotonic_ns() - t0) / 1e6
    if any(w != 1 for w in woke):
        fail("a sleeper did not wake exactly once")
    return ms, early


async def sleepers(n):
    rss0 = peak_rss_kib()
    cold, early_cold = await fan_out(n)
    rss1 = peak_rss_kib()
    warm, early_warm = await fan_out(n)
    print(f"asyncio (Python {sys.version.split()[0]}): {n} tasks x sleep(0.01): cold {cold:.1f} ms, "
          f"warm {warm:.1f} ms; peak RSS {rss1} KiB ({(rss1 - rss0) / n:.2f} KiB per task "
          f"over the {rss0} KiB before); woke before 10 ms: {early_cold} cold, {early_warm} warm")
    wl = f"W1.{n}"
    result(wl, "cold_ms", cold)
    result(wl, "warm_ms", warm)
    result(wl, "peak_rss_kib", rss1)
    result(wl, "kib_per_task", (rss1 - rss0) / n)


# ---- W2, W3 ----

def job(x):
    return answer(x)


async def round_trip(n, wl):
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=1))
    warmup = 1000
    lat = []
    for i in range(warmup + n):
        t0 = time.perf_counter_ns()
        got = await asyncio.to_thread(job, i)
        ns = time.perf_counter_ns() - t0
        if got != answer(i):
            fail(f"job {i} came back without its answer")
        if i >= warmup:
            lat.append(ns)
    lat.sort()
    p50, p90, p99 = pct(lat, 50), pct(lat, 90), pct(lat, 99)
    print(f"asyncio to_thread, 1 thread, {n} jobs one at a time: p50 {p50} p90 {p90} p99 {p99} ns")
    result(wl, "p50_ns", p50)
    result(wl, "p90_ns", p90)
    result(wl, "p99_ns", p99)


async def throughput(n):
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=2))
    inflight = 64
    done = 0
    total = 0

    async def worker(first, count):
        nonlocal done, total
        for i in range(first, first + count):
            if await asyncio.to_thread(job, i) != answer(i):
                fail(f"job {i} came back without its answer")
            done += 1
            total += i

    t0 = time.monotonic_ns()
    shares, first = [], 0
    for k in range(inflight):
        count = n // inflight + (k < n % inflight)
        shares.append(worker(first, count))
        first += count
    await asyncio.gather(*shares)
    s = (time.monotonic_ns() - t0) / 1e9
    if done != n or total != n * (n - 1) // 2:
        fail(f"{done} jobs completed, expected {n}")
    print(f"asyncio to_thread, 2 threads, {n} jobs, {inflight} in flight: {n / s:.0f} jobs/s")
    result("W3", "jobs_per_s", n / s)


# ---- W5 ----

def blocking_job(x):
    time.sleep(0.005)
    return answer(x)


def spin(ns):
    until = time.monotonic_ns() + ns
    x = 1
    while time.monotonic_ns() < until:
        for _ in range(100):
            x = (x * 3 + 1) & 0xFFFF
    return x


async def timer(load, seconds):
    period = 1 * MS
    late = []
    stop = False
    jobs = 0
    spins = 0

    async def ticker():
        nonlocal stop
        start = prev = time.monotonic_ns()
        while prev - start < seconds * 1e9:
            await asyncio.sleep(period / 1e9)
            now = time.monotonic_ns()
            late.append(now - prev - period)
            prev = now
        stop = True

    async def offloader(k):
        nonlocal jobs
        i = k
        while not stop:
            if await asyncio.to_thread(blocking_job, i) != answer(i):
                fail(f"job {i} came back without its answer")
            jobs += 1
            i += 2

    async def spinner():
        nonlocal spins
        while not stop:
            spin(5 * MS)
            spins += 1
            await asyncio.sleep(0)

    tasks = [ticker()]
    if load == "offload":
        tasks += [offloader(0), offloader(1)]
    elif load == "inline":
        tasks.append(spinner())
    elif load != "idle":
        fail(f"load: idle, offload or inline, not {load!r}")
    await asyncio.gather(*tasks)
    if not late or (load == "offload" and not jobs) or (load == "inline" and not spins):
        fail("the ticker or the load never ran")
    mx = max(late)
    late.sort()
    p50, p99 = pct(late, 50) / 1e3, pct(late, 99) / 1e3
    wl = f"W5.{load}"
    print(f"{wl} asyncio: {len(late)} ticks, lateness p50 {p50:.1f} us, p99 {p99:.1f} us, "
          f"max {mx / 1e3:.1f} us")
    result(wl, "p50_us", p50)
    result(wl, "p99_us", p99)
    result(wl, "max_us", mx / 1e3)


# ---- W6 ----

async def ping_pong(n):
    turn = 0
    bad = False

    async def player(parity):
        nonlocal turn, bad
        for _ in range(n):
            if turn % 2 != parity:
                bad = True
            turn += 1
            await asyncio.sleep(0)

    a = asyncio.create_task(player(0))
    b = asyncio.create_task(player(1))
    await asyncio.sleep(0)  # both started: the timing covers only the ping-pong
    t0 = time.perf_counter_ns()
    await asyncio.gather(a, b)
    ns = time.perf_counter_ns() - t0
    if bad or turn != 2 * n:
        fail("the ping-pong went wrong")
    print(f"asyncio: {2 * n} sleep(0) switches: {ns / (2 * n):.0f} ns per switch")
    result("W6", "ns_per_switch", ns / (2 * n))


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "sleepers":
            return asyncio.run(sleepers(int(argv[2])))
        if len(argv) in (3, 4) and argv[1] == "rt":
            return asyncio.run(round_trip(int(argv[2]), argv[3] if len(argv) == 4 else "W2"))
        if len(argv) == 3 and argv[1] == "tp":
            return asyncio.run(throughput(int(argv[2])))
        if len(argv) == 4 and argv[1] == "timer":
            return asyncio.run(timer(argv[2], float(argv[3])))
        if len(argv) == 3 and argv[1] == "yield":
            return asyncio.run(ping_pong(int(argv[2])))
    except ValueError as e:
        fail(str(e))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
