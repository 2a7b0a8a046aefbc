"Tests of configkd.diffusion on tiny random models (no checkpoint, no download); the whole file runs in well under a minute."
import copy, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch

from configkd.data import spurious_digits
from configkd.models import ConvNet
from configkd.data import border_attr
from configkd.diffusion import (DiffusionConfig, GuideConfig, PixelDenoiser, make_unet, make_scheduler, train_diffusion,
                                save_diffusion, load_diffusion, config_objective, guided_sample, ddim_scheduler, ddim_step,
                                x0_from_eps, image_seed, _noise, config_round, _guided_eps, latent_opt, select_sources,
                                reconstruct, purify, to_unit)
from configkd.latent import tiny_latent_denoiser
from configkd.store import GenStore, generate_to_store

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
    torch.manual_seed(1); t = ConvNet(2).eval()
    torch.manual_seed(2); s = ConvNet(2).eval()
    return den, t, s


def test_objective_hand_values():
    pT, pS = torch.tensor([0.9, 0.0]), torch.tensor([0.2, 1.0])
    torch.testing.assert_close(config_objective(pT, pS), torch.tensor([0.81 + 0.64, 0.0]))
    torch.testing.assert_close(config_objective(pT, pS, gamma=1.0, w_T=2.0, w_S=0.5), torch.tensor([1.8 + 0.4, 0.0]))
    torch.testing.assert_close(config_objective(pT, pS, w_T=0.0), torch.tensor([0.64, 0.0]))


@pytest.mark.parametrize('gamma', [0.0, -1.0])
def test_objective_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match='gamma'): config_objective(torch.tensor([0.5]), torch.tensor([0.5]), gamma=gamma)
    with pytest.raises(ValueError, match='gamma'): GuideConfig(gamma=gamma)


def test_ddim_step_matches_diffusers():
    sched = ddim_scheduler(DiffusionConfig()); sched.set_timesteps(20)
    x, e = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    for t in sched.timesteps.tolist():
        ref = sched.step(e, t, x)
        prev, x0 = ddim_step(sched, e, t, x)
        torch.testing.assert_close(x0, ref.pred_original_sample); torch.testing.assert_close(prev, ref.prev_sample)
    a = sched.alphas_cumprod[500]
    torch.testing.assert_close(x0_from_eps(x, e, a), (x - (1 - a).sqrt() * e) / a.sqrt())


def test_scale_zero_equals_diffusers_loop(models):
    den = models[0]
    seeds, cond = [5, 6], torch.tensor([3, 10])
    ours = guided_sample(den, None, None, cond, seeds, cfg=GuideConfig.unguided(steps=10))
    from diffusers import DDIMScheduler
    sched = DDIMScheduler.from_config(den.scheduler_config, timestep_spacing='trailing', clip_sample=False); sched.set_timesteps(10)
    z = torch.stack([torch.randn(den.shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    with torch.no_grad():
        for t in sched.timesteps: z = sched.step(den.unet(z, t, class_labels=cond).sample, t, z).prev_sample
    torch.testing.assert_close(ours, to_unit(z), atol=1e-5, rtol=0)


def test_guidance_raises_objective_and_leaves_student_untouched(models):
    den, t, s = models
    x0 = spurious_digits(splits=['train'])['train'].images[:8]
    seeds, cond, target = list(range(8)), torch.full((8,), 3), torch.ones(8, dtype=torch.long)
    J = lambda x: config_objective(t(x).softmax(-1)[:, 1], s(x).softmax(-1)[:, 1]).mean().item()
    with torch.no_grad():
        xu = guided_sample(den, t, s, cond, seeds, target, GuideConfig(scale=0.0, steps=10), init=x0)
        xg = guided_sample(den, t, s, cond, seeds, target, GuideConfig(scale=4.0, steps=10, t_min=0), init=x0)
    assert J(xg) > J(xu)
    assert all(p.grad is None for p in s.parameters()) and all(p.requires_grad for p in s.parameters())


def test_batch_size_does_not_change_results(models):
    "Per-sample seeds make results independent of the batch size. Guided gradients are only piecewise smooth (clamp,"
    "ReLU, max-pool), so float32 rounding differences between batch shapes can cross a kink; float64 shows the logic is exact."
    den, t, s = models
    den64 = PixelDenoiser(copy.deepcopy(den.unet).double())
    t64, s64 = copy.deepcopy(t).double(), copy.deepcopy(s).double()
    cond, target, seeds = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 1, 0, 1, 1]), [image_seed(0, i, 0) for i in range(5)]
    a = guided_sample(den64, t64, s64, cond, seeds, target, GuideConfig(steps=6, bs=5, inner=2))
    b = guided_sample(den64, t64, s64, cond, seeds, target, GuideConfig(steps=6, bs=2, inner=2))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    a = guided_sample(den, None, None, cond, seeds, cfg=GuideConfig.unguided(steps=6, bs=5))
    b = guided_sample(den, None, None, cond, seeds, cfg=GuideConfig.unguided(steps=6, bs=2))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_bad_inputs(models):
    den, t, s = models
    with pytest.raises(ValueError, match='cond'): guided_sample(den, None, None, torch.tensor([11]), [0], cfg=GuideConfig.unguided())
    with pytest.raises(ValueError, match='cond'): guided_sample(den, None, None, torch.tensor([-1]), [0], cfg=GuideConfig.unguided())
    with pytest.raises(ValueError, match='target'): guided_sample(den, t, s, torch.tensor([1]), [0], target=[2])
    with pytest.raises(ValueError, match='number of classes'): guided_sample(den, t, ConvNet(3).eval(), torch.tensor([1]), [0], target=[1])
    with pytest.raises(ValueError, match='init'):
        guided_sample(den, None, None, torch.tensor([1]), [0], cfg=GuideConfig.unguided(), init=torch.full((1, 3, 16, 16), 1.5))
    with pytest.raises(ValueError, match='ratio'): select_sources(s, spurious_digits(splits=['val'])['val'], ratio=0)
    with pytest.raises(ValueError, match='class ids'):
        ds = spurious_digits(splits=['val'])['val']
        train_diffusion(DiffusionConfig.tiny(n_classes=3), ds=ds, progress=False)


def test_train_save_load_and_resume(tmp_path):
    ds = spurious_digits(splits=['val'])['val']
    cfg = DiffusionConfig.tiny(steps=8, bs=8)
    full, hist = train_diffusion(cfg, ds=ds, progress=False)
    # stop after 4 steps (at a checkpoint), then resume to 8: the same weights as the uninterrupted run
    st = tmp_path/'st2.pt'
    class Stop(Exception): pass
    def stop(step, ema, h):
        if step == 4: raise Stop
    with pytest.raises(Stop): train_diffusion(cfg, ds=ds, ckpt=st, ckpt_every=4, on_ckpt=stop, progress=False)
    resumed, _ = train_diffusion(cfg, ds=ds, ckpt=st, ckpt_every=4, progress=False)
    for a, b in zip(full.parameters(), resumed.parameters()): torch.testing.assert_close(a, b)
    save_diffusion(full, tmp_path/'m', cfg, data={'kind': 'the val split'})       # trained on own images: no digits config, no key
    u, c, meta = load_diffusion(tmp_path/'m')
    assert c == cfg and meta['key'] is None and meta['data'] == {'kind': 'the val split'}
    (tmp_path/'m'/'diffusion_pytorch_model.safetensors').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='corrupt'): load_diffusion(tmp_path/'m')


def test_border_attr_on_renders():
    d = spurious_digits(splits=['test', 'pool'])
    for ds in d.values(): assert (border_attr(ds.images) == ds.a).float().mean() >= 0.98


def test_latent_sampler_gradient_reaches_latent():
    lat = tiny_latent_denoiser()
    torch.manual_seed(0); t, s = ConvNet(2).eval(), ConvNet(2).eval()
    prompts = torch.randn(2, 5, 16)
    x = guided_sample(lat, t, s, prompts, [1, 2], target=[1, 0], cfg=GuideConfig(steps=3, t_min=0, cfg_scale=3.0))
    assert x.shape == (2, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    img = lat.decode(x0_from_eps(z, lat.output(z, 500, prompts), torch.tensor(0.5)))
    img.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='set_class_prompts'): guided_sample(lat, None, None, torch.tensor([1, 2]), [1, 2], cfg=GuideConfig.unguided())


def test_latent_opt_moves_and_reports():
    torch.manual_seed(0); t, s = ConvNet(2).eval(), ConvNet(2).eval()
    x, z, h = latent_opt(lambda z: z.clamp(0, 1), t, s, torch.rand(3, 3, 16, 16), [0, 1, 1], iters=10)
    assert h[-1] > h[0] and all(p.grad is None for p in s.parameters())


def test_store_atomic_and_corrupt(tmp_path):
    st = GenStore(tmp_path/'s', meta={'a': 1})
    st.write('r000-00000', torch.rand(2, 3, 4, 4), [{'src': 0, 'kept': True, 'y': 0, 'cls': 1, 'a_after': 0}] * 2)
    assert st.names() == ['r000-00000'] and len(st.manifest()) == 2
    with pytest.raises(ValueError, match='other settings'): GenStore(tmp_path/'s', meta={'a': 2})
    with pytest.raises(ValueError, match='images'): st.write('bad', torch.rand(1, 3, 4, 4) + 2, [{}])
    st.path('r000-00001').write_bytes(b'\x00' * 20)
    with pytest.raises(ValueError, match='corrupt'): st.manifest()


_KILL_SCRIPT = textwrap.dedent('''
    import sys, time, torch
    torch.set_num_threads(1)
    from configkd.data import spurious_digits
    from configkd.models import ConvNet
    from configkd.diffusion import *
    from configkd.store import GenStore
    torch.manual_seed(0); den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
    torch.manual_seed(1); t = ConvNet(2).eval(); torch.manual_seed(2); s = ConvNet(2).eval()
    ds = spurious_digits(splits=['train'])['train']
    store = GenStore(sys.argv[1], meta={'run_seed': 3})
    slow = sys.argv[2] == 'slow'
    import configkd.store as D
    orig = D.config_round
    def slow_round(*a, **k):
        out = orig(*a, **k)
        if slow: time.sleep(1.5)
        return out
    D.config_round = slow_round
    D.generate_to_store(store, den, t, s, ds, torch.arange(12), GuideConfig(steps=4), run_seed=3, round=1, shard_size=3, progress=False)
    print('done')
''')


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    script = tmp_path/'gen.py'; script.write_text(_KILL_SCRIPT)
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    p = subprocess.Popen([sys.executable, str(script), str(tmp_path/'killed'), 'slow'], env=env)
    store = GenStore(tmp_path/'killed')
    t0 = time.time()
    while len(store.names()) < 2 and time.time() - t0 < 120 and p.poll() is None: time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    n_before = len(store.names())
    assert 1 <= n_before < 4, n_before
    subprocess.run([sys.executable, str(script), str(tmp_path/'killed'), 'fast'], env=env, check=True, timeout=300)
    # the uninterrupted reference, in this process with the same models and settings
    torch.manual_seed(0); den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
    torch.manual_seed(1); t = ConvNet(2).eval(); torch.manual_seed(2); s = ConvNet(2).eval()
    b = GenStore(tmp_path/'clean', meta={'run_seed': 3})
    generate_to_store(b, den, t, s, spurious_digits(splits=['train'])['train'], torch.arange(12), GuideConfig(steps=4),
                      run_seed=3, round=1, shard_size=3, progress=False)
    a = GenStore(tmp_path/'killed')
    ma, mb = a.manifest(), b.manifest()
    assert len(ma) == 12 and ma.src.is_unique and list(ma.src) == list(mb.src)
    assert not list((tmp_path/'killed').glob('*.tmp'))
    for n in a.names(): torch.testing.assert_close(a.read(n)[0], b.read(n)[0], atol=1e-5, rtol=0)


def test_shards_split_by_rank_merge_to_the_same_store(models, tmp_path):
    "Rank r of w generates shards r, r + w, ...; the union equals a one-process store, and the merged manifest too."
    den, t, s = models
    ds = spurious_digits(splits=['train'])['train']
    kw = dict(cfg=GuideConfig(steps=3, bs=2), run_seed=2, round=0, shard_size=2, progress=False)
    one, two = GenStore(tmp_path/'one'), GenStore(tmp_path/'two')
    generate_to_store(one, den, t, s, ds, torch.arange(6), **kw)
    m = generate_to_store(two, den, t, s, ds, torch.arange(6), rank=1, world=2, **kw)
    assert two.names() == ['r000-00001'] and len(m) == 2
    generate_to_store(two, den, t, s, ds, torch.arange(6), rank=0, world=2, **kw)
    assert [two.writer(n)['rank'] for n in two.names()] == [0, 1, 0] and one.writer('r000-00001')['world'] == 1
    for n in one.names(): assert torch.equal(one.read(n)[0], two.read(n)[0])
    one.write_manifest(); two.write_manifest()
    assert (one.root/'manifest.csv').read_bytes() == (two.root/'manifest.csv').read_bytes()
    with pytest.raises(ValueError, match='rank'): generate_to_store(two, den, t, s, ds, torch.arange(6), rank=2, world=2, **kw)
    with pytest.raises(ValueError, match='shard_size'): generate_to_store(two, den, t, s, ds, torch.arange(6), **{**kw, 'shard_size': 0})
