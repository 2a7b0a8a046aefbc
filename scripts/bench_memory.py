#!/usr/bin/env python
"""Peak resident memory of a CelebA-sized training set through the distiller, stored as float32 or as uint8.

    python scripts/bench_memory.py                    # 20,000 images of 64x64 RGB, both storages, one process each

A fake set the size of a 20,000-image CelebA subset at 64 px (random pixels: memory does not depend on content) goes
through what a ConfiG run does with it: the teacher's logits on every image, one generation round (a small random
64 px pixel generator on 1 % of the images as sources) and one epoch of distillation. Each storage runs in a fresh
process, so the peaks do not mix; the script prints the peak RSS after each stage and the ratio.
"""
import argparse, json, resource, subprocess, sys, time


def peak_mb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(dtype:str, n:int, size:int) -> dict:
    import torch
    from configkd.data import GroupedImages
    from configkd.models import make_teacher, make_student
    from configkd.diffusion import DiffusionConfig, PixelDenoiser, make_unet, GuideConfig
    from configkd.distill import Distiller, DistillConfig, config_augmenter
    out = {'dtype': dtype, 'n': n, 'size': size, 'start_mb': peak_mb()}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    if dtype == 'float32': x = x.float() / 255
    ds = GroupedImages(x, torch.randint(0, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g))
    del x
    out['data_mb'] = peak_mb()
    torch.manual_seed(0); teacher = make_teacher().eval()
    den = PixelDenoiser(make_unet(DiffusionConfig(size=size, channels=(16, 32, 32), n_classes=2)))
    aug = config_augmenter(den, teacher, GuideConfig(steps=2, strength=1.0, t_min=0, bs=50), purify=0.0, pair_recon=False)
    cfg = DistillConfig(epochs=2, period=1, rounds=1, ratio=0.01, recon=False, epoch_size=1.0, bs=256)
    d = Distiller(teacher, ds, cfg, aug, den, progress=False)
    t0 = time.time(); st = d._prepare(d._init_state()); out['teacher_logits_mb'], out['teacher_logits_s'] = peak_mb(), time.time() - t0
    t0 = time.time(); d._round(st, 0); out['round_mb'], out['round_s'] = peak_mb(), time.time() - t0
    t0 = time.time(); d._epoch(st); out['epoch_mb'], out['epoch_s'] = peak_mb(), time.time() - t0
    out['pool'] = len(st['pool']); out['stored_mb'] = ds.data.element_size() * ds.data.nelement() / 2**20
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=20000, help='images')
    ap.add_argument('--size', type=int, default=64, help='image side')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)          # internal: run one storage in this process
    a = ap.parse_args()
    if a.one: print(json.dumps(one(a.one, a.n, a.size))); return
    rows = []
    for dtype in ('float32', 'uint8'):
        r = subprocess.run([sys.executable, __file__, '--one', dtype, '--n', str(a.n), '--size', str(a.size)],
                           capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"{a.n} images of {a.size}x{a.size} RGB; peak resident memory (MB) after each stage, one process per storage:\n")
    print('| storage | images in memory | after building the set | teacher logits | one round | one epoch |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['dtype']} | {r['stored_mb']:.0f} | {r['data_mb']:.0f} | {r['teacher_logits_mb']:.0f} | {r['round_mb']:.0f} | {r['epoch_mb']:.0f} |")
    f, u = rows
    print(f"\npeak after one epoch: float32 {f['epoch_mb']:.0f} MB, uint8 {u['epoch_mb']:.0f} MB "
          f"({f['epoch_mb'] / u['epoch_mb']:.2f}x); the images alone: {f['stored_mb']:.0f} vs {u['stored_mb']:.0f} MB")


if __name__ == '__main__':
    main()
