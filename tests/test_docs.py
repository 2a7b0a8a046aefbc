"Committed notebook outputs are provably current (scripts/run_notebooks.py) and the offline docs site builds (scripts/make_docs.py)."
import base64, importlib.util, io, json, re, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT/'scripts'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

rn, md = _load('run_notebooks'), _load('make_docs')

def _script(name, *args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT/'scripts'/name), *map(str, args)], cwd=cwd, capture_output=True, text=True)

def _nb(cells):
    "A notebook (dict) with these cells: strings are code cells, ('md', text) markdown cells."
    mk = lambda c: (dict(cell_type='markdown', id=f'm{abs(hash(c[1])) % 10**6}', metadata={}, source=c[1]) if isinstance(c, tuple)
                    else dict(cell_type='code', id=f'c{abs(hash(c)) % 10**6}', metadata={}, source=c, outputs=[], execution_count=None))
    return dict(cells=[mk(c) for c in cells], nbformat=4, nbformat_minor=5,
                metadata={'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'},
                          'widgets': {'application/vnd.jupyter.widget-state+json': {'state': {}}}})

def _write(path, nb): Path(path).write_text(json.dumps(nb, indent=1), encoding='utf-8'); return Path(path)

# --- outputs and their hash ------------------------------------------------------------------------------------

def test_settings_keep_the_hash():
    from nbdev.config import get_config
    assert rn.META_KEY in get_config(path=ROOT).get('allowed_metadata_keys').split(), \
        f'settings.ini allowed_metadata_keys must list {rn.META_KEY!r}, or nbdev_clean deletes the code hash'

def test_hash_ignores_what_nbdev_clean_changes():
    a = _nb(['x = 1', '', ('md', 'text'), 'print(x)'])
    b = json.loads(json.dumps(a)); b['cells'][1]['source'] = ['']; b['cells'][0]['source'] = ['x = 1']
    b['cells'][2]['source'] = 'other text'; b['cells'][3]['outputs'] = [dict(output_type='stream', name='stdout', text=['1\n'])]
    assert rn.code_hash(a) == rn.code_hash(b)
    b['cells'][3]['source'] = 'print(x) '
    assert rn.code_hash(a) != rn.code_hash(b)

def test_check_fails_when_code_changes_without_rerun(tmp_path):
    src = NBS/'00_data.ipynb'
    nb_path = tmp_path/src.name; shutil.copy(src, nb_path)
    r = _script('run_notebooks.py', '--check', '--nb', nb_path)
    assert r.returncode == 0, f'{src.name} as committed should pass the check: {r.stdout}{r.stderr}'
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    cell = next(c for c in nb['cells'] if c['cell_type'] == 'code' and c['outputs'])
    cell['source'] = ''.join(cell['source']) + '\nx_changed = 1'
    _write(nb_path, nb)
    r = _script('run_notebooks.py', '--check', '--nb', nb_path)
    assert r.returncode == 1 and '00_data.ipynb' in r.stdout and 'changed' in r.stdout, r.stdout

def test_check_fails_without_hash_or_outputs(tmp_path):
    nb = _nb(['print(1)'])
    no_hash = _write(tmp_path/'01_nohash.ipynb', nb)
    nb['metadata'][rn.META_KEY] = {'code_hash': rn.code_hash(nb)}
    no_out = _write(tmp_path/'02_noout.ipynb', nb)
    assert rn.problems(no_hash) and 'no code hash' in rn.problems(no_hash)[0]
    assert rn.problems(no_out) == ['has no outputs']
    assert rn.check([no_hash, no_out]) == 1

def test_committed_notebooks_are_current():
    "The CI gate itself: every numbered notebook has outputs made from its current code."
    stale = {p.name: rn.problems(p) for p in rn.default_notebooks() if rn.problems(p)}
    assert not stale, f'stale outputs (run python scripts/run_notebooks.py --nb NAME): {stale}'

TINY = ['#| hide\nimport matplotlib.pyplot as plt',
        "print('hello', 6 * 7)",
        'fig, ax = plt.subplots(figsize=(4, 3)); ax.plot([1, 3, 2]);',
        "#| slow\nprint('never run')",
        'import sys\nfor i in range(3): sys.stderr.write(f"\\rstep {i}")\nsys.stderr.write("\\n")',
        'import ipywidgets as w; w.IntSlider(3)',
        "import pandas as pd; pd.DataFrame({'a': [1, 2]})"]

def test_runner_writes_outputs_and_hash_that_nbdev_clean_keeps(tmp_path):
    path = _write(tmp_path/'00_tiny.ipynb', _nb([('md', '# Tiny\n> a test')] + TINY))
    r = _script('run_notebooks.py', '--nb', path, '--timeout', 60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '00_tiny.ipynb' in r.stdout and 'KB' in r.stdout          # size and wall time reported
    nb = json.loads(path.read_text(encoding='utf-8'))
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    assert nb['metadata'][rn.META_KEY]['code_hash'] == rn.code_hash(nb)
    assert 'widgets' not in nb['metadata']
    assert code[1]['outputs'][0]['text'] == ['hello 42\n']
    png = code[2]['outputs'][0]['data']['image/png']
    from PIL import Image
    w, h = Image.open(io.BytesIO(base64.b64decode(png))).size
    assert w <= 4 * rn.DPI and h <= 3 * rn.DPI                      # PNG at the runner's dpi, not retina
    assert code[3]['outputs'] == []                                  # `#| slow`: skipped, no output
    assert ''.join(code[4]['outputs'][0]['text']) == 'step 2\n'     # carriage-return progress: last state only
    assert code[5]['outputs'] == []                                  # a widget keeps no state or view
    assert 'text/html' in code[6]['outputs'][0]['data']
    assert all(c['execution_count'] is None for c in code)
    before = path.read_text(encoding='utf-8')
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert path.read_text(encoding='utf-8') == before, 'nbdev_clean changed what the runner wrote'
    assert rn.problems(path) == []

def test_runner_runs_flagged_cells_only_when_asked(tmp_path):
    "`--flags slow` runs the `#| slow` cells too and keeps their output; an unknown flag is refused before anything runs."
    path = _write(tmp_path/'00_tiny.ipynb', _nb([('md', '# Tiny\n> a test')] + TINY[:4]))
    before = path.read_text(encoding='utf-8')
    r = _script('run_notebooks.py', '--nb', path, '--flags', 'slowly')
    assert r.returncode == 2 and '--flags slowly' in r.stderr and 'slow' in r.stderr
    assert path.read_text(encoding='utf-8') == before
    r = _script('run_notebooks.py', '--nb', path, '--flags', 'slow', '--cell_times', '--timeout', 60)
    assert r.returncode == 0, r.stdout + r.stderr
    code = [c for c in json.loads(path.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
    assert code[3]['outputs'][0]['text'] == ['never run\n']
    assert re.search(r'00_tiny.ipynb cell \d+: [\d.]+ s', r.stderr)

def test_large_pngs_are_shrunk_small_ones_kept():
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt, numpy as np
    def png(n_lines, figsize):
        fig, ax = plt.subplots(figsize=figsize, dpi=rn.DPI)
        ax.plot(np.random.default_rng(0).normal(size=(50, n_lines)).cumsum(0), lw=0.5, alpha=0.4)
        buf = io.BytesIO(); fig.savefig(buf, format='png'); plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode()
    small, big = png(3, (3, 2)), png(400, (10, 4))
    assert rn.shrink_png(small) == small
    shrunk = rn.shrink_png(big)
    assert len(shrunk) <= len(big) // 2
    from PIL import Image
    dims = lambda b: Image.open(io.BytesIO(base64.b64decode(b))).size
    assert dims(shrunk) == dims(big)

def test_runner_leaves_a_failing_notebook_unchanged(tmp_path):
    path = _write(tmp_path/'00_fail.ipynb', _nb(["print('ok')", "raise ValueError('boom')"]))
    before = path.read_text(encoding='utf-8')
    r = _script('run_notebooks.py', '--nb', path)
    assert r.returncode == 1 and 'cell 1' in r.stderr and 'boom' in r.stderr and '00_fail.ipynb' in r.stdout
    assert path.read_text(encoding='utf-8') == before

# --- the docs site ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')/'_docs'
    r = _script('make_docs.py', '--out', out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out

def _pages(): return {p: md.page_name(p) for p in md.notebooks(NBS)}

def _png_outputs(path) -> int:
    "PNG outputs of the cells a page shows (not `#| hide` ones)."
    nb = json.loads(Path(path).read_text(encoding='utf-8'))
    return sum('image/png' in o.get('data', {}) for c in nb['cells'] if c['cell_type'] == 'code'
               and not re.match(r'\s*#\|\s*hide\b', ''.join(c['source'])) for o in c.get('outputs', []))

def test_every_notebook_has_a_page_with_its_figures(site):
    pages = _pages()
    assert 'index.html' in pages.values() and len(pages) >= 9
    for nb, page in pages.items():
        f = site/page
        assert f.is_file(), f'{nb.name}: no page {page}'
        text = f.read_text(encoding='utf-8')
        assert 'class="ck-nav"' in text and all(f'href="{p}"' in text for p in pages.values()), f'{page}: sidebar'
        n = _png_outputs(nb)
        assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', text)) >= n, f'{page}: fewer figures than {nb.name}'
    assert _png_outputs(NBS/'00_data.ipynb') >= 3, 'the data notebook shows its images'

def test_pages_show_docs_and_hide_hidden_cells(site):
    data, models = (site/'data.html').read_text(encoding='utf-8'), (site/'models.html').read_text(encoding='utf-8')
    for page, names in [(data, ['groupedimages', 'spurious_digits']), (models, ['fit'])]:
        for nm in names:
            m = re.search(rf'<div class="ck-showdoc" id="{nm}">(.*?)</table>', page, flags=re.S)
            assert m, f'no show_doc block for {nm}'
            assert 'class="ck-signature"' in m.group(1) and 'class="ck-params"' in m.group(1)
    assert '(N, C, H, W) float in [0, 1]' in data                      # a docment of GroupedImages(images)
    assert len(re.findall(r'class="nf">spurious_digits<', data)) >= 2   # exported source shown as code, and its signature
    assert 'nbdev_export' not in data and 'from fastcore.test import' not in data and '#| export' not in data

def test_readme_and_modidx_links_point_at_built_pages(site):
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    links = re.findall(r'https://configkd\.github\.io/configkd/([\w.-]+\.html)(?:#([\w.-]+))?', readme)
    assert links, 'README has no links to the docs site'
    for page, anchor in links:
        assert (site/page).is_file(), f'README links {page}, which the build does not make'
        if anchor: assert f'id="{anchor}"' in (site/page).read_text(encoding='utf-8'), f'{page}#{anchor}'
    from configkd._modidx import d
    assert d['settings']['doc_host'] + d['settings']['doc_baseurl'] == 'https://configkd.github.io/configkd'
    urls = {url.split('#')[0] for mod in d['syms'].values() for url, _ in mod.values()}
    assert urls and all((site/u).is_file() for u in urls), sorted(u for u in urls if not (site/u).is_file())

def test_broken_notebook_fails_the_build(tmp_path):
    nbs = tmp_path/'nbs'; nbs.mkdir()
    shutil.copy(NBS/'index.ipynb', nbs/'index.ipynb')
    (nbs/'00_broken.ipynb').write_text('{"cells": [', encoding='utf-8')
    r = _script('make_docs.py', '--out', tmp_path/'out', '--nbs', nbs)
    assert r.returncode == 1 and '00_broken.ipynb' in r.stderr, r.stderr


def test_long_exported_cells_say_why_and_no_unfollowable_references():
    "A learner reads the code cell by cell: an exported cell over 40 non-blank lines says in its first comment why it is one cell; no text points at documents a reader cannot open."
    long_cells, refs = [], []
    pat = re.compile(r'sketch|DESIGN §|prototype|done-when', re.I)
    for f in sorted(NBS.glob('*.ipynb')):
        for c in json.loads(f.read_text())['cells']:
            src = ''.join(c['source']); lines = [l for l in src.splitlines() if l.strip()]
            if pat.search(src): refs.append(f"{f.name} {c.get('id')}: {pat.search(src).group(0)}")
            if c['cell_type'] == 'code' and lines and lines[0].startswith('#| export') and len(lines) > 40:
                if not (len(lines) > 1 and lines[1].startswith('# one cell')): long_cells.append(f"{f.name} {c.get('id')} ({len(lines)} lines)")
    for p in sorted((ROOT/'configkd').glob('*.py')):
        if pat.search(p.read_text()): refs.append(f"{p.name}: {pat.search(p.read_text()).group(0)}")
    assert not long_cells, 'exported cells over 40 lines without a "# one cell: why" comment: ' + ', '.join(long_cells)
    assert not refs, refs


PROSE_MARKERS = ('What it printed', 'On seed 0, at one budget', 'On dev, seed 0, the table above reads', 'The numbers the cell prints')

def test_prose_numbers_come_from_the_outputs_above():
    "Where a notebook's prose quotes what a cell above printed, every three-decimal number it quotes is in an output above it (numbers of slow cells and scripts are labelled with their command instead)."
    bad, checked = [], 0
    for f in sorted(NBS.glob('[0-9]*.ipynb')):
        seen = ''
        for c in json.loads(f.read_text())['cells']:
            if c['cell_type'] == 'code':
                for o in c.get('outputs', []):
                    seen += ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', '')) + ''.join(o.get('data', {}).get('text/html', ''))
                continue
            md = ''.join(c['source'])
            if not any(m in md for m in PROSE_MARKERS) or 'RUN_SLOW' in md or 'scripts/' in md: continue   # slow cells and scripts: labelled
            checked += 1
            bad += [f"{f.name} {c.get('id')}: {n}" for n in re.findall(r'(?<![\d.])\d\.\d{3}(?!\d)', md) if n not in seen]
    assert checked >= 4, f'only {checked} quoting cells found: the markers changed?'
    assert not bad, 'numbers in prose that no output above prints: ' + ', '.join(bad)
