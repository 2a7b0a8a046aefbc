"""The Colab path on tiny randomly initialised real classes (no download): the transformers CLIP teacher
(`configkd.models.CLIPTeacher`) and Stable-Diffusion-style latent ConfiG (`configkd.latent.LatentDenoiser`: diffusers
`UNet2DConditionModel` + `AutoencoderKL`, a CLIP text encoder for class prompts), end to end through `guided_sample`.
What tests/test_diffusion.py already covers for the latent sampler (output shape, a plain decode gradient, bad
conditions) is not repeated here."""
import copy, sys
from pathlib import Path
from dataclasses import replace

import pytest
import torch

pytest.importorskip('transformers')
from configkd.data import GroupedImages
from configkd.models import CLIPTeacher, tiny_clip, clip_resize, ConvNet
from configkd.diffusion import (DiffusionConfig, GuideConfig, PixelDenoiser, make_unet, guided_sample, config_objective,
                                x0_from_eps, ddim_scheduler)
from configkd.latent import LatentDenoiser, tiny_latent_denoiser, _as_dtype

torch.set_num_threads(1)
IDS = torch.tensor([[62, 5, 6, 63], [62, 7, 8, 63]])     # two class prompts as token ids: <bos> w w <eos>


@pytest.fixture(scope='module')
def clip(): return tiny_clip()


def _frozen(m): return all(not p.requires_grad and p.grad is None for p in m.parameters())


def test_zero_shot_equals_transformers_own_forward(clip):
    "Resize + normalisation inside, zero-shot head: the logits CLIPModel computes on CLIPImageProcessor's pixel values."
    from transformers import CLIPImageProcessor
    img = torch.randint(0, 256, (3, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    proc = CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32})
    pv = proc(images=[i.permute(1, 2, 0).numpy() for i in img], return_tensors='pt').pixel_values
    zs = CLIPTeacher.zero_shot(clip, IDS)
    with torch.no_grad():
        ref = clip(input_ids=IDS, pixel_values=pv).logits_per_image                  # (3, 2)
        ours = zs(img.float() / 255)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert zs.n_classes == 2 and _frozen(zs)


def test_logits_shape_input_gradient_and_frozen_weights(clip):
    zs = CLIPTeacher.zero_shot(clip, IDS)
    for shape in [(4, 3, 16, 16), (2, 3, 40, 24)]:                                   # upsampled; non-square, cropped
        x = torch.rand(shape, requires_grad=True)
        out = zs(x)
        assert out.shape == (shape[0], 2)
        out.log_softmax(-1)[:, 1].sum().backward()
        assert x.grad is not None and (x.grad.flatten(1).abs().sum(1) > 0).all()    # guidance needs d logits / d image
    assert _frozen(zs) and _frozen(clip)
    assert clip_resize(torch.rand(1, 3, 40, 24), 32).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match='RGB'): zs(torch.rand(2, 1, 16, 16))


def _toy(n, seed):
    "A separable toy problem: reddish (class 0) versus bluish (class 1) noisy images."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = torch.tensor([[0.7, 0.3, 0.3], [0.3, 0.3, 0.7]])[y][:, :, None, None]
    x = (base + 0.2 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)
    return GroupedImages(x, y, torch.randint(0, 2, (n,), generator=g))


def test_linear_probe_learns_separable_toy(clip):
    zs = CLIPTeacher.zero_shot(clip, IDS)
    tr, te = _toy(120, 0), _toy(120, 1)
    chance = (zs(te.images).argmax(-1) == te.y).float().mean().item()
    probe = CLIPTeacher(clip, torch.zeros(2, 16)).fit_probe(tr, C=10.0)
    acc = (probe(te.images).argmax(-1) == te.y).float().mean().item()
    assert acc >= 0.95, (acc, chance)
    assert _frozen(probe)
    one = tr[tr.y == 0]
    with pytest.raises(ValueError, match='two classes'): CLIPTeacher(clip, torch.zeros(2, 16)).fit_probe(one)


def _J(t, s, x, y):
    return config_objective(t(x).softmax(-1).gather(1, y[:, None])[:, 0], s(x).softmax(-1).gather(1, y[:, None])[:, 0]).mean().item()


def test_clip_teacher_guides_pixel_sampler(clip):
    torch.manual_seed(0); den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
    torch.manual_seed(2); s = ConvNet(2).eval()
    t = CLIPTeacher.zero_shot(clip, IDS)
    x0 = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    cond, y, seeds = torch.full((6,), 3), torch.tensor([1, 0, 1, 0, 1, 0]), list(range(6))
    with torch.no_grad():
        xu = guided_sample(den, t, s, cond, seeds, y, GuideConfig(scale=0.0, steps=8), init=x0)
        xg = guided_sample(den, t, s, cond, seeds, y, GuideConfig(scale=4.0, steps=8, t_min=0), init=x0)
    assert _J(t, s, xg, y) > _J(t, s, xu, y)
    assert _frozen(t) and all(p.grad is None for p in s.parameters())


def _latent_setup(clip):
    lat = tiny_latent_denoiser(prompt_len=4, text_encoder=tiny_clip(seed=1).text_model)
    cond = lat.embed(torch.tensor([[62, 5, 63, 0], [62, 7, 63, 0]]))                 # class prompts -> (2, 4, 32)
    torch.manual_seed(2); s = ConvNet(2).eval()
    init = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    return lat, cond, CLIPTeacher.zero_shot(clip, IDS), s, init


def test_sd_guided_img2img_end_to_end(clip):
    lat, cond, t, s, init = _latent_setup(clip)
    assert cond.shape == (2, 4, 32) and not torch.equal(cond[0], cond[1])
    y = torch.tensor([1, 0])
    g = GuideConfig(steps=4, strength=0.75, t_min=0, scale=1.0, cfg_scale=2.0)
    xu = guided_sample(lat, t, s, cond, [1, 2], y, replace(g, scale=0.0), init=init)
    xg = guided_sample(lat, t, s, cond, [1, 2], y, g, init=init)
    assert xg.shape == (2, 3, 16, 16) and xg.dtype == torch.float32 and 0 <= xg.min() and xg.max() <= 1
    assert ((xg - xu).abs().flatten(1).amax(1) > 1e-4).all()                          # guidance moved every sample
    # the gradient of J reaches the noisy latent through the CLIP teacher, the VAE decoder and the UNet
    z = lat.encode(init).detach().requires_grad_(True)
    sch = ddim_scheduler(lat.scheduler_config); abar = sch.alphas_cumprod[600]
    img = lat.decode(x0_from_eps(z, lat.output(z, 600, cond, 2.0), abar))
    J = config_objective(t(img).softmax(-1)[[0, 1], y], s(img).softmax(-1)[[0, 1], y])
    J.sum().backward()
    assert (z.grad.flatten(1).abs().sum(1) > 0).all()
    assert _frozen(t) and all(p.grad is None for p in lat.unet.parameters()) and all(p.grad is None for p in lat.vae.parameters())


def test_memory_options_and_low_precision(clip):
    lat, cond, t, s, init = _latent_setup(clip)
    g = GuideConfig(steps=3, strength=0.75, t_min=0, scale=1.0)
    ref = guided_sample(lat, t, s, cond, [5, 6], [1, 0], g, init=init)
    lat.memory_options(attention_slicing=1, vae_slicing=True, vae_tiling=True)
    procs = {type(p).__name__ for p in lat.unet.attn_processors.values()}
    assert procs == {'SlicedAttnProcessor'} and lat.vae.use_slicing and lat.vae.use_tiling
    torch.testing.assert_close(guided_sample(lat, t, s, cond, [5, 6], [1, 0], g, init=init), ref, atol=1e-4, rtol=0)
    lat.memory_options(attention_slicing=None, vae_slicing=False)
    assert 'SlicedAttnProcessor' not in {type(p).__name__ for p in lat.unet.attn_processors.values()} and not lat.vae.use_slicing
    # bf16 weights (as `from_pretrained(dtype='bf16')` loads them): float32 images in [0, 1] for the float32 student
    lo = LatentDenoiser(copy.deepcopy(lat.unet).to(torch.bfloat16), copy.deepcopy(lat.vae).to(torch.bfloat16), lat.null_emb,
                        text_encoder=lat.text_encoder)
    x16 = guided_sample(lo, t, s, lo.embed(torch.tensor([[62, 5, 63, 0], [62, 7, 63, 0]])), [5, 6], [1, 0], g, init=init)
    assert x16.dtype == torch.float32 and 0 <= x16.min() and x16.max() <= 1
    assert (x16 - ref).abs().mean() < 0.1                                             # same picture, bf16 rounding
    assert _as_dtype('fp16') == torch.float16
    with pytest.raises(ValueError, match='dtype'): _as_dtype('fp8')


def test_embed_needs_text_encoder_or_tokenizer():
    lat = tiny_latent_denoiser()
    with pytest.raises(ValueError, match='text_encoder'): lat.embed(torch.tensor([[1, 2]]))
    lat = tiny_latent_denoiser(prompt_len=4, text_encoder=tiny_clip().text_model)
    with pytest.raises(ValueError, match='tokenizer'): lat.embed(['a photo of a blond man'])
    assert lat.null_emb.shape == (1, 4, 32)
    with pytest.raises(ValueError, match='same'):                                     # prompts of another length
        guided_sample(lat, None, None, lat.embed(torch.tensor([[62, 5, 6, 7, 63]])), [0], cfg=GuideConfig.unguided(cfg_scale=2.0))


def test_download_celeba_without_torchvision(tmp_path, monkeypatch):
    "torchvision is optional: without it (or with one built for another torch) a clear message, and nothing written."
    from configkd.data import download_celeba
    monkeypatch.setitem(sys.modules, 'torchvision', None)             # `import torchvision...` raises ImportError
    monkeypatch.setitem(sys.modules, 'torchvision.datasets', None)
    with pytest.raises(ImportError, match=r'pip install torchvision') as e: download_celeba(tmp_path/'data')
    assert torch.__version__ in str(e.value) and 'CelebA' in str(e.value)
    assert not (tmp_path/'data').exists()


def _tiny_tokenizer(max_len:int=8):
    "A character-level CLIP tokenizer (26 letters, with and without the end-of-word mark; <bos> 62, <eos> 63)."
    import json, tempfile
    from transformers import CLIPTokenizer
    vocab = {**{c: i for i, c in enumerate('abcdefghijklmnopqrstuvwxyz')}, **{c + '</w>': 26 + i for i, c in enumerate('abcdefghijklmnopqrstuvwxyz')},
             '<|startoftext|>': 62, '<|endoftext|>': 63}
    with tempfile.TemporaryDirectory() as d:
        (Path(d)/'vocab.json').write_text(json.dumps(vocab)); (Path(d)/'merges.txt').write_text('#version: 0.2\n')
        return CLIPTokenizer(str(Path(d)/'vocab.json'), str(Path(d)/'merges.txt'), model_max_length=max_len)


def test_from_pretrained_on_local_tiny_checkpoints(clip, tmp_path):
    "The Colab loaders, run on tiny checkpoints saved in the Hub layout (a local folder instead of a download)."
    from diffusers import DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPImageProcessor
    tok = _tiny_tokenizer()
    # CLIP teacher: model, tokenizer and image processor in one folder, like openai/clip-vit-base-patch32
    clip.save_pretrained(tmp_path/'clip'); tok.save_pretrained(tmp_path/'clip')
    CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(tmp_path/'clip')
    t = CLIPTeacher.from_pretrained(str(tmp_path/'clip'), ['a dark person', 'a blond person'], device='cpu')
    x = torch.rand(3, 3, 32, 32)
    ids = tok(['a dark person', 'a blond person'], padding=True, truncation=True, return_tensors='pt')
    assert ids.input_ids.shape[1] == tok.model_max_length      # these prompts are longer than the tokenizer allows: cut, as from_pretrained does
    with torch.no_grad():
        torch.testing.assert_close(t(x), CLIPTeacher.zero_shot(clip, ids.input_ids, ids.attention_mask)(x))
    assert _frozen(t)
    # Stable Diffusion: unet/, vae/, text_encoder/, tokenizer/, scheduler/ subfolders
    te = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      max_position_embeddings=8, bos_token_id=62, eos_token_id=63, pad_token_id=63))
    lat = tiny_latent_denoiser(prompt_len=8, emb_dim=16)
    lat.unet.save_pretrained(tmp_path/'sd'/'unet'); lat.vae.save_pretrained(tmp_path/'sd'/'vae')
    te.save_pretrained(tmp_path/'sd'/'text_encoder'); tok.save_pretrained(tmp_path/'sd'/'tokenizer')
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path/'sd'/'scheduler')
    for dtype, slicing in (('fp32', 'auto'), ('bf16', None)):
        sd = LatentDenoiser.from_pretrained(str(tmp_path/'sd'), dtype=dtype, device='cpu', attention_slicing=slicing, vae_slicing=True)
        assert sd.dtype == _as_dtype(dtype) and sd.vae.use_slicing and sd.null_emb.shape == (1, 8, 16)
        cond = sd.embed(['a blond man', 'a dark man'])                                   # (2, 8, 16) through the tokenizer
        assert cond.shape == (2, 8, 16) and not torch.equal(cond[0], cond[1])
        torch.manual_seed(2); s = ConvNet(2).eval()
        xg = guided_sample(sd, t, s, cond, [1, 2], [1, 0], GuideConfig(steps=3, t_min=0, cfg_scale=2.0), init=torch.rand(2, 3, 16, 16))
        assert xg.shape == (2, 3, 16, 16) and xg.dtype == torch.float32 and 0 <= xg.min() and xg.max() <= 1
