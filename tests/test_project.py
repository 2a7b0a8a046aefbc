"Project hygiene: README is generated from index.ipynb, and the CLI of notebooks 00-02 runs end to end."
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def test_readme_is_current():
    r = subprocess.run([sys.executable, 'scripts/make_readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_foundation_cli(tmp_path):
    out = tmp_path/'run'
    r = subprocess.run(['configkd_foundation', '--out', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out/'metrics.json').read_text())
    assert res['models']['teacher']['wga'] >= 0.9 and res['models']['erm_student']['wga'] <= 0.3
    d = res['decomposition']; assert d['omega'] + d['psi'] == pytest.approx(d['delta'])
    assert (out/'group_accuracy.png').stat().st_size > 1000 and not list(out.glob('*.tmp'))
    # the README's results table is what this command produces (CPU runs are deterministic)
    readme = (ROOT/'README.md').read_text()
    for name, key in (('teacher', 'teacher'), ('ERM student', 'erm_student')):
        m = res['models'][key]
        row = f"| {name} | {m['wga']:.3f} | {m['mga']:.3f} | {m['train_weighted_acc']:.3f} | {m['acc']:.3f} |"
        assert row in readme, f"README results row for {name} is stale; expected: {row}"
    assert f"Δ = {d['delta']:.3f} nats, Ω = {d['omega']:.3f}, Ψ = {d['psi']:.3f}".replace('-', '−') in readme

def test_foundation_cli_bad_input(tmp_path):
    r = subprocess.run(['configkd_foundation', '--out', str(tmp_path/'x'), '--seed', '-1'], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith('configkd_foundation: error: --seed must be a whole number in [0, 2**31)')
    r = subprocess.run(['configkd_foundation', '--out', str(tmp_path/'y'), '--task', 'odd'], capture_output=True, text=True)
    assert r.returncode != 0 and "`task` must be 'ge5' or 'parity'" in r.stderr


GUARDS = {'slow': 'if RUN_SLOW', 'colab': 'if REAL_DATA', 'cuda': 'if torch.cuda.is_available()'}

def test_flagged_cells_are_no_ops_by_default():
    "Colab's 'Run all' ignores nbdev's flags: every `#| slow`, `#| colab` and `#| cuda` cell must guard itself with its switch."
    import re
    bad, switches = [], {'RUN_SLOW': "os.environ.get('CONFIGKD_SLOW') == '1'", 'REAL_DATA': "os.environ.get('CONFIGKD_REAL') == '1'"}
    for f in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(f.read_text())['cells']
        code = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
        for src in code:
            lines = [l for l in src.splitlines() if l.strip()]
            flag = re.match(r'#\|\s*(slow|colab|cuda)\b', lines[0]) if lines else None
            if not flag: continue
            if len(lines) < 2 or not lines[1].startswith(GUARDS[flag.group(1)]): bad.append(f"{f.name}: {lines[0]} cell starts with {lines[1:2]}")
            var = GUARDS[flag.group(1)].split()[1]
            if var in switches and not any(f"{var} = {switches[var]}" in s for s in code): bad.append(f"{f.name}: {var} is never set")
    assert not bad, '\n'.join(bad)


def test_notebooks_install_the_colab_extra_and_guard_the_export():
    "On Colab the first cell installs the package with its [colab] extra; the last writes modules only in a clone."
    for f in sorted((ROOT/'nbs').glob('*.ipynb')):
        src = ''.join(''.join(c['source']) for c in json.loads(f.read_text())['cells'])
        if 'nbdev_export()' in src: assert "if Path('../settings.ini').exists()" in src, f.name
        if 'google.colab' in src: assert '"configkd[colab] @ git+https://github.com/configkd/configkd.git"' in src, f.name


def test_cpu_speed_factor_scales_the_notebook_budgets():
    "scripts/cpu_speed.py prints one factor >= 1 that scripts/test.sh multiplies every notebook budget by."
    import subprocess, sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root/'scripts'/'cpu_speed.py'), '--factor'], capture_output=True, text=True, check=True).stdout
    assert float(out) >= 1.0
    sh = (root/'scripts'/'test.sh').read_text()
    assert 'cpu_speed.py --factor' in sh and "budget.get(m.group(1), 150) * f" in sh

def test_choose_preset_variant_rows_are_the_compared_settings():
    "`choose_preset.py --variants` compares the default preset (ratio 0.5, γ = 1) with ratio 0.3, γ = 2 and no paired reconstructions at the default schedule; a renamed row must not silently drop one."
    import importlib.util
    from configkd.distill import PRESETS
    spec = importlib.util.spec_from_file_location('choose_preset', ROOT/'scripts'/'choose_preset.py')
    cp = importlib.util.module_from_spec(spec); spec.loader.exec_module(cp)
    assert [r[0] for r in cp.VARIANT_ROWS] == list(cp.VARIANT_NAMES)
    cfgs = [{**cp.BASE, **kc} for _, _, kc, _ in cp.VARIANT_ROWS]
    default = PRESETS['default'][0]
    assert all(c[k] == default[k] for c in cfgs for k in ('epochs', 'period', 'rounds'))
    got = [(c['ratio'], c.get('pair_recon', True), kg) for c, (*_, kg) in zip(cfgs, cp.VARIANT_ROWS)]
    assert got == [(0.3, True, {}), (0.5, True, {}), (0.5, True, dict(gamma=1.0)), (0.5, False, {})]
    assert (default['ratio'], True, {k: v for k, v in PRESETS['default'][1].items() if k != 'steps'}) in got   # the default preset's own row
    with pytest.raises(SystemExit): cp.main(['--no-such-flag'])
