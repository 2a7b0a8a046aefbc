#!/usr/bin/env bash
# configkd beside a current fastcore (>= 1.13, as current nbdev and fastai need): installing the package keeps it,
# and every console script runs there. (Only the nbdev 2 dev tools need fastcore < 1.13.)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "torch==2.13.0" "fastcore>=1.13"
before=$("$py" -c "import fastcore; print(fastcore.__version__)")
"$py" -m pip install --quiet .                     # the package and its runtime requirements, no dev tools
after=$("$py" -c "import fastcore; print(fastcore.__version__)")
echo "fastcore before: $before, after installing configkd: $after"
[ "$before" = "$after" ] || { echo "FAIL: installing configkd changed fastcore"; exit 1; }
"$py" -c "import fastcore; v = tuple(int(x) for x in fastcore.__version__.split('.')[:2]); assert v >= (1, 13), fastcore.__version__"
for c in configkd_foundation configkd_bench configkd_generate configkd_train_diffusion; do
  "$tmp/venv/bin/$c" --help > /dev/null || { echo "FAIL: $c --help with fastcore $after"; exit 1; }
done
CONFIGKD_CACHE="$tmp/cache" "$tmp/venv/bin/configkd_foundation" --out "$tmp/foundation" > /dev/null 2>&1
echo "fastcore $after: the four console scripts start and configkd_foundation runs end to end"
