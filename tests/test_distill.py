"configkd.distill: KD loss against torchmetrics, bad input, and resume-after-crash equality."
import os
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from torchmetrics.functional import kl_divergence
from configkd.data import spurious_digits, DigitsConfig, GroupedImages
from configkd.models import get_teacher
from configkd.distill import kd_loss, DistillConfig, Distiller, oracle_augmenter, run_method, final_metrics, cutmix

@pytest.mark.parametrize('T', [1.0, 2.0, 4.0, 10.0])
def test_kd_loss_against_torchmetrics(T):
    g = torch.Generator().manual_seed(int(T))
    s, t = torch.randn(16, 5, generator=g) * 3, torch.randn(16, 5, generator=g) * 3
    ref = T * T * kl_divergence(F.softmax(t / T, -1), F.softmax(s / T, -1), log_prob=False, reduction='mean')
    assert kd_loss(s, t, T=T).item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)

def test_kd_loss_alpha_mix():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    want = 0.7 * kd_loss(s, t, T=2.0) + 0.3 * F.cross_entropy(s, y)
    assert kd_loss(s, t, T=2.0, alpha=0.3, labels=y).item() == pytest.approx(want.item(), rel=1e-6)

def test_bad_input():
    with pytest.raises(ValueError, match=r"`T` \(temperature\) must be > 0"): kd_loss(torch.randn(2, 2), torch.randn(2, 2), T=-1)
    with pytest.raises(ValueError, match="same shape"): kd_loss(torch.randn(2, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="`alpha`"): kd_loss(torch.randn(2, 2), torch.randn(2, 2), alpha=2)
    with pytest.raises(ValueError, match="`period` must be >= 1"): DistillConfig(period=0)
    with pytest.raises(ValueError, match=r"`ratio` must lie in \(0, 1\]"): DistillConfig(ratio=1.5)
    with pytest.raises(ValueError, match=r"`ratio` must lie in \(0, 1\]"): DistillConfig(ratio=0)
    with pytest.raises(ValueError, match="do not fit"): DistillConfig(epochs=10, period=5, rounds=2)
    with pytest.raises(ValueError, match="unknown `method`"): run_method('kd_magic', None, {})
    with pytest.raises(TypeError, match=r"got a dict whose 'train' is NoneType"): run_method('kd_config', None, {'train': None})
    tiny = GroupedImages(torch.rand(4, 3, 16, 16), [0, 1, 0, 1], [0, 1, 1, 0])
    with pytest.raises(ValueError, match="needs the diffusion model"): run_method('kd_config', None, {'train': tiny})

def test_cutmix_keeps_range_and_mixes():
    x = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)] * 4)
    m = cutmix(x, torch.Generator().manual_seed(0))
    assert m.shape == x.shape and 0 <= m.min() and m.max() <= 1

def _distiller(ckpt, data, teacher):
    cfg = DistillConfig(epochs=5, period=1, rounds=3, ratio=0.1, bs=64, recon=False)
    return Distiller(teacher, data['train'], cfg, oracle_augmenter(DigitsConfig()), test=data.get('test'), ckpt=ckpt, progress=False)

def test_resume_after_a_round_gives_identical_results(tmp_path):
    data, teacher = spurious_digits(splits=['train', 'test']), get_teacher(progress=False)
    full = _distiller(tmp_path/'a.pt', data, teacher).run()
    part = _distiller(tmp_path/'b.pt', data, teacher).run(stop_after=2)   # "crash" after the first round and one more epoch
    assert part.history.epoch.max() == 2 and len(part.rounds) == 1
    resumed = _distiller(tmp_path/'b.pt', data, teacher).run()          # a new process would do exactly this
    assert len(resumed.rounds) == 3 and len(resumed.pool) == len(full.pool)
    for k, v in full.student.state_dict().items(): assert torch.equal(v, resumed.student.state_dict()[k]), k
    assert final_metrics(full, data['test']) == final_metrics(resumed, data['test'])
    assert full.history.drop(columns=[]).equals(resumed.history)
    assert not list(tmp_path.glob('.*.tmp'))                             # nothing half-written left behind

def test_corrupt_or_foreign_checkpoint(tmp_path):
    data, teacher = spurious_digits(splits=['train']), get_teacher(progress=False)
    (tmp_path/'c.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match="corrupt or truncated"): _distiller(tmp_path/'c.pt', data, teacher).run()
    d = _distiller(tmp_path/'d.pt', data, teacher); d.run(stop_after=1)
    other = Distiller(teacher, data['train'], DistillConfig(epochs=6, period=1, rounds=3, ratio=0.1, recon=False),
                      oracle_augmenter(DigitsConfig()), ckpt=tmp_path/'d.pt', progress=False)
    with pytest.raises(ValueError, match="another DistillConfig"): other.run()


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    "Determinism on CPU: two fresh runs with one seed give identical metrics, weights and pool; another seed does not."
    data, teacher = spurious_digits(splits=['train', 'test']), get_teacher(progress=False)
    mk = lambda seed: Distiller(teacher, data['train'], DistillConfig(epochs=4, period=1, rounds=2, ratio=0.1, bs=64, recon=False, seed=seed),
                                oracle_augmenter(DigitsConfig(), run_seed=seed), test=data['test'], progress=False).run()
    a, b, c = mk(0), mk(0), mk(1)
    assert final_metrics(a, data['test']) == final_metrics(b, data['test'])
    for k, v in a.student.state_dict().items(): assert torch.equal(v, b.student.state_dict()[k]), k
    assert torch.equal(a.pool.images, b.pool.images) and a.history.equals(b.history)
    assert not all(torch.equal(v, c.student.state_dict()[k]) for k, v in a.student.state_dict().items())

def test_empty_rounds_keep_training():
    "A round that yields nothing (every image filtered out) leaves the pool empty and training goes on; empty train is refused."
    data, teacher = spurious_digits(splits=['train']), get_teacher(progress=False)
    nothing = lambda student, train, idx, r: (train[idx[:0]], {'n': len(idx), 'added': 0})
    d = Distiller(teacher, data['train'], DistillConfig(epochs=3, period=1, rounds=2, ratio=0.1, recon=False), nothing, progress=False).run()
    assert d.pool is None and len(d.rounds) == 2 and (d.rounds.added == 0).all() and d.rounds.pool.eq(0).all()
    assert len(d.history) == 3 and d.history.n_train.eq(round(4.0 * len(data['train']))).all()   # epoch_size 4: the same budget every epoch
    with pytest.raises(ValueError, match="`train` is empty"): Distiller(teacher, data['train'][:0], progress=False)


DDP_SCRIPT = r'''
import sys, hashlib, torch
from dataclasses import replace
from accelerate import Accelerator
from configkd.data import DigitsConfig, spurious_digits
from configkd.models import get_teacher
from configkd.distill import Distiller, distill_preset
torch.set_num_threads(1)
out = sys.argv[1]
acc = Accelerator(cpu=True)
dc = DigitsConfig(); train = spurious_digits(dc, splits=('train',))['train']
cfg = replace(distill_preset('tiny')[0], epochs=2, rounds=0, recon=False)
d = Distiller(get_teacher(dc, progress=False), train, cfg, progress=False, accelerator=acc, ckpt=f'{out}/ckpt.pt').run()
h = hashlib.sha1(b''.join(p.detach().numpy().tobytes() for p in d.student.parameters())).hexdigest()   # BN running stats stay per rank
open(f'{out}/rank{acc.process_index}.txt', 'w').write(f'{acc.num_processes} {h} {d.history.loss.iloc[-1]:.6f}')
'''


def test_distiller_ddp_two_processes(tmp_path):
    "Under a 2-process launch (gloo on CPU) the DDP-wrapped students stay identical across ranks; one checkpoint is written."
    import shutil, subprocess, sys
    from configkd.models import get_teacher
    get_teacher(progress=False)                       # cached before two processes race for it
    script = tmp_path/'ddp.py'; script.write_text(DDP_SCRIPT)
    torchrun = shutil.which('torchrun', path=str(Path(sys.executable).parent)) or shutil.which('torchrun')
    r = subprocess.run([torchrun, '--nproc_per_node', '2', str(script), str(tmp_path)], capture_output=True, text=True,
                       timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [(tmp_path/f'rank{i}.txt').read_text().split() for i in range(2)]
    assert ranks[0][0] == ranks[1][0] == '2'          # two processes really ran
    assert ranks[0][1] == ranks[1][1]                 # the same parameters on both ranks after DDP steps (averaged gradients)
    assert (tmp_path/'ckpt.pt').exists() and not list(tmp_path.glob('*.tmp'))


ROUNDS_SCRIPT = r'''
import sys, json, hashlib, torch
from accelerate import Accelerator
from configkd.data import DigitsConfig, spurious_digits
from configkd.models import ConvNet
from configkd.diffusion import DiffusionConfig, PixelDenoiser, make_unet, GuideConfig
from configkd.distill import Distiller, DistillConfig, config_augmenter
out, world = sys.argv[1], sys.argv[2]
acc = Accelerator(cpu=True) if world == '2' else None
train = spurious_digits(DigitsConfig(), splits=('train',))['train'][:240]
torch.manual_seed(0); t = ConvNet(2).eval(); torch.manual_seed(1); den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
aug = config_augmenter(den, t, GuideConfig(steps=3, t_min=0, bs=8), purify=0.0, pair_recon=True)
calls = []
def counted(student, tr, idx, r):
    calls.append(int(idx[0])); return aug(student, tr, idx, r)
counted.chunk = aug.chunk
cfg = DistillConfig(epochs=2, period=1, rounds=1, ratio=0.1, recon=False, bs=32)
d = Distiller(t, train, cfg, counted, den, progress=False, accelerator=acc)
st = d._prepare(d._init_state())          # the same fresh student everywhere (training would differ: DDP averages gradients)
d._round(st, 0)
h = hashlib.sha1(st['pool'].images.numpy().tobytes() + st['pool_logits'].numpy().tobytes()).hexdigest()
rank = acc.process_index if acc is not None else 0
open(f'{out}/w{world}-rank{rank}.json', 'w').write(json.dumps({'pool': h, 'n': len(st['pool']), 'calls': calls,
                                                             'added': int(st['rounds'][0]['added'])}))
'''


def test_rounds_split_across_two_processes_match_one(tmp_path):
    "Under a 2-process launch each process generates every other chunk of a round; all end with one process's pool, bit for bit."
    import json, shutil, subprocess, sys
    script = tmp_path/'rounds.py'; script.write_text(ROUNDS_SCRIPT)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    subprocess.run([sys.executable, str(script), str(tmp_path), '1'], check=True, timeout=600, env=env)
    torchrun = shutil.which('torchrun', path=str(Path(sys.executable).parent)) or shutil.which('torchrun')
    r = subprocess.run([torchrun, '--nproc_per_node', '2', str(script), str(tmp_path), '2'], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    one = json.loads((tmp_path/'w1-rank0.json').read_text())
    ranks = [json.loads((tmp_path/f'w2-rank{i}.json').read_text()) for i in range(2)]
    assert ranks[0]['pool'] == ranks[1]['pool'] == one['pool'] and ranks[0]['n'] == one['n']
    assert len(one['calls']) >= 2 and sorted(ranks[0]['calls'] + ranks[1]['calls']) == sorted(one['calls'])   # each chunk once
    assert ranks[0]['calls'] and ranks[1]['calls'] and not set(ranks[0]['calls']) & set(ranks[1]['calls'])
