#!/usr/bin/env python
"""The GPU check, in one go, for a developer with a CUDA GPU (Colab, a workstation):

    python scripts/gpu_check.py                 # writes runs/gpu_check/, prints everything quoted in a PR or issue note

1. the machine: GPU name, memory, torch / CUDA versions;
2. guided generation: images/s of the batched guided DDIM sampler (the committed pixel model, ConfiG guidance through
   teacher and student, `GuideConfig()` = 20 trailing steps, img2img strength 0.8), guided vs unguided cost ratio, and
   the batched vs per-image speed-up (the issue-4 target: >= 20x);
3. the `gpu` preset of the benchmark on Spurious Digits, one seed, every method: its table and wall time.

It runs on a CPU too (slowly; use `--quick` there), so the script itself is tested without a GPU.
"""
import argparse, json, os, sys, time
from pathlib import Path


def _sync(dev):
    import torch
    if dev.type == 'cuda': torch.cuda.synchronize()


def generation_rate(n:int, n_single:int, device=None) -> dict:
    "Images/s of the guided sampler: one batch of `n`, and `n_single` images one at a time; unguided for the ratio."
    import torch
    from configkd.data import DigitsConfig, spurious_digits
    from configkd.models import get_teacher, get_erm_student, pick_device
    from configkd.diffusion import PixelDenoiser, get_diffusion, GuideConfig, guided_sample
    dev = pick_device(device)
    dc = DigitsConfig()
    train = spurious_digits(dc, splits=('train',))['train']
    den = PixelDenoiser(get_diffusion(data_cfg=dc, progress=False, device=dev))
    teacher, student = get_teacher(dc, progress=False).to(dev).eval(), get_erm_student(dc, progress=False).to(dev).eval()
    idx = torch.arange(n) % len(train)
    src = train[idx]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default='runs/gpu_check')
    ap.add_argument('--n', type=int, default=1024, help='images in the batched generation measurement')
    ap.add_argument('--n_single', type=int, default=32, help='images generated one at a time')
    ap.add_argument('--preset', default='gpu')
    ap.add_argument('--seeds', default='0')
    ap.add_argument('--device', default=None)
    ap.add_argument('--quick', action='store_true', help='CPU smoke run: 16 images, tiny preset, two methods')
    a = ap.parse_args()
    if a.quick: a.n, a.n_single, a.preset = 16, 2, 'tiny'
    t_all = time.time()
    import torch
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
          + (f"{torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
             if torch.cuda.is_available() else "no GPU (CPU run)"), flush=True)
    rate = generation_rate(a.n, a.n_single, a.device)
    print(f"guided generation ({rate['device']}, batch {rate['batch']}, 20 DDIM steps x 0.8): "
          f"{rate['guided_images_per_s']:.1f} images/s guided, {rate['unguided_images_per_s']:.1f} unguided "
          f"(guided step costs {rate['guided_over_unguided_cost']:.2f}x), one image at a time "
          f"{rate['per_image_images_per_s']:.2f} images/s: batched is {rate['batched_over_per_image']:.1f}x faster", flush=True)
    from configkd.benchmark import BenchConfig, BENCH_METHODS, prepare, run_benchmark, save_results, markdown_table
    methods = 'teacher,kd' if a.quick else ','.join(BENCH_METHODS)
    bc = BenchConfig(a.preset, a.seeds, methods, device=a.device, workers=1)
    t0 = time.time()
    ctx = prepare(bc, progress=False)
    rows = run_benchmark(bc, a.out, progress=False, ctx=ctx)
    save_results(rows, a.out, ctx)
    wall = time.time() - t0
    print('\n' + markdown_table(rows))
    print(f"\nbenchmark preset {a.preset}, seeds {a.seeds}: {wall:.0f} s wall; whole check {time.time() - t_all:.0f} s")
    Path(a.out, 'gpu_check.json').write_text(json.dumps({'generation': rate, 'bench_wall_s': wall}, indent=1))


if __name__ == '__main__':
    main()
