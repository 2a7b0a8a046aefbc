#!/usr/bin/env python
"""The GPU check, in one go, for a developer with a CUDA GPU (Colab, a workstation):

    python scripts/gpu_check.py --out results/gpu_check     # prints everything to quote, writes gpu_check.json there

1. the machine: GPU name, memory, torch / CUDA versions;
2. pixel generation: images/s of the batched guided DDIM sampler (the shipped pixel model, ConfiG guidance through
   teacher and student, `GuideConfig()` = 20 trailing steps, img2img strength 0.8), guided vs unguided cost, and the
   batched vs per-image speed-up;
3. the latent path: tiny Stable-Diffusion-style components end to end, then a full-size Stable Diffusion 2.x UNet and
   VAE built from their configs with random weights (no download) and a CLIP ViT-B/32-sized teacher, guided img2img
   at 512x512 under fp16 at batch 1, 2 and 4, with and without classifier-free guidance: images/s and peak GPU memory
   per batch size (the weights are random, so only speed and memory mean anything);
4. the notebooks' GPU cells: `nbdev_test --flags cuda` (pass/fail and time);
5. the `gpu` preset of the benchmark on Spurious Digits, one seed, every method: its table and wall time.

`--cpu-smoke` runs every part at tiny sizes on the CPU (the test suite does), so the script itself is tested without a GPU.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path


def _sync(dev):
    import torch
    if dev.type == 'cuda': torch.cuda.synchronize()


def generation_rate(n:int, n_single:int, device=None) -> dict:
    "Images/s of the guided pixel sampler: one batch of `n`, and `n_single` images one at a time; unguided for the ratio."
    import torch
    from configkd.data import DigitsConfig, spurious_digits
    from configkd.models import get_teacher, get_erm_student, pick_device
    from configkd.diffusion import PixelDenoiser, get_diffusion, GuideConfig, guided_sample
    dev = pick_device(device)
    dc = DigitsConfig()
    train = spurious_digits(dc, splits=('train',))['train']
    den = PixelDenoiser(get_diffusion(data_cfg=dc, progress=False, device=dev))
    teacher, student = get_teacher(dc, progress=False).to(dev).eval(), get_erm_student(dc, progress=False).to(dev).eval()
    src = train[torch.arange(n) % len(train)]
    out = {}
    for name, g in (('guided', GuideConfig(bs=n)), ('unguided', GuideConfig(bs=n, scale=0.0))):
        guided_sample(den, teacher, student, src.cls[:2], [0, 1], src.y[:2], g, src.images[:2])   # warm-up
        _sync(dev); t0 = time.time()
        guided_sample(den, teacher, student, src.cls, list(range(n)), src.y, g, src.images)
        _sync(dev); out[f'{name}_images_per_s'] = n / (time.time() - t0)
    _sync(dev); t0 = time.time()
    for i in range(n_single):
        guided_sample(den, teacher, student, src.cls[i:i + 1], [i], src.y[i:i + 1], GuideConfig(bs=1), src.images[i:i + 1])
    _sync(dev); out['per_image_images_per_s'] = n_single / (time.time() - t0)
    out['guided_over_unguided_cost'] = out['unguided_images_per_s'] / out['guided_images_per_s']
    out['batched_over_per_image'] = out['guided_images_per_s'] / out['per_image_images_per_s']
    out['device'] = str(dev); out['batch'] = n
    return out


def sd_components(full:bool, dtype, dev):
    "A Stable Diffusion 2.x-shaped UNet + VAE (`full`: the real sizes, 865 M + 84 M parameters) with random weights."
    import torch
    from diffusers import UNet2DConditionModel, AutoencoderKL
    from configkd.latent import LatentDenoiser, tiny_latent_denoiser
    if not full: return tiny_latent_denoiser().to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                    use_linear_projection=True, block_out_channels=(320, 640, 1280, 1280))
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                            down_block_types=('DownEncoderBlock2D',) * 4, up_block_types=('UpDecoderBlock2D',) * 4, layers_per_block=2)
    den = LatentDenoiser(unet.to(dev, dtype), vae.to(dev, dtype), torch.zeros(1, 77, 1024, device=dev, dtype=dtype))
    return den.memory_options(gradient_checkpointing=True)


def latent_rates(full:bool, device=None, batches=(1, 2, 4)) -> list[dict]:
    "Guided latent img2img: images/s and peak GPU memory per batch size, with and without classifier-free guidance."
    import torch
    from configkd.models import pick_device, CLIPTeacher, ConvNet
    from configkd.diffusion import GuideConfig, guided_sample
    dev = pick_device(device)
    dtype = torch.float16 if dev.type == 'cuda' else torch.float32
    den = sd_components(full, dtype, dev)
    K, L, D = 2, den.null_emb.shape[1], den.null_emb.shape[2]
    den.set_class_prompts(torch.randn(K, L, D, device=dev, dtype=dtype))
    if full:
        from transformers import CLIPConfig, CLIPModel
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1); clip = CLIPModel(CLIPConfig()).to(dev, dtype).eval()          # ViT-B/32 sized, random
        teacher = CLIPTeacher(clip, torch.randn(K, clip.config.projection_dim)).to(dev)
    else: teacher = ConvNet(K).to(dev).eval()
    student = ConvNet(K).to(dev).eval()                               # a small student at the images' size
    size = den.image_size if full else 32
    rows = []
    for bs in (batches if full else (1, 2)):
        for cfg_scale in (1.0, 7.5):
            g = GuideConfig(steps=20 if full else 3, strength=0.6, scale=0.5, t_min=0, cfg_scale=cfg_scale, bs=bs)
            init = torch.rand(bs, 3, size, size)
            if dev.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
            _sync(dev); t0 = time.time()
            try:
                guided_sample(den, teacher, student, torch.arange(bs) % K, list(range(bs)), torch.arange(bs) % K, g, init)
                _sync(dev); sec = time.time() - t0
                peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == 'cuda' else float('nan')
                rows.append({'batch': bs, 'cfg_scale': cfg_scale, 'images_per_s': bs / sec, 'peak_gib': peak, 'size': size})
            except torch.OutOfMemoryError:
                rows.append({'batch': bs, 'cfg_scale': cfg_scale, 'images_per_s': 0.0, 'peak_gib': float('inf'), 'size': size, 'oom': True})
    return rows


def cuda_cells(root:Path, timeout:int) -> dict:
    "Run the notebooks' `#| cuda` cells (and everything else) with `nbdev_test --flags cuda`."
    t0 = time.time()
    exe = str(Path(sys.executable).parent/'nbdev_test')
    r = subprocess.run([exe if Path(exe).exists() else 'nbdev_test', '--flags', 'cuda', '--n_workers', '1', '--timing'],
                       cwd=root, capture_output=True, text=True, timeout=timeout)
    return {'passed': r.returncode == 0, 'seconds': round(time.time() - t0, 1), 'tail': (r.stdout + r.stderr)[-3000:]}


def bench(preset, seeds, out, device, quick):
    from configkd.benchmark import BenchConfig, BENCH_METHODS, prepare, run_benchmark, save_results, markdown_table
    bc = BenchConfig(preset, seeds, 'teacher,kd' if quick else ','.join(BENCH_METHODS), device=device, workers=1)
    t0 = time.time(); ctx = prepare(bc, progress=False)
    rows = run_benchmark(bc, Path(out)/'bench', progress=False, ctx=ctx, command='scripts/gpu_check.py')
    save_results(rows, Path(out)/'bench', ctx)
    return rows, time.time() - t0, markdown_table(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='runs/gpu_check')
    ap.add_argument('--n', type=int, default=1024, help='images in the batched pixel generation measurement')
    ap.add_argument('--n_single', type=int, default=32, help='images generated one at a time')
    ap.add_argument('--preset', default='gpu')
    ap.add_argument('--seeds', default='0')
    ap.add_argument('--device', default=None)
    ap.add_argument('--skip', default='', help='comma-separated parts to skip: pixel, latent, cells, bench')
    ap.add_argument('--cells_timeout', type=int, default=1800)
    ap.add_argument('--cpu-smoke', '--quick', dest='quick', action='store_true', help='every part at tiny sizes, for a CPU')
    a = ap.parse_args()
    skip = set(a.skip.split(',')) - {''}
    if a.quick: a.n, a.n_single, a.preset, skip = 16, 2, 'tiny', skip | {'cells'}
    t_all, res = time.time(), {}
    import torch
    res['machine'] = (f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                      + (f"{torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
                         if torch.cuda.is_available() else "no GPU (CPU run)"))
    print(res['machine'], flush=True)
    if 'pixel' not in skip:
        r = res['generation'] = generation_rate(a.n, a.n_single, a.device)
        print(f"pixel generation ({r['device']}, batch {r['batch']}, 20 DDIM steps x 0.8): {r['guided_images_per_s']:.1f} images/s guided, "
              f"{r['unguided_images_per_s']:.1f} unguided (guided step costs {r['guided_over_unguided_cost']:.2f}x), one image at a time "
              f"{r['per_image_images_per_s']:.2f} images/s: batched is {r['batched_over_per_image']:.1f}x faster", flush=True)
    if 'latent' not in skip:
        res['latent_tiny'] = latent_rates(False, a.device)
        print(f"latent path, tiny components: {len(res['latent_tiny'])} guided runs ok", flush=True)
        if torch.cuda.is_available() and not a.quick:
            res['latent_sd2'] = latent_rates(True, a.device)
            for row in res['latent_sd2']:
                print(f"SD 2.x-sized UNet + VAE, 512x512 img2img, fp16, guided, batch {row['batch']}, CFG {row['cfg_scale']:g}: "
                      f"{row['images_per_s']:.3f} images/s, peak {row['peak_gib']:.1f} GiB" + (' (out of memory)' if row.get('oom') else ''), flush=True)
    if 'cells' not in skip:
        res['cuda_cells'] = cuda_cells(Path(__file__).resolve().parents[1], a.cells_timeout)
        print(f"nbdev_test --flags cuda: {'passed' if res['cuda_cells']['passed'] else 'FAILED'} in {res['cuda_cells']['seconds']:.0f} s\n"
              + res['cuda_cells']['tail'][-1500:], flush=True)
    if 'bench' not in skip:
        rows, wall, table = bench(a.preset, a.seeds, a.out, a.device, a.quick)
        res['bench_wall_s'] = wall
        print('\n' + table + f"\n\nbenchmark preset {a.preset}, seeds {a.seeds}: {wall:.0f} s wall")
    res['whole_check_s'] = time.time() - t_all
    print(f"whole check {res['whole_check_s']:.0f} s")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.out, 'gpu_check.json').write_text(json.dumps(res, indent=1, default=str))


if __name__ == '__main__':
    main()
