#!/usr/bin/env python
"""Wall time and peak memory of the README demo (`configkd_bench`), end to end and per stage, measured in one run.

    python scripts/bench_demo.py                          # default preset, seeds 0,1,2, the usual model cache
    python scripts/bench_demo.py --fresh-cache            # "from nothing": an empty model cache (teacher, checker, ERM students)
    python scripts/bench_demo.py --preset tiny --seeds 0  # a quick look

Stages: `prepare` (data, teacher, digit checker, diffusion model) and one line per (method, seed) run; a run's peak
memory is the resident-set peak of the process that ran it (the main process, or its worker). Prints ratios of one
run, never compares against a stored time.
"""
import argparse, json, os, resource, shutil, sys, tempfile, time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='default')
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--methods', default=None)
    ap.add_argument('--workers', type=int, default=0, help='0: one per CPU core, at most 8 (as the CLI)')
    ap.add_argument('--fresh-cache', action='store_true', help='use an empty model cache (measures training the teacher etc. too)')
    ap.add_argument('--keep', default=None, help='output folder to keep (default: a temporary folder, removed)')
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='configkd_bench_demo_'))
    if a.fresh_cache: os.environ['CONFIGKD_CACHE'] = str(tmp/'cache')
    out = Path(a.keep) if a.keep else tmp/'out'
    if out.exists(): sys.exit(f"--keep {out} exists; give a new folder (a rerun would skip the finished runs).")
    t0 = time.time()
    import torch
    from configkd.benchmark import BenchConfig, BENCH_METHODS, prepare, run_benchmark, save_results, markdown_table, default_workers
    workers = a.workers or default_workers()
    bc = BenchConfig(a.preset, a.seeds, a.methods or ','.join(BENCH_METHODS), workers=workers)
    t_import = time.time() - t0
    ctx = prepare(bc, progress=False)
    t_prep = time.time() - t0 - t_import
    rows = run_benchmark(bc, out, progress=False, ctx=ctx, log=lambda *_: None)
    t1 = time.time(); save_results(rows, out, ctx); t_save = time.time() - t1
    wall = time.time() - t0
    info = json.loads((out/'run_info.json').read_text())
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(markdown_table(rows))
    print(f"\npreset {a.preset}, seeds {a.seeds}, {workers} worker(s), {info['machine']}, torch {info['torch']}, "
          f"{'empty' if a.fresh_cache else 'existing'} model cache")
    print(f"\n{'stage':<56} {'seconds':>8} {'share':>6} {'peak MB':>8}")
    stages = [{'stage': 'import', 'seconds': t_import, 'peak_mb': None},
              {'stage': 'prepare (data, teacher, checker, diffusion model)', 'seconds': t_prep, 'peak_mb': peak_self}]
    stages += [s for s in info['stages'] if not s['stage'].startswith('prepare')]
    stages += [{'stage': 'results, table and plots', 'seconds': t_save, 'peak_mb': None}]
    for s in stages:
        pm = f"{s['peak_mb']:.0f}" if s.get('peak_mb') else ''
        print(f"{s['stage']:<56} {s['seconds']:>8.1f} {s['seconds'] / wall:>6.1%} {pm:>8}")
    busy = sum(s['seconds'] for s in info['stages'] if not s['stage'].startswith('prepare'))
    print(f"\nend to end: {wall:.0f} s wall ({wall / 60:.1f} min); run time summed over runs {busy:.0f} s "
          f"(parallel speed-up {busy / max(info['wall_seconds'], 1e-9):.2f}x over the run phase); "
          f"peak memory: main process {peak_self:.0f} MB, largest worker {peak_kids:.0f} MB")
    if not a.keep: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
