"Hostile input: every misuse gets a clear error that names the argument (or the file and line) before any work."
import math, re, shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from configkd.data import (GroupedImages, DigitsConfig, spurious_digits, drop_groups, load_celeba, load_waterbirds,
                           load_image_folder, check_fields)
from configkd.models import TrainConfig, make_student, fit, predict, get_teacher, save_model, load_model
from configkd.errors import evaluate, group_metrics, decompose
from configkd.diffusion import DiffusionConfig, GuideConfig, make_unet, PixelDenoiser, guided_sample, config_round, train_diffusion, \
    save_diffusion, load_diffusion
from configkd.store import GenStore, generate_to_store
from configkd.distill import DistillConfig, Distiller, run_method
from configkd.tab import TabConfig, kd_fit
from configkd.benchmark import BenchConfig, CelebAConfig
from test_data import _fake_celeba, _fake_waterbirds


@pytest.fixture(scope='module')
def sets():
    d = spurious_digits(splits=('train', 'test'))
    return d['train'][:64], d['test'][:64]

@pytest.fixture(scope='module')
def teacher(): return get_teacher(progress=False)

def nan_model():
    m = make_student()
    with torch.no_grad():
        for p in m.parameters(): p.fill_(float('nan'))
    return m.eval()


# -- settings: every field is checked against the type it declares, at construction
CONFIG_CASES = [
    (DigitsConfig, dict(size=16.0), TypeError, '`size` (DigitsConfig) must be a whole number'),
    (TrainConfig, dict(epochs=2.5), TypeError, '`epochs` (TrainConfig) must be a whole number'),
    (TrainConfig, dict(bs=2.5), TypeError, '`bs` (TrainConfig) must be a whole number'),
    (TrainConfig, dict(seed=2**62), ValueError, '`seed` must lie in [0, 2**31)'),
    (DiffusionConfig, dict(layers_per_block=0), ValueError, '`layers_per_block` must be >= 1'),
    (DiffusionConfig, dict(norm_groups=5), ValueError, '`norm_groups` must be >= 1 and divide every width'),
    (DiffusionConfig, dict(channels=()), ValueError, '`channels` must be one or more whole numbers'),
    (DiffusionConfig, dict(beta_schedule='foo'), ValueError, '`beta_schedule` must be one of'),
    (DiffusionConfig, dict(warmup=-5), ValueError, '`warmup` must be a whole number >= 0'),
    (GuideConfig, dict(scale=True), TypeError, '`scale` (GuideConfig) must be a finite number'),
    (DistillConfig, dict(epochs=4, period=2.5, rounds=1), TypeError, '`period` (DistillConfig) must be a whole number'),
    (DistillConfig, dict(epochs=6, period=2, rounds=1.5), TypeError, '`rounds` (DistillConfig) must be a whole number'),
    (DistillConfig, dict(epochs=True), TypeError, '`epochs` (DistillConfig) must be a whole number'),
    (DistillConfig, dict(seed=2**62), ValueError, '`seed` must lie in [0, 2**31)'),
    (DistillConfig, dict(recon='yes'), TypeError, '`recon` (DistillConfig) must be True or False'),
    (TabConfig, dict(T=float('inf')), ValueError, '`T` (TabConfig) must be a finite number'),
    (TabConfig, dict(lr=float('nan')), ValueError, '`lr` (TabConfig) must be a finite number'),
    (TabConfig, dict(lr=-1), ValueError, '`lr` must be a finite number > 0'),
    (TabConfig, dict(wd=-1), ValueError, '`wd` must be a finite number >= 0'),
    (TabConfig, dict(n_init=0), ValueError, '`n_init` must be >= 1'),
    (TabConfig, dict(epochs=2.5), TypeError, '`epochs` (TabConfig) must be a whole number'),
    (BenchConfig, dict(data={'size': 16}), TypeError, '`data` (BenchConfig) must be a DigitsConfig'),
    (BenchConfig, dict(workers=1.5), TypeError, '`workers` (BenchConfig) must be a whole number'),
    (CelebAConfig, dict(dtype='fp64'), ValueError, "--dtype must be 'fp32', 'fp16' or 'bf16'"),
    (CelebAConfig, dict(seeds=(-1,)), ValueError, '--seeds must be distinct whole numbers'),
    (CelebAConfig, dict(methods=()), ValueError, '--methods is empty'),
    (CelebAConfig, dict(max_train=-1), ValueError, '--max_train must be >= 1'),
]

@pytest.mark.parametrize('cls,kw,exc,msg', CONFIG_CASES, ids=[f"{c.__name__}-{next(iter(k))}" for c, k, *_ in CONFIG_CASES])
def test_settings_refused_at_construction(cls, kw, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)): cls(**kw)

def test_every_settings_class_checks_its_fields():
    "A settings class that forgets `check_fields` would accept a float for an int field: each one is tried."
    for cls in (DigitsConfig, TrainConfig, DiffusionConfig, GuideConfig, DistillConfig, TabConfig, BenchConfig, CelebAConfig):
        f = next(f for f in __import__('dataclasses').fields(cls) if f.type in ('int', int))
        with pytest.raises(TypeError, match=re.escape(f'`{f.name}` ({cls.__name__}) must be a whole number')): cls(**{f.name: 1.5})


# -- data
def test_grouped_images_misuse(sets, tmp_path):
    train, _ = sets
    with pytest.raises(ValueError, match=r'not one-hot rows \(use `y.argmax\(1\)`\)'): GroupedImages(torch.rand(4, 3, 8, 8), torch.eye(2)[[0, 1, 0, 1]])
    with pytest.raises(ValueError, match='`n_classes` must be a whole number'): GroupedImages(torch.rand(4, 3, 8, 8), [0, 0, 0, 0], n_classes=True)
    with pytest.raises(ValueError, match='`bs` must be a whole number'): next(train.batches(bs=2.5))
    (tmp_path/'d').mkdir()
    with pytest.raises(IsADirectoryError, match='`path` .* is a folder: give a file name'): train.save(tmp_path/'d')
    (tmp_path/'f').write_text('x')
    with pytest.raises(NotADirectoryError, match='lies inside .* which is a file'): train.save(tmp_path/'f'/'set.safetensors')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d', 'f'] and not any((tmp_path/'d').iterdir())
    with pytest.raises(TypeError, match=r"`y` must hold integer ids, got strings \(e.g. 'cat'\); map names to ids first"):
        GroupedImages(torch.rand(2, 3, 8, 8), ['cat', 'dog'])
    with pytest.raises(TypeError, match="`a` must hold integer ids"): GroupedImages(torch.rand(2, 3, 8, 8), [0, 1], a=['red', 'blue'])
    with pytest.raises(TypeError, match=r"`splits` must be a list of split names, e.g. \['train'\], got the string 'train'"):
        spurious_digits(splits='train')

@pytest.mark.parametrize('groups,exc,msg', [([1.5], ValueError, '`groups` [1.5] out of range'), (3, TypeError, '`groups` must be a list'),
                                            ('3', TypeError, '`groups` must be a list')])
def test_drop_groups_refuses_non_ids(sets, groups, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)): drop_groups(sets[1], groups)

def _celeba(tmp_path, edit=None):
    c = tmp_path/'celeba'; _fake_celeba(c)
    if edit: edit(c)
    return c

def _edit_lines(name, fn):
    def edit(c):
        lines = (c/name).read_text().splitlines(); (c/name).write_text('\n'.join(fn(lines)) + '\n')
    return edit

@pytest.mark.parametrize('edit,kw,msg', [
    (_edit_lines('list_eval_partition.txt', lambda l: [x.split()[0] + ' 0' for x in l]), dict(split='test'), "puts no image in the 'test' split"),
    (_edit_lines('list_attr_celeba.txt', lambda l: ['99'] + l[1:]), {}, 'line 1 says 99 images but the file lists 8'),
    (_edit_lines('list_eval_partition.txt', lambda l: l[:4]), {}, '4 of the 8 images in list_attr_celeba.txt are not in'),
    (_edit_lines('list_attr_celeba.txt', lambda l: [str(len(l) - 1)] + l[1:] + [l[2]]), {}, 'lists the image 000000.jpg twice'),
    (None, dict(target='Male', spurious='Male'), '`target` and `spurious` are both'),
    (None, dict(max_items=2, seed=-1), '`seed` must be a whole number'),
], ids=['empty-split', 'count', 'partial-partition', 'duplicate', 'same-attribute', 'seed'])
def test_celeba_damage_named(tmp_path, edit, kw, msg):
    c = _celeba(tmp_path, edit)
    with pytest.raises(ValueError, match=re.escape(msg)): load_celeba(c, size=8, **kw)

def test_waterbirds_path_outside_folder(tmp_path):
    w = tmp_path/'wb'; _fake_waterbirds(w)
    outside = tmp_path/'elsewhere.jpg'; Image.new('RGB', (8, 8)).save(outside)
    for bad in (str(outside), '../elsewhere.jpg'):
        lines = (w/'metadata.csv').read_text().splitlines(); p = lines[1].split(','); p[1] = bad; lines[1] = ','.join(p)
        (w/'metadata.csv').write_text('\n'.join(lines) + '\n')
        with pytest.raises(ValueError, match='names image\\(s\\) outside'): load_waterbirds(w, size=8)

def test_image_folder_one_class_and_failing_reader(tmp_path):
    (tmp_path/'i'/'cat').mkdir(parents=True); Image.new('RGB', (8, 8)).save(tmp_path/'i'/'cat'/'0.png')
    with pytest.raises(ValueError, match="has one class \\('cat'\\): a classifier needs at least two"): load_image_folder(tmp_path/'i', size=8)
    (tmp_path/'i'/'dog').mkdir(); Image.new('RGB', (8, 8)).save(tmp_path/'i'/'dog'/'0.png')
    def reader(x): raise RuntimeError('my bug')
    with pytest.raises(RuntimeError, match='`attr_fn` failed on images 0-1 .*RuntimeError: my bug'): load_image_folder(tmp_path/'i', size=8, attr_fn=reader)


# -- models
def test_fit_and_predict_misuse(sets, teacher):
    train, test = sets
    cfg = TrainConfig(epochs=1)
    with pytest.raises(ValueError, match='gives 3 logits per image but the data have 2 classes'): fit(make_student(3), train, cfg, progress=False)
    with pytest.raises(ValueError, match='gives 1 logits per image but the data have 2 classes'): fit(make_student(1), train, cfg, progress=False)
    with pytest.raises(RuntimeError, match='(?s)`model` failed on a batch of images of shape \\(64, 3, 16, 16\\).*3-channel 16×16'):
        fit(make_student(2, in_ch=1), train, cfg, progress=False)
    with pytest.raises(TypeError, match='`model` must be a torch.nn.Module'): fit(lambda x: x, train, cfg, progress=False)
    tiny = GroupedImages(torch.rand(4, 3, 2, 2), [0, 1, 0, 1])
    with pytest.raises(RuntimeError, match='(?s)shape \\(4, 3, 2, 2\\).*resize the data'): fit(make_student(), tiny, cfg, progress=False)
    with pytest.raises(RuntimeError, match='shape \\(4, 3, 2, 2\\)'): predict(teacher, tiny)
    with pytest.raises(ValueError, match='`bs` must be a whole number >= 1'): predict(teacher, test, bs=0)
    torch.testing.assert_close(predict(teacher, test.images.double()), predict(teacher, test.images))   # float64 images are fine
    with pytest.raises(ValueError, match='returned NaN or infinite logits for 64 of 64 images'): predict(nan_model(), test)
    with pytest.raises(ValueError, match='NaN or infinite logits'): evaluate(nan_model(), test)
    with pytest.raises(ValueError, match='NaN or infinite logits'): decompose(nan_model(), teacher, train, test)
    with pytest.raises(ValueError, match='gives 3 logits per image but `ds` has 2 classes'): evaluate(make_student(3), test)
    with pytest.raises(ValueError, match='the student gives 3 logits per image but the data have 2 classes'): decompose(make_student(3), teacher, train, test)
    with pytest.raises(ValueError, match='`y_pred` must hold class ids >= 0'): group_metrics([0, 1], [-1, 1], [0, 1])

def test_load_model_with_a_factory_that_is_gone(tmp_path, monkeypatch):
    import sys, types
    mod = types.ModuleType('probe_mods'); mod.gone = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    monkeypatch.setitem(sys.modules, 'probe_mods', mod); mod.gone.__module__, mod.gone.__qualname__ = 'probe_mods', 'gone'
    save_model(mod.gone(), tmp_path/'m', make_model=mod.gone)
    del mod.gone
    with pytest.raises(ValueError, match='saved with the factory probe_mods:gone, which cannot be imported now.*pass `make_model`'):
        load_model(tmp_path/'m')


# -- diffusion and the store
def test_guidance_and_rounds_misuse(sets, teacher, tmp_path):
    train, _ = sets
    den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
    g = GuideConfig(steps=2, t_min=0)
    with pytest.raises(ValueError, match='`teacher` returned NaN or infinite logits'):
        guided_sample(den, nan_model(), make_student(), [3, 4], [0, 1], target=[0, 0], cfg=g)
    with pytest.raises(ValueError, match='`student` returned NaN or infinite logits'):
        guided_sample(den, teacher, nan_model(), [3, 4], [0, 1], target=[0, 0], cfg=g)
    with pytest.raises(TypeError, match='`idx` must hold whole-number indices'): config_round(den, teacher, make_student(), train, [0.5], g)
    with pytest.raises(IndexError, match='`idx` holds 1000000, outside \\[0, 64\\)'): config_round(den, teacher, make_student(), train, [10**6], g)
    with pytest.raises(ValueError, match='`shard_size` must be a whole number'):
        generate_to_store(GenStore(tmp_path/'s'), den, teacher, make_student(), train, [0, 1], g, shard_size=2.5, progress=False)
    assert not (tmp_path/'s').exists() or not list((tmp_path/'s').glob('*.safetensors'))

def test_store_missing_shard_and_rows_without_labels(tmp_path):
    st = GenStore(tmp_path/'s')
    with pytest.raises(FileNotFoundError, match="has no shard 'nope'"): st.read('nope')
    st.write('r000-00000', torch.rand(2, 3, 8, 8), [{'round': 0, 'src': 0}, {'round': 0, 'src': 1}])
    with pytest.raises(ValueError, match="lack 'y': every row needs"): st.load()

def test_diffusion_state_and_folder_damage(tmp_path):
    (tmp_path/'c').mkdir()
    with pytest.raises(IsADirectoryError, match='`ckpt` .* is a folder: give a file name'):
        train_diffusion(DiffusionConfig.tiny(steps=1), ds=GroupedImages(torch.rand(4, 3, 16, 16), [0, 1, 0, 1]), ckpt=tmp_path/'c', progress=False)
    cfg = DiffusionConfig.tiny(size=8, channels=(8, 8), norm_groups=4, n_classes=2)
    save_diffusion(make_unet(cfg), tmp_path/'m', cfg, data={'kind': 'test'})
    (tmp_path/'m'/'configkd.json').write_text('{}')
    with pytest.raises(ValueError, match="holds no 'diffusion' settings"): load_diffusion(tmp_path/'m')


def test_sampler_refuses_a_non_denoiser_and_string_seeds():
    "`guided_sample` with `den` forgotten (None) or a bare module, or seeds as a string: a TypeError that says what to pass."
    for den in (None, torch.nn.Linear(2, 2)):
        with pytest.raises(TypeError, match=r"`den` must be a denoiser \(a PixelDenoiser, or a LatentDenoiser.*PixelDenoiser\(unet\)"):
            guided_sample(den, None, None, [0], [0])
    den = PixelDenoiser(make_unet(DiffusionConfig.tiny(size=8, channels=(8, 8), norm_groups=4, n_classes=2)))
    with pytest.raises(TypeError, match="`seeds` must be a list of whole numbers .* got the string '012'"): guided_sample(den, None, None, [0, 1, 0], '012')


# -- distillation and TAB
def test_distiller_resume_refuses_other_data_and_other_student(sets, teacher, tmp_path):
    train, test = sets
    cfg = DistillConfig(epochs=2, rounds=0, epoch_size=None)
    Distiller(teacher, train, cfg, ckpt=tmp_path/'c.pt', progress=False).run(stop_after=1)
    with pytest.raises(ValueError, match='written for other training data'):
        Distiller(teacher, test, cfg, ckpt=tmp_path/'c.pt', progress=False).run()
    with pytest.raises(ValueError, match='holds another student than `make_model` builds'):
        Distiller(teacher, train, cfg, ckpt=tmp_path/'c.pt', progress=False, make_model=lambda k: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, k))).run()
    assert len(Distiller(teacher, train, cfg, ckpt=tmp_path/'c.pt', progress=False).run().history) == 2   # the right data resumes

def test_run_method_needs_a_dict_with_train(sets, teacher):
    train, test = sets
    with pytest.raises(TypeError, match="`data` must be a dict of splits.*got GroupedImages"): run_method('kd', teacher, train)
    with pytest.raises(TypeError, match="with keys \\['test'\\], no 'train'"): run_method('kd', teacher, {'test': test})

def test_kd_fit_refuses_broken_teacher_logits(sets, teacher):
    train, _ = sets
    tl = predict(teacher, train); tl[0] = float('nan')
    with pytest.raises(ValueError, match='`teacher_logits` holds NaN or inf for 1 of 64 images'): kd_fit(train, tl, TabConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match='`epochs` must be a whole number >= 1'): kd_fit(train, predict(teacher, train), TabConfig(epochs=1), epochs=0, progress=False)


# -- command lines: an option that would be ignored, or a number no machine has, is refused (exit 2, one line, nothing written)
@pytest.mark.parametrize('cmd,msg', [
    (['configkd_generate', '--n_sources', '4', '--prompts', 'a|b'], '--prompts only applies to a Stable Diffusion --diffusion folder'),
    (['configkd_generate', '--n_sources', '4', '--size', '32'], '--size applies only when --data is a folder'),
    (['configkd_bench', '--preset', 'tiny', '--seeds', '0', '--methods', 'kd', '--workers', str(10**30)], '--workers must lie in [0, 256]'),
], ids=['prompts-pixel', 'size-without-data', 'workers-huge'])
def test_cli_refuses_ignored_or_absurd_options(tmp_path, cmd, msg):
    import os, subprocess
    out = tmp_path/'out'
    r = subprocess.run(cmd + ['--out', str(out), '--quiet'], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'CONFIGKD_CACHE': str(tmp_path/'cache')})
    assert r.returncode == 2, r.stderr[-2000:]
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() and not (tmp_path/'cache').exists()


@pytest.mark.skipif(not Path('/proc/self').is_dir(), reason='needs Linux /proc (a file system where nothing can be created)')
@pytest.mark.parametrize('cmd', [['configkd_generate', '--n_sources', '4', '--quiet'], ['configkd_bench', '--preset', 'tiny', '--seeds', '0', '--quiet'],
                                 ['configkd_train_diffusion', '--tiny']], ids=['generate', 'bench', 'train_diffusion'])
def test_cli_refuses_an_out_folder_that_cannot_be_created(tmp_path, cmd):
    "An --out on a file system where nothing can be created (here /proc, whatever the user's permissions) is refused before any model is built."
    import os, subprocess
    r = subprocess.run(cmd + ['--out', '/proc/configkd-out/run'], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'CONFIGKD_CACHE': str(tmp_path/'cache')})
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "'/proc/configkd-out/run' is not writable" in last and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert not (tmp_path/'cache').exists()                       # refused before any model was trained or cached


_CONCURRENT_BUILD = r'''
import sys, time, torch
from pathlib import Path
from configkd.models import cached_model, make_student
log = Path(sys.argv[2])
def build():
    with open(log, 'a') as f: f.write('built\n')
    time.sleep(1.0)                                   # a slow build: the other processes arrive while it runs
    torch.manual_seed(0); return make_student(2)
m = cached_model('race_probe', build, cache=sys.argv[1], use_committed=False, n=1)
print(float(sum(p.double().sum() for p in m.parameters())))
'''

def test_concurrent_processes_build_a_cached_model_once_and_all_load_it(tmp_path):
    "Four processes asking the cache for the same model at once: one builds and saves it, the others wait and load it."
    import subprocess, sys
    script, log, cache = tmp_path/'race.py', tmp_path/'builds.txt', tmp_path/'cache'
    script.write_text(_CONCURRENT_BUILD)
    procs = [subprocess.Popen([sys.executable, str(script), str(cache), str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-400:] for _, e in outs]
    assert log.read_text().count('built') == 1
    sums = {o.strip() for o, _ in outs}
    assert len(sums) == 1, sums                                  # every process holds the same weights
    assert not [p.name for p in cache.iterdir() if '.tmp' in p.name or '.old' in p.name]   # no leftovers


_CONCURRENT_STORE = '''
import sys, torch
from configkd.store import GenStore
torch.set_num_threads(1)
st, who = GenStore(sys.argv[1]), int(sys.argv[2])
for i in range(60):                                  # every process writes its own shards and rewrites one shared shard
    for name in (f'w{who}-{i:03d}', 'shared'):
        st.write(name, torch.full((2, 3, 4, 4), who / 4), [{'round': 0, 'src': who, 'y': 0}, {'round': 0, 'src': who, 'y': 1}])
print('ok')
'''

def test_concurrent_store_writes_keep_each_others_files(tmp_path):
    "Four processes writing shards into one store at once: none deletes another's live temporary file, nothing is left over."
    import subprocess, sys
    script, root = tmp_path/'w.py', tmp_path/'store'
    script.write_text(_CONCURRENT_STORE)
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-600:] for _, e in outs]
    st = GenStore(root)
    assert len(st.names()) == 4 * 60 + 1
    assert all(len(st.read(n)[0]) == 2 for n in st.names())             # every shard whole and readable
    assert not [p.name for p in root.rglob('*') if p.name.endswith('.tmp')]

def test_stale_temporary_files_removed_live_ones_kept(tmp_path):
    "A killed writer's temporary file is removed by the next write of that shard; a live process's is left alone."
    import subprocess, sys
    st = GenStore(tmp_path/'s'); p = st.path('r000-00000'); p.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        stale, busy = p.parent/f'.{p.name}.{dead.pid}.abc.tmp', p.parent/f'.{p.name}.{live.pid}.abc.tmp'
        stale.write_bytes(b'half'); busy.write_bytes(b'half')
        st.write('r000-00000', torch.rand(1, 3, 4, 4), [{'round': 0, 'src': 0, 'y': 0}])
        assert not stale.exists() and busy.exists()
    finally: live.kill(); live.wait()

def test_truncated_diffusion_training_state_named(tmp_path):
    "A training state cut short (a full disk, a killed copy) is named with what deleting it costs, not a raw unpickling error."
    ds, cfg, st = GroupedImages(torch.rand(8, 3, 16, 16), [0, 1] * 4), DiffusionConfig.tiny(steps=4, bs=4), tmp_path/'state.pt'
    class Stop(Exception): pass
    def stop(step, ema, h): raise Stop
    with pytest.raises(Stop): train_diffusion(cfg, ds=ds, ckpt=st, ckpt_every=2, on_ckpt=stop, progress=False)
    st.write_bytes(st.read_bytes()[:st.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"training state .*state\.pt is corrupt or truncated .*delete it to restart from step 0"):
        train_diffusion(cfg, ds=ds, ckpt=st, ckpt_every=2, progress=False)
