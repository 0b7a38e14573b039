#!/usr/bin/env python3
"""Runs shell commands interleaved (A, B, A, B, ...) and reports wall time, CPU time (user +
system, children included) and peak resident memory of each, min / median / max.

    measure.py --runs 5 --out results.json NAME 'COMMAND' [NAME 'COMMAND' ...]

CPU and peak memory come from wait4(2)'s rusage, the figures GNU time prints as %U+%S and %M.
A command whose exit code is not 0 (or 1 when --allow-1) stops the benchmark. Per-run figures
go to --out as JSON; the table goes to stdout.
"""
import argparse, json, os, statistics, subprocess, sys, time


def run_once(command, timeout):
    start = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = None if timeout is None else start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline and time.perf_counter() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return None
        time.sleep(0.002)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime,
            "sys": usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "code": code, "stderr": stderr[-2000:]}


def stats(values):
    values = sorted(values)
    return values[0], statistics.median(values), values[-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out")
    parser.add_argument("--timeout", type=float, help="seconds; a run past it is killed and reported")
    parser.add_argument("--allow-1", action="store_true", help="exit code 1 is fine (a validator that finds errors)")
    parser.add_argument("pairs", nargs="+")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        sys.exit("measure.py: NAME COMMAND pairs expected")
    commands = list(zip(args.pairs[::2], args.pairs[1::2]))
    results = {name: [] for name, _ in commands}
    timed_out = set()
    for run in range(args.runs):
        for name, command in commands:
            if name in timed_out:
                continue
            result = run_once(command, args.timeout)
            if result is None:
                print(f"  {name}: run {run + 1} killed after {args.timeout:.0f} s", file=sys.stderr)
                timed_out.add(name)
                continue
            if result["code"] not in ((0, 1) if args.allow_1 else (0,)):
                sys.exit(f"measure.py: {name} exited {result['code']}:\n{result['stderr']}")
            print(f"  {name}: run {run + 1}: {result['wall']:.3f} s wall, {result['cpu']:.3f} s CPU, "
                  f"{result['rss_mb']:.1f} MB", file=sys.stderr)
            results[name].append(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"runs": args.runs, "results": results, "timed_out": sorted(timed_out)}, f, indent=1)
    print("| command | runs | wall min / median / max (s) | CPU min / median / max (s) | peak memory min / median / max (MB) |")
    print("|---|---|---|---|---|")
    for name, _ in commands:
        runs = results[name]
        if not runs:
            print(f"| {name} | 0 | killed after {args.timeout:.0f} s | | |")
            continue
        w, c, m = (stats([r[k] for r in runs]) for k in ("wall", "cpu", "rss_mb"))
        print(f"| {name} | {len(runs)} | {w[0]:.3f} / {w[1]:.3f} / {w[2]:.3f} | {c[0]:.3f} / {c[1]:.3f} / {c[2]:.3f} "
              f"| {m[0]:.1f} / {m[1]:.1f} / {m[2]:.1f} |")
    first = commands[0][0]
    for name, _ in commands[1:]:
        if results[name] and results[first]:
            wall = statistics.median(r["wall"] for r in results[name]) / statistics.median(r["wall"] for r in results[first])
            cpu = statistics.median(r["cpu"] for r in results[name]) / statistics.median(r["cpu"] for r in results[first])
            print(f"\n{name} / {first}: {wall:.1f}x the wall time, {cpu:.1f}x the CPU time (medians)")


if __name__ == "__main__":
    main()
