"""Build the documentation site as static HTML in `_docs/`, offline and without executing any notebook.

One page per notebook (`nbs/[0-9]*.ipynb` and `nbs/index.ipynb`), named as nbdev names them (`00_data.ipynb` ->
`data.html`, `index.ipynb` -> `index.html`), so README links and `configkd/_modidx.py` point at real pages. Each
page shows the notebook's committed outputs (made by `scripts/run_notebooks.py`), hides `#| hide` cells, shows
`#| export` cells as code followed by a `show_doc` block for every function and class they define (signature and
per-argument documentation from fastcore's docments, read from the exported `configkd` modules), and has a
sidebar linking every page. nbdev's processors prepare each notebook (as `nbdev_docs` does before Quarto);
nbconvert's HTML exporter renders it.

    python scripts/make_docs.py                  # build into _docs/
    python scripts/make_docs.py --out /tmp/site  # build elsewhere

Exits 1, naming the notebook, when a notebook cannot be processed or a page is missing.
"""
import argparse, ast, base64, functools, html, importlib, inspect, mimetypes, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

class BuildError(Exception): pass

# --- pages -----------------------------------------------------------------------------------------------------

def notebooks(nbs) -> list:
    "The notebooks that get a page: every numbered notebook, then index.ipynb."
    paths = sorted(Path(nbs).glob('[0-9]*.ipynb'))
    if (Path(nbs)/'index.ipynb').exists(): paths.append(Path(nbs)/'index.ipynb')
    return paths

def page_name(nb_path) -> str:
    "The page nbdev (and so README and `_modidx.py`) gives a notebook: `00_data.ipynb` -> `data.html`."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(Path(nb_path).name)).name

# --- show_doc blocks -------------------------------------------------------------------------------------------

def resolve(module, name: str):
    "The object `name` (`f`, `Class` or `Class.method`) in the module named `module`."
    obj = importlib.import_module(module)
    for part in name.split('.'): obj = getattr(obj, part)
    return obj

@functools.lru_cache(maxsize=None)
def _def_lines(py_file: str) -> dict:
    "Line of every top-level function and class in `py_file`, by the name show_doc gives it (`Class.method` if patched)."
    from nbdev.showdoc import showdoc_nm
    tree = ast.parse(Path(py_file).read_text(encoding='utf-8'))
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {showdoc_nm(t): min([t.lineno] + [d.lineno for d in t.decorator_list]) for t in tree.body if isinstance(t, defs)}

def _source_url(obj, name: str, cfg) -> str:
    "Link to `obj`'s source on GitHub, with its line number."
    try:
        fn = Path(inspect.getsourcefile(inspect.unwrap(getattr(obj, 'fget', None) or obj))).resolve()
        rel = fn.relative_to(Path(cfg.config_path).resolve()).as_posix()
    except (TypeError, OSError, ValueError): return ''
    line = _def_lines(str(fn)).get(name)
    return f"{cfg.git_url.rstrip('/')}/blob/{cfg.branch}/{rel}" + (f'#L{line}' if line else '')

def _highlight(code: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return highlight(code, PythonLexer(), HtmlFormatter(cssclass='highlight hl-ipython3', nowrap=False))

def _md(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    return markdown2html_mistune(text)

def _fmt(v) -> str: return getattr(v, '__name__', None) or repr(v)

def _annotations(obj) -> dict:
    "Parameter annotations as written in the source (fastcore infers `NoneType` from a `None` default)."
    try: ps = inspect.signature(obj).parameters
    except (TypeError, ValueError): return {}
    return {k: p.annotation for k, p in ps.items() if p.annotation is not inspect.Parameter.empty}

def param_rows(obj, dm=None) -> list:
    "(argument, type, default, details) for every argument of `obj`, details from fastcore `docments` (or `dm`)."
    from fastcore.docments import docments
    empty = inspect.Parameter.empty
    if dm is None:
        try: dm = docments(obj, full=True)
        except (TypeError, ValueError): return []
    annos, rows = _annotations(obj), []
    for nm, d in dm.items():
        if nm in ('self', 'return'): continue
        anno = annos.get(nm, empty)
        anno = '' if anno is empty else anno if isinstance(anno, str) else inspect.formatannotation(anno)
        default = '' if d.get('default', empty) is empty else _fmt(d['default'])
        rows.append((nm, anno, default, d.get('docment') or ''))
    return rows

def showdoc_html(obj, name: str, cfg, anchors=()) -> str:
    "A `show_doc` block for `obj`: anchor, source link, name, signature with docments, docstring, argument table."
    from nbdev.showdoc import BasicMarkdownRenderer
    r = BasicMarkdownRenderer(obj, name=name)
    url = _source_url(obj, name, cfg)
    parts = [f'<div class="ck-showdoc" id="{html.escape(name.lower())}">']
    parts += [f'<span id="{html.escape(a)}"></span>' for a in anchors]
    if url: parts.append(f'<a class="ck-source" href="{html.escape(url)}" target="_blank">source</a>')
    parts.append(f'<h3 class="ck-name"><code>{html.escape(name)}</code></h3>')
    sig = str(r.dm)
    if inspect.isclass(obj): sig = re.sub(r'^def ', 'class ', sig)
    parts.append(f'<div class="ck-signature">{_highlight(sig)}</div>')
    if r.docs: parts.append(f'<div class="ck-doc">{_md(r.docs)}</div>')
    rows = param_rows(obj, getattr(r.dm, 'dm', None))
    if rows:
        parts.append('<table class="ck-params"><thead><tr><th>argument</th><th>type</th><th>default</th><th>details</th>'
                     '</tr></thead><tbody>')
        for nm, anno, default, doc in rows:
            parts.append(f'<tr><td><code>{html.escape(nm)}</code></td><td><code>{html.escape(anno)}</code></td>'
                         f'<td><code>{html.escape(default)}</code></td><td>{_md(doc) if doc else ""}</td></tr>')
        parts.append('</tbody></table>')
    parts.append('</div>')
    return '\n'.join(parts)

def _member_anchors(module: str, name: str) -> list:
    "Anchors `_modidx.py` gives the members of class `name` (`data.html#groupedimages.take`), to place at its block."
    try: syms = importlib.import_module(f"{module.split('.')[0]}._modidx").d['syms'].get(module, {})
    except (ImportError, AttributeError): return []
    pre = f'{module}.{name}.'
    return [url.split('#', 1)[1] for key, (url, _) in syms.items() if key.startswith(pre) and '#' in url]

# --- processing one notebook -----------------------------------------------------------------------------------

_re_defaultexp = re.compile(r'^\s*#\|\s*default_exp\s+(\S+)', flags=re.MULTILINE)
_re_quarto = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_HIDDEN = {'hide', 'exporti', 'default_exp'}

def default_exp(path) -> str | None:
    "The module a notebook exports to (its `#| default_exp`)."
    from execnb.nbio import read_nb
    for c in read_nb(path).cells:
        if c.cell_type == 'code' and (m := _re_defaultexp.search(c.source)): return m.group(1)
    return None

def _html_output(text: str) -> dict:
    return dict(output_type='display_data', metadata={}, data={'text/html': text.splitlines(True)})

def _showdoc_cell(obj, name, module, cfg):
    from execnb.nbio import mk_cell
    c = mk_cell('', 'code')
    c.outputs = [_html_output(showdoc_html(obj, name, cfg, _member_anchors(module, name)))]
    c.metadata = dict(transient=dict(remove_source=True), tags=['ck-showdoc'])
    return c

def add_showdoc_cells(nb, path, lib_name, cfg):
    "After every `#| export` / `#| exports` cell, a block for each function and class it defines."
    from nbdev.processors import _want_doc, _def_names, _show_docs, _get_nm
    from execnb.nbio import NbCell
    trees = [t for c in nb.cells for t in (NbCell.parsed_(c) or [])]
    shown = {_get_nm(t) for t in _show_docs(trees)}
    exp = default_exp(path)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if not _want_doc(cell): continue
        target = (cell.directives_.get('export') or cell.directives_.get('exports') or [None])[0] or exp
        if target is None: raise BuildError(f'{path.name}: an exported cell but no `#| default_exp`')
        module = target if target.startswith(lib_name + '.') else f'{lib_name}.{target}'
        for nm in _def_names(cell, shown):
            try: obj = resolve(module, nm)
            except (ImportError, AttributeError) as e:
                raise BuildError(f'{path.name}: `{nm}` is exported to {module} but not found there ({e}). '
                                 f'Run nbdev_export.') from None
            cells.append(_showdoc_cell(obj, nm, module, cfg))
    nb.cells = cells

def quarto_options(cell):
    "Apply the Quarto cell options nbdev leaves in the source (`echo`, `output`, `include`), then drop them."
    if cell.cell_type != 'code' or not cell.source: return
    lines, opts = cell.source.splitlines(True), {}
    while lines and (m := _re_quarto.match(lines[0])): opts[m.group(1)] = m.group(2).lower(); lines.pop(0)
    cell.source = ''.join(lines)
    if opts.get('include') == 'false': del cell['source']; return
    if opts.get('echo') == 'false': cell.metadata.setdefault('transient', {})['remove_source'] = True
    if opts.get('output') == 'false': cell.outputs = []

def rm_hidden(cell):
    "Remove `#| hide`, `#| exporti` and `#| default_exp` cells (`#| export` cells stay, shown as code)."
    if cell.directives_ and (cell.directives_.keys() & _HIDDEN): del cell['source']

def _local_file(ref: str, nb_dir: Path):
    "The file a relative link in a notebook means: next to the notebook, or (README style) from the repo root."
    for base in (nb_dir, ROOT):
        p = (base/ref).resolve()
        if p.is_file(): return p
    return None

_re_md_img = re.compile(r'(!\[[^\]]*\]\()([^)\s]+)((?:\s+"[^"]*")?\))')
_re_html_img = re.compile(r'(<img\s[^>]*?src=")([^"]+)(")')

def embed_images(cell, path):
    "Markdown images with a local path become data URIs, so every page is one self-contained file."
    if cell.cell_type != 'markdown' or not cell.source: return
    def sub(m):
        ref = m.group(2)
        if re.match(r'^[a-z]+:', ref) or ref.startswith('#'): return m.group(0)
        f = _local_file(ref, path.parent)
        if f is None: raise BuildError(f'{path.name}: image {ref!r} not found (next to the notebook or in the repository)')
        mime = mimetypes.guess_type(f.name)[0] or 'application/octet-stream'
        return f'{m.group(1)}data:{mime};base64,{base64.b64encode(f.read_bytes()).decode()}{m.group(3)}'
    cell.source = _re_html_img.sub(sub, _re_md_img.sub(sub, cell.source))

def drop_empty(nb):
    "Drop code cells left with neither source nor output (e.g. a cell that only held a magic)."
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and not c.source.strip() and not c.get('outputs'))]

def title_cell(nb, fm, fallback):
    "Put the notebook's title and description (read by nbdev's FrontmatterProc) back on top, as markdown."
    from execnb.nbio import mk_cell
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.lstrip().startswith('---'))]
    head = f"# {fm.get('title', fallback)}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
    nb.cells.insert(0, mk_cell(head, 'markdown'))

def prepare(path: Path, cfg):
    "`path` processed for the docs: (notebook as nbformat node, title)."
    import nbformat
    from execnb.nbio import read_nb, nb2str
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.processors import (populate_language, strip_ansi, hide_line, filter_stream_, rm_header_dash, hide_,
                                  clean_magics, add_links, strip_hidden_metadata)
    nb = read_nb(path)
    proc = NBProcessor(nb=nb, procs=[FrontmatterProc, populate_language, strip_ansi, hide_line, filter_stream_,
                                     rm_header_dash, hide_, rm_hidden, clean_magics, add_links, strip_hidden_metadata])
    proc.process()
    nb = proc.nb
    fm = getattr(nb, 'frontmatter_', {}) or {}
    add_showdoc_cells(nb, path, cfg.lib_name, cfg)
    for c in nb.cells: quarto_options(c)
    nb.cells = [c for c in nb.cells if getattr(c, 'source', None) is not None]
    for c in nb.cells: embed_images(c, path)
    drop_empty(nb)
    title = fm.get('title', path.stem)
    title_cell(nb, fm, title)
    nb.metadata['title'] = title
    return nbformat.reads(nb2str(nb), as_version=4), title

# --- HTML ------------------------------------------------------------------------------------------------------

CSS = """
body.jp-Notebook { padding: 0; }
nav.ck-nav { position: fixed; top: 0; left: 0; bottom: 0; width: 230px; overflow-y: auto; padding: 16px 12px;
  border-right: 1px solid #ddd; background: #fafafa; font-family: system-ui, sans-serif; font-size: 14px; }
nav.ck-nav a { display: block; padding: 4px 6px; color: #1a5fb4; text-decoration: none; border-radius: 4px; }
nav.ck-nav a:hover { background: #eee; }
nav.ck-nav a.ck-current { background: #e3ecfa; font-weight: 600; }
nav.ck-nav .ck-site { font-weight: 700; font-size: 16px; margin-bottom: 10px; color: #222; }
main { margin-left: 250px; max-width: 1100px; padding: 16px 24px; }
.ck-showdoc { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; margin: 8px 0 18px; background: #fff; }
.ck-showdoc h3.ck-name { margin: 4px 0 8px; }
.ck-source { float: right; font-size: smaller; }
table.ck-params { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
table.ck-params th, table.ck-params td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
table.ck-params td p { margin: 0; }
@media (max-width: 800px) { nav.ck-nav { position: static; width: auto; border: 0; } main { margin-left: 0; } }
"""

def nav_html(pages, current) -> str:
    "The sidebar: the site's name, then one link per page (index first)."
    from nbdev.config import get_config
    cur = ' class="ck-current"'
    links = [f'<a href="{p}"{cur if p == current else ""}>{html.escape(t)}</a>' for p, t in pages]
    return f'<nav class="ck-nav"><div class="ck-site">{html.escape(get_config().title)}</div>\n' + '\n'.join(links) + '</nav>'

def _fix_links(text: str, pages: set, site_url: str) -> str:
    "Links to the published site or to a notebook become links to the page built here."
    text = text.replace(f'href="{site_url}', 'href="')
    def sub(m):
        ref = m.group(1)
        if re.match(r'^[a-z]+:', ref): return m.group(0)
        base, _, anchor = ref.partition('#')
        name = page_name(base)
        return f'href="{name}{"#" + anchor if anchor else ""}"' if name in pages else m.group(0)
    return re.sub(r'href="([^"]+?\.ipynb(?:#[^"]*)?)"', sub, text)

def render(nb, exporter, pages, current, site_url) -> str:
    "The notebook as one HTML page with the sidebar."
    body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': nb.metadata.get('title', current)}})
    body = body.replace('</head>', f'<style>{CSS}</style>\n</head>', 1)
    body, n = re.subn(r'(<body[^>]*>)', lambda m: m.group(1) + '\n' + nav_html(pages, current), body, count=1)
    if not n: raise BuildError(f'{current}: the HTML exporter wrote no <body>')
    return _fix_links(body, {p for p, _ in pages}, site_url)

def _trusted(html_text): return html_text

def make_exporter():
    "nbconvert's JupyterLab-style HTML exporter, without prompts."
    # the notebooks are this repository's own: their HTML is not re-sanitised (bleach on every cell is most of the time)
    import logging
    from nbconvert import HTMLExporter
    ex = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True,
                      filters={'clean_html': _trusted})
    ex.log.setLevel(logging.ERROR)   # figures have no alt text; nbconvert would warn once per page
    return ex

def build(out: Path, nbs: Path = None) -> list:
    "Build every page into `out`; returns the page paths. Raises `BuildError` naming the notebook."
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    nbs = Path(nbs or cfg.nbs_path)
    paths = notebooks(nbs)
    if not paths: raise BuildError(f'no notebooks in {nbs}')
    prepared = []
    for p in paths:
        try: prepared.append((p, *prepare(p, cfg)))
        except BuildError: raise
        except Exception as e: raise BuildError(f'{p.name} cannot be processed: {type(e).__name__}: {e}') from e
    pages = [(page_name(p), (f"{m.group(1)} " if (m := re.match(r'(\d+[a-zA-Z0-9]*)_', p.name)) else '') + t) for p, _, t in prepared]
    pages = [pg for pg in pages if pg[0] == 'index.html'] + [pg for pg in pages if pg[0] != 'index.html']
    site_url = cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/') + '/'
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    exporter, written = make_exporter(), []
    for p, nb, _ in prepared:
        try: text = render(nb, exporter, pages, page_name(p), site_url)
        except BuildError: raise
        except Exception as e: raise BuildError(f'{p.name} cannot be rendered: {type(e).__name__}: {e}') from e
        dest = out/page_name(p)
        dest.write_text(text, encoding='utf-8')
        written.append(dest)
    if not (out/'index.html').exists():
        links = ''.join(f'<li><a href="{p}">{html.escape(t)}</a></li>' for p, t in pages)
        (out/'index.html').write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>{cfg.title}</title>'
                                      f'</head><body><h1>{cfg.title}</h1><ul>{links}</ul></body></html>', encoding='utf-8')
    (out/'.nojekyll').touch()
    return written

def verify(out: Path, nbs: Path) -> list:
    "Pages a notebook should have but `out` lacks (or that are empty)."
    return [f'{p.name} -> {page_name(p)}' for p in notebooks(nbs)
            if not (out/page_name(p)).is_file() or (out/page_name(p)).stat().st_size == 0]

def main(argv=None):
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog='\n'.join(__doc__.splitlines()[1:]))
    ap.add_argument('--out', type=Path, default=Path(cfg.config_path)/cfg.doc_path, help='output folder (default: _docs)')
    ap.add_argument('--nbs', type=Path, default=Path(cfg.nbs_path), help='notebook folder (default: nbs)')
    args = ap.parse_args(argv)
    try: written = build(args.out, args.nbs)
    except BuildError as e: print(f'make_docs: error: {e}', file=sys.stderr); return 1
    missing = verify(args.out, args.nbs)
    if missing: print(f'make_docs: error: pages missing: {", ".join(missing)}', file=sys.stderr); return 1
    size = sum(f.stat().st_size for f in args.out.rglob('*') if f.is_file())
    print(f'wrote {len(written)} pages ({size/1e6:.1f} MB) to {args.out}')
    for f in written: print(f'  {f.name:28s} {f.stat().st_size/1e3:8.1f} KB')
    return 0

if __name__ == '__main__': sys.exit(main())
