#!/usr/bin/env bash
# Run every test: each notebook cell (nbdev_test) and the pytest suite in tests/.
# Ends with one line "N passed, N failed" that counts notebooks and pytest tests together.
set -uo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
log=$(mktemp -d)
nb_total=$(find nbs -name '[0-9]*.ipynb' -o -name 'index.ipynb' | grep -v '/_' | wc -l)
echo "== warm the model cache (notebooks running in parallel would each build the same cached models otherwise)"
python scripts/warm_cache.py
echo "== nbdev_test ($nb_total notebooks)"
# one torch thread per notebook worker: two workers with two threads each on two cores run ~several times slower
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} nbdev_test --n_workers "${NBDEV_WORKERS:-2}" --do_print --timing 2>&1 | tee "$log/nb.txt"
nb_rc=${PIPESTATUS[0]}
nb_failed=$(sed -n '/Tests Failed On The Following Notebooks/,$p' "$log/nb.txt" | grep -cE $'^\t.*\.ipynb$' || true)
nb_failed=${nb_failed:-0}
if [ "$nb_rc" -ne 0 ] && [ "$nb_failed" -eq 0 ]; then nb_failed=$nb_total; fi
nb_passed=$((nb_total - nb_failed))
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
