"""Scale-out and crash safety of the generation CLI `configkd_generate` (configkd.store.generate_cli).

- two processes under `accelerate launch --multi_gpu --num_processes 2` (gloo on CPU) give the same manifest and
  bit-identical images as one process with the same seed;
- a run killed with SIGKILL after the first shard, mid-way and while the manifest is written completes on rerun with
  every image exactly once, nothing corrupt and no temporary file left;
- two fresh runs with the same seed are bit-identical; another run seed gives other images.

The killed runs are forked from this process (the imports are already paid, so each run starts in well under a
second); the two-process run goes through the real launcher and the installed console script.
"""
import json, multiprocessing as mp, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest
import torch

from configkd.models import get_teacher, get_erm_student
import configkd.store as D
from configkd.store import GenStore, generate_cli

torch.set_num_threads(1)
ARGS = dict(n_sources=32, steps=6, shard_size=8, threads=1)      # 4 shards of 8 sources
N_SHARDS = 4


@pytest.fixture(scope='module', autouse=True)
def _models():
    "The cached teacher and ERM student the CLI uses (trained once per cache, loaded instantly afterwards)."
    get_teacher(progress=False); get_erm_student(progress=False)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "A one-process run (in this process), the reference every other run must equal."
    out = tmp_path_factory.mktemp('ref')/'gen'
    generate_cli(out=str(out), quiet=True, **ARGS)
    return out


def _cli_args(kw):
    return [a for k, v in kw.items() for a in (f'--{k}', str(v))]


def _images(out):
    st = GenStore(out)
    return {n: st.read(n)[0] for n in st.names()}


def _assert_same_run(a, b):
    "Identical manifest files and bit-identical images, shard by shard."
    assert (Path(a)/'manifest.csv').read_bytes() == (Path(b)/'manifest.csv').read_bytes()
    xa, xb = _images(a), _images(b)
    assert list(xa) == list(xb) == [f'r000-{k:05d}' for k in range(N_SHARDS)]
    for n in xa: assert torch.equal(xa[n], xb[n]), n


def _assert_complete(out):
    "Every source exactly once, every shard loads, the manifest agrees with the shards, no temporary file."
    st = GenStore(out)
    m = pd.read_csv(Path(out)/'manifest.csv')
    assert len(m) == ARGS['n_sources'] and m.src.is_unique
    assert m.idx.tolist() == st.meta['sources']                     # in source order, shard after shard
    assert len(st.load(kept_only=False)) == ARGS['n_sources']
    assert not list(Path(out).glob('*.tmp')) and not list(Path(out).glob('.*.tmp'))


def test_two_processes_match_one(reference, tmp_path):
    out = tmp_path/'gen2'
    cmd = ['accelerate', 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
           '--dynamo_backend', 'no', shutil.which('configkd_generate'), '--out', str(out), '--quiet', *_cli_args(ARGS)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    assert r.returncode == 0, r.stderr[-3000:]
    st = GenStore(out)
    writers = [st.writer(n) for n in st.names()]
    assert {w['world'] for w in writers} == {2}
    assert sorted(w['rank'] for w in writers) == [0, 0, 1, 1]              # shards 0, 2 by rank 0; 1, 3 by rank 1
    assert len({w['pid'] for w in writers}) == 2                             # two real processes
    assert [w['rank'] for w in writers] == [0, 1, 0, 1]
    assert GenStore(reference).writer('r000-00000')['world'] == 1
    _assert_same_run(reference, out)


def _child(out, kw, slow_manifest):
    "Runs in a forked child: the CLI, optionally with a manifest write that stalls half-way (to be killed there)."
    if slow_manifest:
        def stalled(self, fname='manifest.csv'):
            (self.root/f'.{fname}.{os.getpid()}.stalled.tmp').write_text('half a manifest')   # as atomic_write names it
            time.sleep(60)
        D.GenStore.write_manifest = stalled
    D.generate_cli(out=str(out), quiet=True, **kw)
    os._exit(0)


def _run_and_kill(out, until, slow_manifest=False, timeout=120):
    "Fork a generation run, SIGKILL it as soon as `until()` holds; returns whether it was killed (not finished)."
    p = mp.get_context('fork').Process(target=_child, args=(out, ARGS, slow_manifest))
    p.start()
    t0 = time.time()
    while p.is_alive() and time.time() - t0 < timeout:
        if until(): break
        time.sleep(0.01)
    killed = p.is_alive()
    if killed: os.kill(p.pid, signal.SIGKILL)
    p.join()
    return killed


def _n_shards(out): return len(list(Path(out).glob('r*.safetensors')))


def test_killed_at_several_points_resumes_exactly(reference, tmp_path):
    out = tmp_path/'killed'
    # 1. killed after the first shard (while generating the second)
    assert _run_and_kill(out, lambda: _n_shards(out) >= 1)
    k1 = _n_shards(out); assert 1 <= k1 < N_SHARDS and not (out/'manifest.csv').exists()
    for n in GenStore(out).names(): GenStore(out).read(n)                  # what exists is whole
    # 2. rerun, killed mid-way (once more shards exist)
    target = min(k1 + 1, N_SHARDS - 1)
    assert _run_and_kill(out, lambda: _n_shards(out) >= target)
    k2 = _n_shards(out); print(f"killed with {k1}, then {k2} of {N_SHARDS} shards done")
    assert target <= k2 <= N_SHARDS and not (out/'manifest.csv').exists()
    # 3. rerun, killed while the manifest is being written (every shard done, a half-written temp file)
    assert _run_and_kill(out, lambda: bool(list(out.glob('.manifest.csv.*.tmp'))), slow_manifest=True)
    assert _n_shards(out) == N_SHARDS and not (out/'manifest.csv').exists() and list(out.glob('.*.tmp'))
    # 4. rerun to the end
    assert not _run_and_kill(out, lambda: False)
    _assert_complete(out)
    _assert_same_run(reference, out)
    # each shard was written once: its writer's pid belongs to the run that made it (no shard rewritten on rerun)
    assert len({GenStore(out).writer(n)['pid'] for n in GenStore(out).names()}) >= 2


def test_fresh_runs_are_deterministic(reference, tmp_path):
    a = tmp_path/'again'
    assert not _run_and_kill(a, lambda: False)                              # a fresh process, same seed
    _assert_same_run(reference, a)
    _assert_complete(a)
    b = tmp_path/'other_seed'
    generate_cli(out=str(b), quiet=True, run_seed=1, **ARGS)
    ma, mb = pd.read_csv(a/'manifest.csv'), pd.read_csv(b/'manifest.csv')
    assert ma.src.tolist() == mb.src.tolist() and (ma.seed != mb.seed).all()  # same sources, other per-image seeds
    xa, xb = _images(a), _images(b)
    assert all((xa[n] - xb[n]).abs().flatten(1).amax(1).min() > 1e-3 for n in xa)   # every image differs


def _cli_error(capsys, **kw):
    "Run the CLI in-process; return the one error line it printed (it must exit with status 2)."
    with pytest.raises(SystemExit) as e: generate_cli(quiet=True, **kw)
    assert e.value.code == 2
    return capsys.readouterr().err.strip()

def test_rerun_with_other_settings_is_refused(reference, tmp_path, capsys):
    out = tmp_path/'copy'; shutil.copytree(reference, out)
    assert 'other settings' in _cli_error(capsys, out=str(out), **{**ARGS, 'scale': 0.5})
    assert '--start_from' in _cli_error(capsys, out=str(out), start_from='text', **ARGS)
    assert '--n_sources' in _cli_error(capsys, out=str(out), **{**ARGS, 'n_sources': -1})


def test_student_from_a_saved_folder(tmp_path):
    "`--student PATH`: sources are the ones this student is least sure of, and p_S is its probability."
    from configkd.data import spurious_digits
    from configkd.models import make_student, save_model, predict_proba
    torch.manual_seed(5); s = make_student().eval(); save_model(s, tmp_path/'stu')
    generate_cli(out=str(tmp_path/'g'), student=str(tmp_path/'stu'), quiet=True, n_sources=4, steps=3, shard_size=4, threads=1)
    m = pd.read_csv(tmp_path/'g'/'manifest.csv')
    train = spurious_digits(splits=['train'])['train']
    p = predict_proba(s, train).gather(1, train.y[:, None])[:, 0]
    assert m.idx.tolist() == p.argsort()[:4].tolist()
    torch.testing.assert_close(torch.tensor(m.p_S_before.tolist()), p[m.idx.tolist()], atol=1e-6, rtol=0)
    assert GenStore(tmp_path/'g').meta['student'] == str(tmp_path/'stu')
