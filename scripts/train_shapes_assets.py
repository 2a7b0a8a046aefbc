#!/usr/bin/env python
"""Train the diffusion model of notebook 08 (Spurious Shapes) that ships in configkd/assets/diffusion_shapes32.

    python scripts/train_shapes_assets.py       # about 40 minutes on one CPU thread; resumable (rerun after a crash)

It trains `train_diffusion` on the `pool` split of `ShapesConfig()` (seed 0) with the settings below, at
`compute_threads()` threads (1 unless $CONFIGKD_THREADS says otherwise), keeps a resumable training state next to the
output folder and a snapshot of the EMA weights every `--ckpt_every` steps (`<out>-latest`; both are removed once the model is
saved), and writes
TRAINED_WITH.md with this command, the settings, the wall time, the machine and the pool's fingerprint.
"""
import argparse, platform, sys, time
from dataclasses import asdict
from pathlib import Path

import torch
from configkd.shapes import ShapesConfig, spurious_shapes, SHAPES_DIFFUSION, shapes_diffusion_config
from configkd.diffusion import train_diffusion, save_diffusion
from configkd.distill import fingerprint, fingerprint_data
from configkd.models import assets_dir, compute_threads
from configkd.benchmark import cpu_model

NOTE = """# {name}: the diffusion model of notebook 08 (Spurious Shapes)

- What: a class-conditional diffusers `UNet2DModel` (block widths {channels}, {layers} ResNet layer per block,
  {params:,} parameters, {k} class embeddings with id {null} the null class, EMA weights {ema}, `DDPMScheduler` with
  {T:,} linear-beta steps) for 32×32 RGB images.
- Data: the `pool` split of `ShapesConfig()` (seed 0): {n:,} images, 2,000 per shape, {skew:.0%} on the shape's usual
  scene colour and the rest split evenly over the two others; conditioned on the shape, {drop:.0%} of labels dropped.
  Pool fingerprint `{fpd}` (`fingerprint_data(spurious_shapes()['pool'])`; a test checks that the code still makes it).
- Settings: `shapes_diffusion_config()` = `{cfg}`.
- Command: `python scripts/train_shapes_assets.py` (from the repository root), {threads} torch thread(s), {seconds:,.0f} s
  on {cpu}, torch {torch}, python {py}; final training loss {loss:.4f}. Weights fingerprint `{fp}`.
  (The thread count can change the last float bits, so a rerun on another machine matches up to rounding.)
"""

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(assets_dir()/SHAPES_DIFFUSION), help='the model folder to write')
    ap.add_argument('--ckpt_every', type=int, default=250, help='steps between resumable checkpoints and snapshots')
    args = ap.parse_args(); out = Path(args.out)
    data_cfg = ShapesConfig(); pool = spurious_shapes(data_cfg, splits=['pool'])['pool']
    cfg = shapes_diffusion_config(pool)
    data = {'kind': 'Spurious Shapes pool', 'shapes': asdict(data_cfg), 'split': 'pool', 'fingerprint': fingerprint_data(pool)}
    snap = out.parent/f'{out.name}-latest'
    def on_ckpt(step, ema, hist):
        save_diffusion(ema, snap, cfg, data=data, extra={'step': step, 'history': hist, 'partial': step < cfg.steps})
        print(f"step {step}: loss {hist[-1]['loss']:.4f}", flush=True)
    t0 = time.time()
    unet, hist = train_diffusion(cfg, ds=pool, ckpt=out.parent/f'.{out.name}.state.pt', ckpt_every=args.ckpt_every,
                                 on_ckpt=on_ckpt, progress=False)
    sec = time.time() - t0
    save_diffusion(unet, out, cfg, data=data, extra={'step': cfg.steps, 'history': hist, 'train_seconds_last_session': round(sec)})
    (out/'TRAINED_WITH.md').write_text(NOTE.format(
        name=out.name, channels=', '.join(map(str, cfg.channels)), layers=cfg.layers_per_block,
        params=sum(p.numel() for p in unet.parameters()), k=cfg.n_classes + 1, null=cfg.null_class, ema=cfg.ema,
        T=cfg.timesteps, n=len(pool), skew=data_cfg.pool_skew, drop=cfg.cond_drop, fpd=data['fingerprint'], cfg=cfg,
        threads=compute_threads(), seconds=sec, cpu=cpu_model(), torch=torch.__version__, py=platform.python_version(),
        loss=hist[-1]['loss'], fp=fingerprint(unet)))
    (out.parent/f'.{out.name}.state.pt').unlink(missing_ok=True)        # finished: the resumable state and the snapshot go
    import shutil; shutil.rmtree(snap, ignore_errors=True)
    print(f"saved {out}: {cfg.steps} steps in {sec:.0f} s this session, final loss {hist[-1]['loss']:.4f}, weights {fingerprint(unet)}")

if __name__ == '__main__': main()
