"""Execute the notebooks in place on the CPU and keep their outputs, so they can be read without running them.

Each notebook runs top to bottom in a fresh process, from `nbs/` as working directory, in execnb's `CaptureShell`
(what `nbdev_test` uses), skipping the cells `nbdev_test` skips (flags in settings.ini `tst_flags`: `#| slow`,
`#| cuda`, `#| colab`; `#| eval: false`; the `nbdev_export()` cell). Skipped cells keep no output. Figures are
stored as PNG at a moderate dpi (large ones with a 256-colour palette), progress bars keep only their last state,
widget state is dropped, and the notebook is written exactly as `nbdev_clean` would leave it, with a hash of its
code cells in its metadata (`metadata.configkd.code_hash`). A notebook whose cell fails is left unchanged.
Torch runs on one thread (OMP_NUM_THREADS=1 unless set), as `scripts/test.sh` runs `nbdev_test`.

    python scripts/run_notebooks.py                      # every nbs/[0-9]*.ipynb and nbs/index.ipynb
    python scripts/run_notebooks.py --nb '0[0-3]_*'      # only these (a glob in nbs/, or a file path)
    python scripts/run_notebooks.py --check              # exit 1 if an output is stale or missing (no execution)
    python scripts/run_notebooks.py --timeout 600        # seconds allowed per cell
    CONFIGKD_SLOW=1 python scripts/run_notebooks.py --nb 08_own_data.ipynb --flags slow   # also run (and keep) `#| slow` cells
    python scripts/run_notebooks.py --nb '08*' --cell_times   # print each code cell's wall time

Exits 1 when a cell fails, when a notebook grows over 1 MB, or (with --check) naming every stale notebook.
"""
import argparse, hashlib, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
META_KEY = 'configkd'      # notebook metadata key; listed in settings.ini `allowed_metadata_keys` so nbdev_clean keeps it
MAX_BYTES = 1_000_000      # 1 MB per notebook
DPI = 90                   # figure.dpi for every captured figure
WIDGET_MIMES = ('application/vnd.jupyter.widget-view+json', 'application/vnd.jupyter.widget-state+json')

# --- which notebooks -------------------------------------------------------------------------------------------

def is_numbered(path) -> bool: return re.match(r'\d', Path(path).name) is not None

def default_notebooks(nbs=NBS) -> list:
    "Every numbered notebook in `nbs` and its index.ipynb, in order."
    paths = sorted(Path(nbs).glob('[0-9]*.ipynb'))
    if (Path(nbs)/'index.ipynb').exists(): paths.append(Path(nbs)/'index.ipynb')
    return paths

def select_notebooks(patterns=None, nbs=NBS) -> list:
    "Notebooks matching `patterns` (globs in `nbs`, or paths); every default notebook when none is given."
    if not patterns: return default_notebooks(nbs)
    found = []
    for pat in patterns:
        p = Path(pat)
        if p.suffix == '.ipynb' and p.exists(): hits = [p]
        else: hits = sorted(Path(nbs).glob(pat if pat.endswith('.ipynb') else pat.rstrip('*') + '*.ipynb'))
        if not hits: raise SystemExit(f'run_notebooks: error: no notebook matches --nb {pat!r} in {nbs}')
        found += [h.resolve() for h in hits if h.resolve() not in found]
    return found

# --- the code hash ---------------------------------------------------------------------------------------------

def _source(cell) -> str:
    "A cell's source as one string, the same before and after `nbdev_clean` and on any OS."
    src = cell.get('source', '')
    if isinstance(src, list): src = ''.join(src)
    return src.replace('\r\n', '\n')

def code_hash(nb: dict) -> str:
    "sha256 over the source of every code cell, in order."
    srcs = [_source(c) for c in nb['cells'] if c.get('cell_type') == 'code']
    return 'sha256:' + hashlib.sha256(json.dumps(srcs, ensure_ascii=False).encode('utf-8')).hexdigest()

def stored_hash(nb: dict): return (nb.get('metadata', {}).get(META_KEY) or {}).get('code_hash')

def has_outputs(nb: dict) -> bool: return any(c.get('outputs') for c in nb['cells'] if c.get('cell_type') == 'code')

# --- cleaning what the shell captured -------------------------------------------------------------------------

def _last_state(text: str) -> str:
    "Keep what a terminal would show of carriage-return updates (tqdm bars): the last state of each line."
    return '\n'.join(line.rsplit('\r', 1)[-1] if '\r' in line.rstrip('\r') else line.rstrip('\r')
                     for line in text.split('\n'))

SHRINK_BYTES = 50_000      # PNGs larger than this are stored with a 256-colour palette when that halves them

def shrink_png(b64: str) -> str:
    "A large PNG (plots with many thin lines) re-encoded with an adaptive 256-colour palette, if that is much smaller."
    import base64, io
    from PIL import Image
    raw = base64.b64decode(b64)
    if len(raw) <= SHRINK_BYTES: return b64
    im = Image.open(io.BytesIO(raw))
    im = im.convert('RGBA' if 'A' in im.getbands() or 'transparency' in im.info else 'RGB')
    buf = io.BytesIO()
    im.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, 'PNG', optimize=True)
    small = buf.getvalue()
    return base64.b64encode(small).decode() if len(small) <= len(raw) // 2 else b64

def clean_outputs(outputs: list) -> list:
    "Outputs without widget views, with progress bars collapsed to their last state."
    res = []
    for o in outputs:
        o = dict(o)
        if o['output_type'] == 'stream':
            text = _last_state(''.join(o['text']))
            if not text.strip(): continue
            o['text'] = text.splitlines(True)
        elif 'data' in o:
            data = {k: v for k, v in o['data'].items() if k not in WIDGET_MIMES}
            if set(data) <= {'text/plain'} and any(k in o['data'] for k in WIDGET_MIMES): continue  # a widget's repr
            if not data: continue
            if 'image/png' in data: data['image/png'] = shrink_png(''.join(data['image/png']))
            o['data'] = data
        res.append(o)
    return res

def _config():
    from nbdev.config import get_config
    return get_config(path=ROOT)

def nbdev_clean_dict(nb: dict) -> dict:
    "`nb` as `nbdev_clean` leaves it, with this project's settings.ini (whatever the working directory)."
    from nbdev.clean import clean_nb
    cfg = _config()
    clean_nb(nb, cfg.clear_all, cfg.get('allowed_metadata_keys').split(), cfg.get('allowed_cell_metadata_keys').split(),
             cfg.clean_ids)
    return nb

def finish(nb: dict) -> str:
    "Hash, drop widget state, clean as `nbdev_clean` does; the file text to write."
    from execnb.nbio import nb2str
    d = json.loads(nb2str(nb))
    d['metadata'].pop('widgets', None)
    d['metadata'][META_KEY] = {'code_hash': code_hash(d)}
    return nb2str(nbdev_clean_dict(d))

# --- running one notebook (in a child process) -----------------------------------------------------------------

SETUP = f"""
import matplotlib as _mpl
_mpl.rcParams['figure.dpi'] = {DPI}
_mpl.rcParams['savefig.dpi'] = 'figure'
del _mpl
"""

def _skip_flags(run_flags=()) -> set:
    "The flags whose cells are skipped: settings.ini `tst_flags` less the ones asked for with `--flags`."
    return set(_config().tst_flags.split()) - set(run_flags)

def skipped(cell, flags) -> bool:
    "Whether `nbdev_test` would skip `cell` (same rules as nbdev.test.test_nb)."
    from nbdev.process import extract_directives
    if cell.cell_type != 'code': return True
    if 'nbdev_export' + '(' in cell.source: return True
    direc = extract_directives(cell, remove=False)
    if direc.get('eval:', [''])[0].lower() == 'false': return True
    return bool(flags & direc.keys())

class CellError(Exception): pass

def execute(path: Path, timeout=None, run_flags=(), cell_times=False):
    "Run notebook `path` in this process; return it with fresh outputs (raises `CellError` naming the cell)."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    os.environ['MPLBACKEND'] = 'module://matplotlib_inline.backend_inline'
    os.environ.setdefault('IN_TEST', '1')   # as under nbdev_test
    nb, flags = read_nb(path), _skip_flags(run_flags)
    shell = CaptureShell(path, mpl_format='png', timeout=timeout)
    shell.run(f"import sys; sys.path.insert(0, {str(ROOT)!r})")
    shell.run(SETUP)
    if shell.exc: raise CellError(f'{path.name}: the runner setup failed: {shell.exc!r}')
    os.environ['MPLBACKEND'] = 'Agg'        # for the subprocesses a notebook starts
    with working_directory(path.parent):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != 'code': continue
            cell.outputs, cell.execution_count = [], None
            if skipped(cell, flags): continue
            t0 = time.time()
            try: outs = shell.run(cell.source, timeout=timeout)
            except TimeoutError: raise CellError(f'{path.name}, cell {i}: still running after {timeout} s (--timeout)') from None
            if shell.exc is not None:
                if isinstance(shell.exc, TimeoutError):
                    raise CellError(f'{path.name}, cell {i}: still running after {timeout} s (--timeout)')
                tb = ''.join(''.join(o['traceback']) for o in outs if o['output_type'] == 'error')
                raise CellError(f'{path.name}, cell {i} failed:\n{cell.source}\n\n{tb}')
            cell.outputs = clean_outputs(outs)
            if cell_times: sys.stderr.write(f'{path.name} cell {i}: {time.time() - t0:.1f} s\n')
    return nb

def run_one(path: Path, timeout=None, run_flags=(), cell_times=False) -> int:
    "Child process: execute `path` and write it back (unchanged on failure)."
    try: nb = execute(path, timeout, run_flags, cell_times)
    except CellError as e:
        sys.stderr.write(f'run_notebooks: error: {e}\nThe notebook was left unchanged.\n'); return 1
    path.write_text(finish(nb), encoding='utf-8')
    return 0

def run_in_child(path: Path, timeout=None, run_flags=(), cell_times=False) -> tuple:
    "Run `path` in a fresh interpreter (as nbdev_test's workers do); returns (ok, seconds)."
    cmd = [sys.executable, str(Path(__file__).resolve()), '--_child', str(path)]
    if timeout: cmd += ['--timeout', str(timeout)]
    if run_flags: cmd += ['--flags', ' '.join(run_flags)]
    if cell_times: cmd += ['--cell_times']
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}
    env.setdefault('OMP_NUM_THREADS', '1')   # as scripts/test.sh runs nbdev_test: results match it bit for bit
    t = time.time()
    rc = subprocess.run(cmd, cwd=path.parent, env=env).returncode
    return rc == 0, time.time() - t

# --- checking --------------------------------------------------------------------------------------------------

def problems(path: Path) -> list:
    "What is wrong with the committed outputs of `path` (empty: current)."
    try: nb = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, ValueError) as e: return [f'cannot be read as a notebook ({e})']
    res, h = [], stored_hash(nb)
    if h is None: res.append('has no code hash: its outputs were not made by scripts/run_notebooks.py')
    elif h != code_hash(nb): res.append('code cells changed since its outputs were generated')
    if is_numbered(path) and not has_outputs(nb): res.append('has no outputs')
    size = Path(path).stat().st_size
    if size > MAX_BYTES: res.append(f'is {size/1e6:.2f} MB, over the {MAX_BYTES/1e6:.0f} MB limit')
    return res

def check(paths) -> int:
    "Print one line per stale notebook; 0 when every output is current."
    bad = 0
    for p in paths:
        if msgs := problems(p):
            bad += 1
            print(f'STALE {Path(p).name}: {"; ".join(msgs)}. '
                  f'Fix: python scripts/run_notebooks.py --nb {Path(p).name}, then commit it.')
    if bad: print(f'run_notebooks: {bad} of {len(paths)} notebooks have stale or missing outputs.')
    else: print(f'outputs are current in {len(paths)} notebooks.')
    return 1 if bad else 0

def run_all(paths, timeout=None, run_flags=(), cell_times=False) -> int:
    "Run every notebook, report its size and wall time; 1 if one failed or is over 1 MB."
    failed = []
    for p in paths:
        ok, secs = run_in_child(Path(p), timeout, run_flags, cell_times)
        size = Path(p).stat().st_size
        status = 'ok' if ok else 'FAILED'
        if ok and size > MAX_BYTES: status = 'TOO BIG (reduce figure sizes or printed output)'
        print(f'{Path(p).name:32s} {secs:7.1f} s {size/1e3:8.1f} KB  {status}', flush=True)
        if status != 'ok': failed.append(Path(p).name)
    if failed: print(f'run_notebooks: failed: {", ".join(failed)}'); return 1
    return 0

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog='\n'.join(__doc__.splitlines()[1:]))
    ap.add_argument('--nb', action='append', metavar='PATTERN', help='notebooks to run or check: a glob in nbs/ or a path (repeatable)')
    ap.add_argument('--check', action='store_true', help='check that committed outputs are current; execute nothing')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds allowed per cell (default 1800)')
    ap.add_argument('--flags', default='', metavar='FLAGS',
                    help='also run cells with these flags and keep their outputs, e.g. "slow" (space separated, from settings.ini tst_flags)')
    ap.add_argument('--cell_times', action='store_true', help="print each code cell's wall time to stderr")
    ap.add_argument('--_child', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.timeout <= 0: ap.error('--timeout must be positive')
    run_flags, known = args.flags.split(), set(_config().tst_flags.split())
    if unknown := [f for f in run_flags if f not in known]:
        ap.error(f"--flags {' '.join(unknown)}: not a flag of settings.ini tst_flags; use some of: {' '.join(sorted(known))}")
    if args._child: return run_one(Path(args._child), args.timeout, run_flags, args.cell_times)
    paths = select_notebooks(args.nb)
    return check(paths) if args.check else run_all(paths, args.timeout, run_flags, args.cell_times)

if __name__ == '__main__': sys.exit(main())
