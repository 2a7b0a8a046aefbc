#!/usr/bin/env bash
# Run every test: each notebook cell (nbdev_test) and the pytest suite in tests/.
# Notebooks run as Colab's "Run all" would with the defaults: every cell, flags included (`#| slow`, `#| colab` and
# `#| cuda` cells run, and their own switches keep them no-ops: RUN_SLOW / REAL_DATA off, no GPU), with the Hugging
# Face Hub offline, so a download anywhere fails the test. Each notebook must stay within its CPU time budget.
# Ends with one line "N passed, N failed" that counts notebooks and pytest tests together.
set -uo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset CONFIGKD_SLOW CONFIGKD_REAL
log=$(mktemp -d)
nb_total=$(find nbs -name '[0-9]*.ipynb' -o -name 'index.ipynb' | grep -v '/_' | wc -l)
echo "== warm the model cache (notebooks running in parallel would each build the same cached models otherwise)"
python scripts/warm_cache.py
speed=$(python scripts/cpu_speed.py --factor)
echo "== CPU speed: notebook budgets x $speed (scripts/cpu_speed.py)"
echo "== nbdev_test ($nb_total notebooks, every cell, as Colab's Run all with the defaults)"
nbdev_test --flags "cuda colab slow" --n_workers "${NBDEV_WORKERS:-2}" --do_print --timing 2>&1 | tee "$log/nb.txt"
nb_rc=${PIPESTATUS[0]}
nb_failed=$(sed -n '/Tests Failed On The Following Notebooks/,$p' "$log/nb.txt" | grep -cE $'^\t.*\.ipynb$' || true)
nb_failed=${nb_failed:-0}
if [ "$nb_rc" -ne 0 ] && [ "$nb_failed" -eq 0 ]; then nb_failed=$nb_total; fi
# CPU budgets (seconds on the reference machine, a 2-core Intel Xeon, two notebooks side by side), times this CPU's
# slowness against it (scripts/cpu_speed.py, >= 1); over budget counts as a failure. Notebook 08 took 451 s there:
# its budget is 480 s until it is made cheaper (the aim is 300 s).
over=$(python - "$log/nb.txt" "$speed" <<'PY'
import re, sys
budget = {'04_guided_diffusion.ipynb': 240, '05_distill.ipynb': 420, '06_hybrid_tab.ipynb': 300, '07_benchmark.ipynb': 240,
          '08_own_data.ipynb': 480}
f = float(sys.argv[2])
for line in open(sys.argv[1]):
    m = re.match(r'^(\S+\.ipynb): (\d+) secs$', line.strip())
    b = round(budget.get(m.group(1), 150) * f) if m else 0
    if m and int(m.group(2)) > b: print(f"{m.group(1)} took {m.group(2)} s, over its {b} s budget ({budget.get(m.group(1), 150)} s x {f:.2f})")
PY
)
if [ -n "$over" ]; then echo "$over"; nb_failed=$((nb_failed + $(echo "$over" | wc -l))); fi
nb_passed=$((nb_total - nb_failed)); [ "$nb_passed" -lt 0 ] && nb_passed=0
echo "== pytest"
python -m pytest tests -q -p no:cacheprovider 2>&1 | tee "$log/py.txt"
py_rc=${PIPESTATUS[0]}
summary=$(grep -E '^=*.*(passed|failed|error)' "$log/py.txt" | tail -1)
py_passed=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
py_failed=$(echo "$summary" | grep -oE '[0-9]+ (failed|error|errors)' | grep -oE '[0-9]+' | awk '{s+=$1} END{print s+0}')
py_passed=${py_passed:-0}; py_failed=${py_failed:-0}
if [ "$py_rc" -ne 0 ] && [ "$py_rc" -ne 5 ] && [ "$py_failed" -eq 0 ]; then py_failed=1; fi
passed=$((nb_passed + py_passed)); failed=$((nb_failed + py_failed))
echo "notebooks: $nb_passed passed, $nb_failed failed; pytest: $py_passed passed, $py_failed failed"
echo "$passed passed, $failed failed"
rm -rf "$log"
[ "$failed" -eq 0 ]
