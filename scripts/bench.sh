#!/usr/bin/env bash
# The benchmark suite behind BENCHMARKS.md. Each subcommand regenerates one table and writes it
# to target/bench/results/<name>.md (and prints it):
#
#   scripts/bench.sh tools      # install or check the tools (hyperfine, GNU time, check-jsonschema)
#   scripts/bench.sh local      # cargo bench --bench local: in-process load/validate, diff, render
#   scripts/bench.sh validate   # validate 1,000 / 10,000 / 100,000 files vs check-jsonschema
#   scripts/bench.sh plan       # plan 10,000 incidents against the emulator: read calls, CPU
#   scripts/bench.sh apply      # apply pacing at 50/min (4 min per run) and with windows / 60
#   scripts/bench.sh apply-report  # the apply tables again, from the last run's request logs
#   scripts/bench.sh edit-check # the concurrent-edit check, --edit-check get vs list (4 min)
#   scripts/bench.sh startup    # --version and validate of 10 files (hyperfine)
#   scripts/bench.sh all        # everything above (about 35 minutes, most of it apply pacing)
#
# Knobs (environment): RUNS (default 5), VALIDATE_SIZES (default "1000 10000 100000"),
# CJS_100K_TIMEOUT (seconds allowed to one check-jsonschema run on 100,000 files; default 300,
# 0 skips it), APPLY_PARALLEL=1 (run the five 4-minute apply runs at the same time, each with its
# own emulator, instead of one after the other). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/incidentops
gen=$target/release/examples/gen-bench-data
work=$root/target/bench
data=$work/data
results=$work/results
venv=$root/target/bench-venv
runs=${RUNS:-5}
schema=$root/schema/incident.schema.json
export INCIDENTOPS_TOKEN=bench-token # the sandbox accepts it; nothing secret
mkdir -p "$data" "$results"

say() { printf '\n== %s\n' "$*" >&2; }

tools() {
  local missing=()
  command -v hyperfine >/dev/null || missing+=(hyperfine)
  [ -x /usr/bin/time ] || missing+=(time)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} with apt-get"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
  fi
  if [ ! -x "$venv/bin/check-jsonschema" ]; then
    say "installing check-jsonschema into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet check-jsonschema
  fi
  say "building the release binary and the data generator into $target"
  cargo build --release --locked --quiet
  cargo build --release --locked --quiet --example gen-bench-data
}

machine() {
  {
    echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GB memory, $(uname -sr)"
    echo "- load average when the table was made: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $("$bin" --version), $(rustc --version)"
    echo "- check-jsonschema $("$venv/bin/check-jsonschema" --version 2>&1 | awk '{print $NF}') on $("$venv/bin/python" --version), $(hyperfine --version)"
  }
}

# Generated desired-state files: gen_data DIR COUNT [CHANGED] [EVERY] (kept between runs).
gen_data() {
  local dir=$1 count=$2 changed=${3:-0.1} every=${4:-1}
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    "$gen" --out "$dir" --count "$count" --seed 1 --changed "$changed" --every "$every"
    touch "$dir/.complete"
  fi
}

# Starts an emulator in the background: sandbox_start LOGFILE ARGS...; sets $sandbox_pid and
# $sandbox_url. sandbox_stop ends it.
sandbox_start() {
  local log=$1
  shift
  local urlfile
  urlfile=$(mktemp)
  "$bin" sandbox --listen 127.0.0.1:0 --request-log "$log" "$@" >"$urlfile" 2>/dev/null &
  sandbox_pid=$!
  for _ in $(seq 200); do
    [ -s "$urlfile" ] && break
    sleep 0.05
  done
  sandbox_url=$(head -n1 "$urlfile")
  rm -f "$urlfile"
  [ -n "$sandbox_url" ] || { echo "the sandbox did not start" >&2; exit 1; }
}
sandbox_stop() {
  kill -INT "$sandbox_pid" 2>/dev/null || true
  wait "$sandbox_pid" 2>/dev/null || true
}

local_bench() {
  say "cargo bench --bench local"
  {
    echo "### Local work, in process (\`scripts/bench.sh local\`)"
    echo
    machine
    echo
    BENCH_SIZES=${BENCH_SIZES:-1000,10000,100000} cargo bench --locked --quiet --bench local 2>/dev/null
  } | tee "$results/local.md"
}

validate() {
  local cjs=$venv/bin/check-jsonschema
  {
    echo "### Validation (\`scripts/bench.sh validate\`)"
    echo
    machine
    echo
    for n in ${VALIDATE_SIZES:-1000 10000 100000}; do
      local dir=$data/validate-$n
      gen_data "$dir" "$n"
      local files
      files=$(find "$dir/incidents" -name '*.yaml' | wc -l)
      say "validate: $files files"
      echo "#### $files files (\`incidentops sandbox --generate $n\` data, seed 1)"
      echo
      local ours="'$bin' validate --repo '$dir'"
      # xargs -s: as few check-jsonschema processes as the argument limit allows (one up to
      # about 85,000 files, two at 100,000).
      local theirs="cd '$dir' && find incidents -name '*.yaml' -print0 | sort -z | xargs -0 -s 2000000 '$cjs' --schemafile '$schema'"
      if [ "$n" -le 10000 ]; then
        python3 scripts/bench/measure.py --runs "$runs" --out "$work/validate-$n.json" \
          "incidentops validate" "$ours" "check-jsonschema" "$theirs"
      else
        python3 scripts/bench/measure.py --runs "$runs" --out "$work/validate-$n.json" \
          "incidentops validate" "$ours"
        if [ "${CJS_100K_TIMEOUT:-300}" != 0 ]; then
          echo
          echo "check-jsonschema, one run only (allowed ${CJS_100K_TIMEOUT:-300} s):"
          echo
          python3 scripts/bench/measure.py --runs 1 --timeout "${CJS_100K_TIMEOUT:-300}" \
            --out "$work/validate-$n-cjs.json" "check-jsonschema" "$theirs"
        fi
      fi
      echo
    done
  } | tee "$results/validate.md"
}

plan() {
  local total=10000 lifted=(--max-calls-per-minute 1000000 --max-calls-per-hour 100000000)
  local most=$data/plan-most few=$data/plan-few
  gen_data "$most" "$total" 0.1 1
  gen_data "$few" "$total" 0.1 1000
  local n_most n_few
  n_most=$(find "$most/incidents" -name '*.yaml' | wc -l)
  n_few=$(find "$few/incidents" -name '*.yaml' | wc -l)
  say "plan: emulator with $total generated incidents (+3 documented), quotas lifted"
  sandbox_start "$work/plan-requests.jsonl" --generate "$total" --seed 1 "${lifted[@]}"
  local url=$sandbox_url
  {
    echo "### Plan against the emulator, quotas lifted (\`scripts/bench.sh plan\`)"
    echo
    machine
    echo
    echo "The emulator serves $((total + 3)) incidents. \"most\": $n_most managed (every generated incident"
    echo "but the merged ones; 10% to change). \"few\": $n_few managed (every 1,000th). \"naive\": one"
    echo "\`GET /api/incidents/{id}\` per managed incident, over one keep-alive connection"
    echo "(\`scripts/bench/naive_read.py\`), the read cost without any strategy."
    echo
    python3 scripts/bench/measure.py --runs "$runs" --out "$work/plan.json" \
      "incidentops plan, most managed" "'$bin' plan --repo '$most' --api-url '$url' --format json ${lifted[*]} > '$work/plan-most.json'" \
      "naive reads, most managed" "python3 scripts/bench/naive_read.py '$url' '$most' > '$work/naive-most.json'" \
      "incidentops plan, few managed" "'$bin' plan --repo '$few' --api-url '$url' --format json ${lifted[*]} > '$work/plan-few.json'" \
      "naive reads, few managed" "python3 scripts/bench/naive_read.py '$url' '$few' > '$work/naive-few.json'"
    echo
    python3 - "$work" "$n_most" "$n_few" "$total" <<'PY'
import json, math, sys
work, n_most, n_few, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) + 3
runs = json.load(open(f"{work}/plan.json"))["results"]
def cpu_us(name, n):
    values = sorted(r["cpu"] for r in runs[name])
    return [v * 1e6 / n for v in (values[0], values[len(values) // 2], values[-1])]
print("| managed | incidentops read calls | target | naive read calls | plan CPU per managed incident min / median / max (µs) |")
print("|---|---|---|---|---|")
for label, n, name in (("most", n_most, "incidentops plan, most managed"), ("few", n_few, "incidentops plan, few managed")):
    plan = json.load(open(f"{work}/plan-{label}.json"))
    naive = json.load(open(f"{work}/naive-{label}.json"))
    target = math.ceil(total / 100) + 1 if label == "most" else n
    reads = plan["summary"]["readCalls"]
    verdict = "met" if reads <= target else "MISSED"
    lo, mid, hi = cpu_us(name, n)
    print(f"| {n} ({label}) | {reads} | ≤ {target}: {verdict} | {naive['calls']} | {lo:.1f} / {mid:.1f} / {hi:.1f} |")
    s = plan["summary"]
    print(f"<!-- {label}: changed {s['changed']}, unchanged {s['unchanged']}, errors {s['errors']}, requests {s['requests']} -->")
PY
  } | tee "$results/plan.md"
  sandbox_stop
}

# One apply run: apply_run NAME COUNT WINDOW SCALE [CLIENT QUOTA FLAGS...]
apply_run() {
  local name=$1 count=$2 window=$3 scale=$4
  shift 4
  local dir=$data/apply-$name
  rm -rf "$dir"
  "$gen" --out "$dir" --count "$count" --seed 1 --changed 1.0 2>/dev/null
  local log=$dir/requests.jsonl
  local sandbox_pid sandbox_url
  sandbox_start "$log" --generate "$count" --seed 1 --window-scale "$scale"
  /usr/bin/time -f '%e %U %S %M' -o "$dir/time.txt" \
    "$bin" apply --auto-approve --repo "$dir" --api-url "$sandbox_url" "$@" >/dev/null 2>"$dir/apply.stderr" || true
  sandbox_stop
  local extra=()
  [ "$scale" = 1 ] || extra=(--all-calls)
  python3 scripts/bench/apply_stats.py "$log" --window "$window" "${extra[@]}" >"$dir/stats.json"
  echo "  $name: $(cat "$dir/stats.json") time: $(cat "$dir/time.txt")" >&2
}

apply_summary() {
  python3 - "$data" "$@" <<'PY'
import json, statistics, sys
data, prefix, quota, window = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
import glob
rows = []
for d in sorted(glob.glob(f"{data}/apply-{prefix}-*")):
    s = json.load(open(f"{d}/stats.json"))
    wall, user, sys_, rss = open(f"{d}/time.txt").read().split()
    s.update(wall=float(wall), cpu=float(user) + float(sys_))
    # The API's own bound: with at most QUOTA calls in any 60 s (a minute, or a scaled hour),
    # accepted call k (from 0) cannot be sent before floor(k / QUOTA) * 60 s after the first.
    accepted = s["patchesAccepted"] if prefix == "real" else s["apiCalls"] - s["quota429"]
    s["minimum"] = (accepted - 1) // int(quota) * 60
    rows.append(s)
def mmm(key, f=lambda v: v, fmt="{:.1f}"):
    v = sorted(f(r[key]) for r in rows)
    return " / ".join(fmt.format(x) for x in (v[0], statistics.median(v), v[-1]))
per_min = lambda v: v / (window / 60)
share = lambda v: 100 * v / quota
print(f"| runs | calls in the {window:.0f} s after the first PATCH, per minute | % of quota | 429s from quota hits | first→last PATCH (s) | API's bound on it (s) | apply wall (s) | apply CPU (s) | PATCHes sent |")
print("|---|---|---|---|---|---|---|---|---|")
print(f"| {len(rows)} | {mmm('acceptedInWindow', per_min)} | {mmm('acceptedInWindow', lambda v: share(per_min(v)))} "
      f"| {mmm('quota429', fmt='{:.0f}')} | {mmm('firstToLastPatch')} | {mmm('minimum', fmt='{:.0f}')} | {mmm('wall')} | {mmm('cpu', fmt='{:.2f}')} | {mmm('patches', fmt='{:.0f}')} |")
PY
}

apply() {
  {
    echo "### Apply pacing against the emulator (\`scripts/bench.sh apply\`)"
    echo
    machine
    echo
    say "apply at the documented quotas: $runs runs of about 4 minutes"
    rm -rf "$data"/apply-real-* "$data"/apply-scaled-*
    if [ "${APPLY_PARALLEL:-0}" = 1 ]; then
      for i in $(seq "$runs"); do apply_run "real-$i" 205 180 1 & done
      wait
      echo "The $runs runs at the documented quotas ran at the same time, each with its own emulator."
    else
      for i in $(seq "$runs"); do apply_run "real-$i" 205 180 1; done
    fi
    echo
    echo "#### Documented quotas (50 PATCH/min, 1,500 calls/hour): 203 changed incidents, one PATCH each (plus retries of 429s)"
    echo
    apply_summary real 50 180
    echo
    say "apply with the emulator's windows / 60: $runs runs of about 1 minute"
    for i in $(seq "$runs"); do
      apply_run "scaled-$i" 1700 60 60 --max-calls-per-minute 3000 --max-calls-per-hour 90000
    done
    echo "#### Windows scaled 60× (\`sandbox --window-scale 60\`, client \`--max-calls-per-minute 3000 --max-calls-per-hour 90000\`): 1,700 incidents, hourly ceiling = 1,500 calls per real minute"
    echo
    apply_summary scaled 1500 60
  } | tee "$results/apply.md"
}

# The concurrent-edit check's cost at the documented quotas: `--edit-check get` vs `list`,
# RUNS runs of each at the same time (each its own emulator), about 4 minutes in all.
edit_check() {
  {
    echo "### The concurrent-edit check at the documented quotas (\`scripts/bench.sh edit-check\`)"
    echo
    machine
    echo
    say "apply with --edit-check get and list: $runs runs each, at the same time, about 4 minutes"
    rm -rf "$data"/apply-check-*
    for i in $(seq "$runs"); do
      apply_run "check-get-$i" 205 180 1 --edit-check get &
      apply_run "check-list-$i" 205 180 1 --edit-check list &
    done
    wait
    python3 - "$data" <<'PY'
import glob, json, statistics, sys
data = sys.argv[1]
def mmm(values, fmt="{:.0f}"):
    v = sorted(values)
    return " / ".join(fmt.format(x) for x in (v[0], statistics.median(v), v[-1]))
print("| mode | runs | PATCHes accepted | GETs by id | listings | calls per PATCH | changed incidents per hour the 1,500-call quota allows | first→last PATCH (s) | age of the check at the first PATCH, median (ms) | the same, max (ms) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mode in ("get", "list"):
    rows = [json.load(open(f"{d}/stats.json")) for d in sorted(glob.glob(f"{data}/apply-check-{mode}-*"))]
    per_patch = [(r["patchesAccepted"] + r["getById"] + r["listings"]) / r["patchesAccepted"] for r in rows]
    print(f"| {mode} | {len(rows)} | {mmm([r['patchesAccepted'] for r in rows])} | {mmm([r['getById'] for r in rows])} "
          f"| {mmm([r['listings'] for r in rows])} | {mmm(per_patch, '{:.3f}')} | {mmm([1500 / p for p in per_patch])} "
          f"| {mmm([r['firstToLastPatch'] for r in rows], '{:.1f}')} "
          f"| {mmm([1000 * r['checkAgeMedian'] for r in rows])} | {mmm([1000 * r['checkAgeMax'] for r in rows])} |")
PY
  } | tee "$results/edit-check.md"
}

startup() {
  local small=$data/validate-10
  gen_data "$small" 10
  say "startup: hyperfine"
  hyperfine --warmup 3 --runs 30 -N --export-json "$work/startup.json" \
    "$bin --version" "$bin validate --repo $small" \
    "$venv/bin/check-jsonschema --schemafile $schema $(cd "$small" && ls incidents/*.yaml | sed "s|^|$small/|" | tr '\n' ' ')" >&2
  {
    echo "### Start-up and small runs (\`scripts/bench.sh startup\`)"
    echo
    machine
    echo
    python3 - "$work/startup.json" <<'PY'
import json, statistics, sys
names = ["incidentops --version", "incidentops validate, 10 files", "check-jsonschema, 10 files"]
print("| command | runs | wall min / median / max (ms) | user + system median (ms) |")
print("|---|---|---|---|")
for name, r in zip(names, json.load(open(sys.argv[1]))["results"]):
    t = sorted(r["times"])
    cpu = statistics.median(u + s for u, s in zip(r["user"], r["system"])) if "user" in r and isinstance(r["user"], list) else r["user"] + r["system"]
    print(f"| {name} | {len(t)} | {t[0]*1e3:.1f} / {statistics.median(t)*1e3:.1f} / {t[-1]*1e3:.1f} | {cpu*1e3:.1f} |")
PY
  } | tee "$results/startup.md"
}

case ${1:-} in
  tools) tools ;;
  local) tools && local_bench ;;
  validate) tools && validate ;;
  plan) tools && plan ;;
  apply) tools && apply ;;
  apply-report) # the tables of the last `apply`, from its request logs, without running it again
    apply_summary real 50 180 && echo && apply_summary scaled 1500 60 ;;
  edit-check) tools && edit_check ;;
  startup) tools && startup ;;
  all) tools && local_bench && startup && validate && plan && apply ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
