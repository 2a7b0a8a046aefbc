#!/usr/bin/env python
"""Benchmark of the guided DDIM sampler (notebook 04): prints ratios measured in one run (no timed asserts).

- images/s of the batched guided sampler vs the seed-style per-image loop (the same sampler, one image at a time,
  the same number of guided steps), target >= 20x;
- cost of a guided DDIM step vs an unguided one (same batch), target <= 2.5x;
- peak resident memory of each mode, each measured in a fresh subprocess (ru_maxrss above the post-load baseline).

Usage: python scripts/bench_sampler.py [--n 64] [--n_single 8] [--steps 20] [--threads 1]
"""
import argparse, json, resource, subprocess, sys, time


def _setup(threads):
    import torch
    torch.set_num_threads(threads)
    from configkd.diffusion import PixelDenoiser, get_diffusion
    from configkd.models import make_student, make_teacher
    torch.manual_seed(0)
    den = PixelDenoiser(get_diffusion(progress=False))
    teacher, student = make_teacher().eval(), make_student().eval()   # weights do not matter for cost
    return den, teacher, student


def run_mode(mode, n, n_single, steps, threads):
    "Time one mode in this process; returns a dict with seconds, images and peak memory above the baseline (MiB)."
    import torch
    from configkd.diffusion import GuideConfig, guided_sample, latent_opt
    den, teacher, student = _setup(threads)
    cond = torch.arange(n) % 10
    target = (cond >= 5).long()
    seeds = list(range(n))
    guided = GuideConfig(steps=steps, t_min=0, scale=2.0, bs=n)
    # warm-up (first calls allocate and pick kernels)
    guided_sample(den, teacher, student, cond[:2], seeds[:2], target[:2], GuideConfig(steps=2, t_min=0, bs=2))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if mode == 'batched_guided':
        guided_sample(den, teacher, student, cond, seeds, target, guided); k = n
    elif mode == 'batched_unguided':
        guided_sample(den, None, None, cond, seeds, cfg=GuideConfig.unguided(steps=steps, bs=n)); k = n
    elif mode == 'per_image_guided':
        for i in range(n_single):
            guided_sample(den, teacher, student, cond[i:i + 1], seeds[i:i + 1], target[i:i + 1], GuideConfig(steps=steps, t_min=0, bs=1))
        k = n_single
    elif mode == 'per_image_latent_opt':   # latent optimisation one image at a time: Adam on each image's input
        for i in range(n_single):
            latent_opt(lambda z: z.clamp(0, 1), teacher, student, torch.rand(1, 3, 16, 16), target[i:i + 1], iters=steps)
        k = n_single
    else: raise ValueError(mode)
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {'mode': mode, 'images': k, 'seconds': sec, 'images_per_s': k / sec, 'steps': steps,
            'peak_rss_mib': peak, 'peak_above_baseline_mib': peak - base}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=64, help='images for the batched modes (one batch)')
    ap.add_argument('--n_single', type=int, default=8, help='images for the per-image loops')
    ap.add_argument('--steps', type=int, default=20, help='DDIM steps (all guided) / latent_opt iterations')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    ap.add_argument('--mode', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:   # child process: one mode, JSON on the last line
        print(json.dumps(run_mode(a.mode, a.n, a.n_single, a.steps, a.threads))); return
    rows = {}
    for mode in ('batched_guided', 'batched_unguided', 'per_image_guided', 'per_image_latent_opt'):
        out = subprocess.run([sys.executable, __file__, '--mode', mode, '--n', str(a.n), '--n_single', str(a.n_single),
                              '--steps', str(a.steps), '--threads', str(a.threads)], capture_output=True, text=True, check=True)
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[mode]
        print(f"{mode:22s} {r['images']:4d} images in {r['seconds']:7.2f} s = {r['images_per_s']:7.2f} img/s; "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB ({r['peak_above_baseline_mib']:+.0f} MiB during the run)")
    bg, bu, pg = rows['batched_guided'], rows['batched_unguided'], rows['per_image_guided']
    print(f"\nbatched guided vs per-image guided loop (same steps): {bg['images_per_s'] / pg['images_per_s']:.1f}x images/s (target >= 20x)")
    print(f"batched guided vs per-image latent_opt loop (same iterations): {bg['images_per_s'] / rows['per_image_latent_opt']['images_per_s']:.1f}x images/s")
    print(f"guided step / unguided step (batch {a.n}, {a.steps} steps): {bg['seconds'] / bu['seconds']:.2f}x time (target <= 2.5x)")
    print(f"extra peak memory, guided vs unguided batch: {bg['peak_above_baseline_mib']:.0f} vs {bu['peak_above_baseline_mib']:.0f} MiB")


if __name__ == '__main__': main()
