"""ConfiG on data, models and generators that are not Spurious Digits': the public API carries any of them.

Each test here failed on the code before the API was generalised: a 1-channel, 3-attribute dataset through a round with
the true group counts (no Spurious Digits background reader anywhere), the user's student class through every entry
point, parameter-free and `.logits` teachers, bf16 fingerprints, size mismatches refused by name, Stable-Diffusion-style
latent denoisers through the distiller, reconstructions, the store and the CLI (with resizing), the three prediction
types against diffusers, a user's optimiser and schedule, and uint8 storage giving the same numbers as float32.
"""
import copy, json, os, subprocess, sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from configkd.data import GroupedImages
from configkd.models import ConvNet, predict, save_model, cached_model, model_identity
from configkd.errors import evaluate
from configkd.diffusion import (DiffusionConfig, GuideConfig, PixelDenoiser, make_unet, make_scheduler, guided_sample,
                                config_round, round_summary, train_diffusion, reconstruct, PREDICTION_TYPES, _noise, to_unit)
from configkd.distill import (Distiller, DistillConfig, config_augmenter, run_method, cached_run_method, fingerprint,
                              real_reconstructions)
from configkd.tab import kd_fit, loss_histories, run_tab, TabConfig

torch.set_num_threads(1)
K, A = 3, 3                                     # 3 classes, 3 values of the spurious attribute


def patch_attr(x: torch.Tensor) -> torch.Tensor:
    "The attribute of these images: the brightness band of their top-left 4x4 patch (0: dark, 1: mid, 2: bright)."
    m = x[:, 0, :4, :4].mean((1, 2))
    return torch.bucketize(m, torch.tensor([1 / 3, 2 / 3]))


def grey_dataset(n_per_group=6, missing=((0, 1), (1, 2), (2, 0)), size=16, seed=0) -> GroupedImages:
    "1-channel images: class = a blob's position, attribute = a corner patch's brightness; three groups are missing."
    g = torch.Generator().manual_seed(seed)
    xs, ys, as_ = [], [], []
    for y in range(K):
        for a in range(A):
            if (y, a) in missing: continue
            x = torch.rand(n_per_group, 1, size, size, generator=g) * 0.2 + 0.4
            x[:, :, 6:10, 2 + 4 * y:6 + 4 * y] = 0.95
            x[:, :, :4, :4] = (a + 0.5) / 3
            xs.append(x); ys += [y] * n_per_group; as_ += [a] * n_per_group
    return GroupedImages(torch.cat(xs), ys, as_, n_classes=K, n_attrs=A)


class MLP(nn.Module):
    "A user's student that is not a ConvNet."
    def __init__(self, n_classes=K, in_ch=1, size=16):
        super().__init__(); self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * size * size, 32), nn.ReLU(), nn.Linear(32, n_classes))
    def forward(self, x): return self.net(x)


def make_mlp(n_classes=K): return MLP(n_classes)


class LogitsOutput(nn.Module):
    "A teacher that returns a 🤗-style output object with `.logits`."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return type('Out', (), {'logits': self.m(x)})()


class NoParams(nn.Module):
    "A teacher wrapper with no parameters of its own (the model is held outside the module tree)."
    def __init__(self, m): super().__init__(); self.__dict__['m'] = m.eval()
    def forward(self, x): return self.m(x)


@pytest.fixture(scope='module')
def setup():
    torch.manual_seed(0)
    ds = grey_dataset()
    den = PixelDenoiser(make_unet(DiffusionConfig.tiny(in_ch=1, n_classes=K)))
    torch.manual_seed(1); teacher = ConvNet(K, in_ch=1, mean=(0.5,), std=(0.25,)).eval()
    torch.manual_seed(2); student = ConvNet(K, in_ch=1, mean=(0.5,), std=(0.25,)).eval()
    return ds, den, teacher, student


def test_round_on_one_channel_three_attributes_counts_true_groups(setup):
    ds, den, t, s = setup
    assert ds.n_groups == 9 and (ds.group_counts() == 0).sum() == 3
    assert (patch_attr(ds.images) == ds.a).all()                               # the reader reads the truth on real images
    x, rec = config_round(den, t, s, ds, torch.arange(len(ds)), GuideConfig(steps=4, t_min=0), attr_fn=patch_attr)
    truth = patch_attr(x.images)
    assert torch.equal(x.a, truth) and rec.a_after.tolist() == truth.tolist()
    miss = {1, 5, 6}                                                            # (0,1), (1,2), (2,0): y * 3 + a
    want = [float(int(y) * 3 + int(a) in miss) for y, a in zip(x.y, truth)]
    assert rec.missing_after.tolist() == want
    assert round_summary(rec)['in_missing'] == pytest.approx(np.mean(want))
    # no reader: the attribute is unknown, never guessed
    x2, rec2 = config_round(den, t, s, ds, torch.arange(4), GuideConfig(steps=3, t_min=0))
    assert (x2.a == -1).all() and rec2.missing_after.isna().all() and np.isnan(round_summary(rec2)['in_missing'])
    assert x2.group_counts().sum() == 0


def test_distiller_pool_counts_are_the_readers(setup):
    ds, den, t, s = setup
    aug = config_augmenter(den, t, GuideConfig(steps=3, t_min=0, bs=8), purify=0.0, pair_recon=True, attr_fn=patch_attr)
    d = Distiller(t, ds, DistillConfig(epochs=3, period=1, rounds=2, ratio=0.5, recon=True, bs=16), aug, den,
                  make_model=make_mlp, progress=False, attr_fn=patch_attr).run()
    last = d.rounds.iloc[-1]
    assert last.pool_groups == torch.bincount(d.pool.y * 3 + patch_attr(d.pool.images), minlength=9).tolist()
    assert last.pool_unknown == 0 and isinstance(d.student, MLP)


def test_user_student_through_every_entry_point(setup, tmp_path):
    ds, den, t, s = setup
    tl = predict(t, ds)
    cfg = DistillConfig(epochs=2, rounds=0, recon=False, bs=16)
    assert isinstance(run_method('kd', t, {'train': ds}, cfg=cfg, make_model=make_mlp, progress=False).student, MLP)
    d = cached_run_method('kd', t, {'train': ds}, cfg=cfg, make_model=make_mlp, progress=False, cache=tmp_path)
    assert isinstance(d.student, MLP)
    d2 = cached_run_method('kd', t, {'train': ds}, cfg=cfg, make_model=make_mlp, progress=False, cache=tmp_path)   # loads
    assert all(torch.equal(a, b) for a, b in zip(d.student.state_dict().values(), d2.student.state_dict().values()))
    # another architecture is another cache entry, not a crash on loading the MLP's weights
    other = lambda n_classes: MLP(n_classes).requires_grad_(True)
    assert model_identity(make_mlp, K) != model_identity(lambda n: ConvNet(n, in_ch=1), K)
    tc = TabConfig(epochs=2, helper_epochs=2, bs=16)
    assert isinstance(kd_fit(ds, tl, tc, make_model=make_mlp, progress=False).student, MLP)
    assert loss_histories(ds, tl, tc, make_model=make_mlp, progress=False).shape == (len(ds), 2)
    assert isinstance(run_tab(ds, tl, tc, make_model=make_mlp, progress=False).student, MLP)
    # caching any nn.Module: its factory in the key and in the saved folder
    m = cached_model('mlp', lambda: make_mlp(), tmp_path, make_model=make_mlp, arch=model_identity(make_mlp))
    m2 = cached_model('mlp', lambda: pytest.fail('rebuilt'), tmp_path, make_model=make_mlp, arch=model_identity(make_mlp))
    assert isinstance(m2, MLP) and all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


def test_teachers_without_parameters_or_with_logits_objects(setup):
    ds, den, t, s = setup
    ref = predict(t, ds)
    torch.testing.assert_close(predict(NoParams(t), ds), ref); torch.testing.assert_close(predict(LogitsOutput(t), ds), ref)
    cfg = DistillConfig(epochs=1, rounds=0, recon=False, bs=16)
    a = Distiller(t, ds, cfg, progress=False).run().student
    for wrapped in (NoParams(t), LogitsOutput(t)):
        b = Distiller(wrapped, ds, cfg, progress=False).run().student
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    x = guided_sample(den, LogitsOutput(t), LogitsOutput(s), ds.cls[:2], [1, 2], ds.y[:2], GuideConfig(steps=3, t_min=0), init=ds.images[:2])
    assert x.shape == (2, 1, 16, 16)


def test_bf16_fingerprints():
    m = nn.Linear(3, 2)
    assert fingerprint(m) != fingerprint(copy.deepcopy(m).to(torch.bfloat16))
    assert fingerprint(copy.deepcopy(m).to(torch.bfloat16)) == fingerprint(copy.deepcopy(m).to(torch.bfloat16))


def test_size_and_channel_mismatches_are_refused_by_name(setup):
    ds, den, t, s = setup
    with pytest.raises(ValueError, match=r'16×16 images with 1 channel\(s\) but the config is for 32×32 with 3'):
        train_diffusion(DiffusionConfig.tiny(size=32, n_classes=K), ds=ds, progress=False)
    unet, _ = train_diffusion(ds=ds, cfg=DiffusionConfig.for_data(ds, channels=(16, 32, 32), steps=2, bs=4, warmup=1), progress=False)
    assert unet.config.in_channels == 1 and unet.config.sample_size == 16
    with pytest.raises(ValueError, match='channel'):
        guided_sample(den, None, None, [0], [1], cfg=GuideConfig.unguided(steps=2), init=torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match='square'):
        guided_sample(den, None, None, [0], [1], cfg=GuideConfig.unguided(steps=2), init=torch.rand(1, 1, 16, 12))
    x = guided_sample(den, None, None, [0, 1], [1, 2], cfg=GuideConfig.unguided(steps=2), init=torch.rand(2, 1, 40, 40))
    assert x.shape == (2, 1, 40, 40)                                            # another size is resized, both ways


@pytest.mark.parametrize('pt', PREDICTION_TYPES)
def test_prediction_types_match_diffusers(pt):
    from diffusers import DDIMScheduler
    torch.manual_seed(0); unet = make_unet(DiffusionConfig.tiny())
    sc = dict(make_scheduler(DiffusionConfig()).config) | {'prediction_type': pt}
    den, seeds, cond = PixelDenoiser(unet, sc), [3, 4], torch.tensor([1, 10])
    ours = guided_sample(den, None, None, cond, seeds, cfg=GuideConfig.unguided(steps=8))
    sched = DDIMScheduler.from_config(sc, timestep_spacing='trailing', clip_sample=False, prediction_type=pt); sched.set_timesteps(8)
    z = _noise(seeds, den.shape, 'cpu')
    with torch.no_grad():
        for t_ in sched.timesteps: z = sched.step(unet(z, t_, class_labels=cond).sample, t_, z).prev_sample
    torch.testing.assert_close(ours, to_unit(z), atol=1e-4, rtol=0)


def test_custom_optimiser_schedule_and_transform(setup):
    ds, den, t, s = setup
    seen = []
    def flip(x, gen): seen.append(len(x)); return x.flip(-1)
    d = Distiller(t, ds, DistillConfig(epochs=3, rounds=0, recon=False, bs=16, lr=0.1),
                  make_opt=lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=0.9), lr_at=lambda ep, c: c.lr / (ep + 1),
                  transform=flip, progress=False).run()
    assert isinstance(d.state['opt'], torch.optim.SGD)
    assert d.history.lr.tolist() == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert sum(seen) == d.history.n_train.sum()                                 # every batch went through the transform
    # model selection on a labelled split: the epoch with the best worst-group accuracy is kept
    sel = Distiller(t, ds, DistillConfig(epochs=3, rounds=0, recon=False, bs=16), select_on=ds, progress=False).run()
    best = int(sel.history.select_wga.values.argmax()) + 1
    assert sel.best_epoch == best and evaluate(sel.student, ds).wga == pytest.approx(sel.history.select_wga.max())


def test_uint8_storage_gives_the_same_numbers(setup):
    ds, den, t, s = setup
    u8 = ds.as_uint8()
    f32 = GroupedImages(u8.data.float() / 255, ds.y, ds.a, n_classes=K, n_attrs=A)   # the same pixels, stored as float32
    assert u8.data.element_size() * 4 == f32.data.element_size()
    torch.testing.assert_close(predict(t, u8), predict(t, f32), atol=0, rtol=0)           # the same logits, bit for bit
    pd.testing.assert_frame_equal(evaluate(t, u8).table, evaluate(t, f32).table)
    cfg = DistillConfig(epochs=2, rounds=0, recon=False, bs=16)
    a, b = (Distiller(t, x, cfg, progress=False).run() for x in (u8, f32))
    assert a.history.loss.tolist() == b.history.loss.tolist()
    assert all(torch.equal(x, y) for x, y in zip(a.student.state_dict().values(), b.student.state_dict().values()))
    r8, rf = real_reconstructions(den, u8, steps=4), real_reconstructions(den, f32, steps=4)
    assert r8.dtype == torch.uint8 and (r8.float() / 255 - rf).abs().max() <= 0.5 / 255 + 1e-6


# --- the latent (Stable Diffusion style) generator through the whole loop, with resizing ---

@pytest.fixture(scope='module')
def latent():
    pytest.importorskip('transformers')
    from configkd.latent import tiny_latent_denoiser
    lat = tiny_latent_denoiser(image_size=16)                                 # 8x8 latents, 16x16 images
    return lat.set_class_prompts(torch.randn(K, 5, 16, generator=torch.Generator().manual_seed(0)))


def rgb_dataset(size=32):
    d = grey_dataset(size=size)
    return GroupedImages(d.images.expand(-1, 3, -1, -1).contiguous(), d.y, d.a, n_classes=K, n_attrs=A)


def test_latent_denoiser_through_distiller_and_reconstruct(latent):
    ds = rgb_dataset(32)                                                        # students see 32 px, the generator makes 16 px
    torch.manual_seed(1); t = ConvNet(K).eval()
    xr = reconstruct(latent, ds.images[:4], ds.cls[:4], [1, 2, 3, 4], steps=4)
    assert xr.shape == (4, 3, 32, 32)
    aug = config_augmenter(latent, t, GuideConfig(steps=4, t_min=0, bs=8), purify=0.3, pair_recon=True, attr_fn=patch_attr)
    d = Distiller(t, ds, DistillConfig(epochs=2, period=1, rounds=1, ratio=0.3, recon=True, bs=16), aug, latent,
                  progress=False, attr_fn=patch_attr).run()
    assert d.pool is not None and d.pool.shape == (3, 32, 32) and d.rounds.added.iloc[0] > 0


def test_latent_denoiser_through_store_and_cli(latent, tmp_path):
    from configkd.store import GenStore, generate_to_store, generate_cli
    ds = rgb_dataset(32)
    torch.manual_seed(1); t = ConvNet(K).eval(); torch.manual_seed(2); s = ConvNet(K).eval()
    st = GenStore(tmp_path/'lat', meta={'gen': 'tiny latent'})
    m = generate_to_store(st, latent, t, s, ds, torch.arange(6), GuideConfig(steps=3, t_min=0), shard_size=3, progress=False)
    assert len(m) == 6 and st.load(kept_only=False, n_classes=K, n_attrs=A).shape == (3, 32, 32)
    # the CLI on a Stable Diffusion folder in the diffusers layout (tiny components), a saved dataset and saved models
    from diffusers import DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel
    sys.path.insert(0, str(Path(__file__).parent))
    from test_real_models import _tiny_tokenizer
    te = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=8, bos_token_id=62, eos_token_id=63, pad_token_id=63))
    from configkd.latent import tiny_latent_denoiser
    small = tiny_latent_denoiser(prompt_len=8, emb_dim=16)
    sd = tmp_path/'sd'
    small.unet.save_pretrained(sd/'unet'); small.vae.save_pretrained(sd/'vae'); te.save_pretrained(sd/'text_encoder')
    _tiny_tokenizer().save_pretrained(sd/'tokenizer'); DDPMScheduler(num_train_timesteps=1000).save_pretrained(sd/'scheduler')
    ds.save(tmp_path/'data.safetensors'); save_model(t, tmp_path/'teacher'); save_model(s, tmp_path/'student')
    generate_cli(out=str(tmp_path/'gen'), data=str(tmp_path/'data.safetensors'), teacher=str(tmp_path/'teacher'),
                 student=str(tmp_path/'student'), diffusion=str(sd), prompts='a dot|a bar|a blob', n_sources=4, steps=3,
                 shard_size=2, quiet=True)
    m = pd.read_csv(tmp_path/'gen'/'manifest.csv')
    assert len(m) == 4 and GenStore(tmp_path/'gen').read('r000-00000')[0].shape == (2, 3, 32, 32)


def test_readme_own_data_snippet_runs(tmp_path, monkeypatch):
    """The README's "Use it on your own data" code, run as printed on a folder of a user's images with a user's teacher
    and student classes; only its training lengths are cut to seconds (each cut must find its text, so an edited
    README fails here until this test follows it)."""
    import re
    from PIL import Image
    readme = (Path(__file__).resolve().parents[1]/'README.md').read_text()
    sec = readme.split('## Use it on your own data', 1)[1]
    code = re.search(r'```python\n(.*?)```', sec, re.S).group(1)
    cuts = {'DiffusionConfig.for_data(train)': "DiffusionConfig.for_data(train, channels=(16, 32, 32), steps=20, bs=16, warmup=2)",
            'DistillConfig(epochs=24, period=4, rounds=5, ratio=0.5)': 'DistillConfig(epochs=2, period=1, rounds=1, bs=16)',
            'GuideConfig(steps=10)': 'GuideConfig(steps=3)',
            'TabConfig()': 'TabConfig.tiny()'}
    for old, new in cuts.items():
        assert code.count(old) == 1, f"README's own-data code no longer holds {old!r}: update this test"
        code = code.replace(old, new)
    rng = np.random.default_rng(0)
    for split, n in (('train', 12), ('test', 6)):                 # my_data/<split>/<class>/*.png, three classes
        for k, name in enumerate(('circle', 'square', 'star')):
            (tmp_path/'my_data'/split/name).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8); a[10:30, 5 + 10 * k:15 + 10 * k] = 255
                Image.fromarray(a).save(tmp_path/'my_data'/split/name/f'{i}.png')
    class MyTeacher(nn.Module):
        def __init__(self): super().__init__(); self.net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 3))
        def forward(self, x): return self.net(x)
    class MyStudent(nn.Module):
        def __init__(self, n_classes=3): super().__init__(); self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, n_classes))
        def forward(self, x): return self.net(x)
    monkeypatch.chdir(tmp_path); monkeypatch.setenv('CONFIGKD_CACHE', str(tmp_path/'cache'))
    ns = {'MyTeacher': MyTeacher, 'MyStudent': MyStudent, 'my_attr': lambda x: (x[:, 0, :2, :2].mean((1, 2)) > 0.5).long()}
    exec(compile(code, 'README own-data snippet', 'exec'), ns)
    assert type(ns['d'].student).__name__ == 'MyStudent' and type(ns['hy'].student).__name__ == 'MyStudent'
    assert ns['d'].pool is not None and len(ns['d'].pool) > 0             # ConfiG generated and kept images
    assert 0 <= ns['res']['wga'] <= 1 and set(ns['res']['group_acc']) == set(ns['test'].group_names)


def test_reconstructions_carry_the_attribute_read_and_the_class_check_keeps_batchnorm(setup):
    """The real images' unguided reconstructions get the attribute the reader sees on them (not the source's), and the
    distiller's class check before training runs the student in eval mode: BatchNorm statistics do not move."""
    ds, den, t, s = setup
    class BNStudent(nn.Module):
        def __init__(self, n_classes=K):
            super().__init__(); self.bn = nn.BatchNorm2d(1); self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, n_classes))
        def forward(self, x): return self.head(self.bn(x * 3 + 1))
    made = []
    def make(n_classes=K): made.append(BNStudent(n_classes)); return made[-1]
    cfg = DistillConfig(epochs=2, period=1, rounds=1, recon=True, bs=16)
    aug = config_augmenter(den, t, GuideConfig(steps=2, t_min=0, bs=8), purify=0.0, pair_recon=False, attr_fn=patch_attr)
    d = Distiller(t, ds, cfg, aug, den, make_model=make, progress=False, attr_fn=patch_attr)
    fresh = BNStudent()
    st = d._init_state()
    bn = made[0].bn
    assert torch.equal(bn.running_mean, fresh.bn.running_mean) and torch.equal(bn.running_var, fresh.bn.running_var)
    assert int(bn.num_batches_tracked) == 0 and made[0].training             # the check left it as it was made
    n = len(ds)
    assert len(st['real']) == 2 * n                                        # each real image and its reconstruction
    xr = st['real'].images[n:]
    assert torch.equal(st['real'].a[n:], patch_attr(xr)) and not torch.equal(patch_attr(xr), ds.a)
