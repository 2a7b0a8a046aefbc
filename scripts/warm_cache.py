#!/usr/bin/env python
"""Fill the model cache with what several notebooks share, before `nbdev_test` runs them in parallel.

Without it, two notebooks that need the same cached object would each build it at the same time (twice the work,
then one atomic write wins): the teacher and ERM student (notebooks 01-07), the digit checker (04-07), and the
ConfiG run of notebooks 05 and 06 (`kd_config`, default preset, seed 0). Prints what each step cost.
"""
import time, torch
from configkd.data import DigitsConfig, spurious_digits
from configkd.models import get_teacher, get_erm_student
from configkd.diffusion import PixelDenoiser, get_diffusion, get_digit_checker
from configkd.distill import distill_preset, cached_run_method
from configkd.benchmark import BenchConfig


def step(name, fn):
    t0 = time.time(); out = fn(); print(f"  {name}: {time.time() - t0:.1f} s", flush=True); return out


def main():
    for dc in (DigitsConfig(), BenchConfig().data):      # the notebooks' data, and the benchmark's (a 3 % diffusion pool)
        step(f'teacher (pool_skew {dc.pool_skew})', lambda: get_teacher(dc, progress=False))
        step(f'ERM student (pool_skew {dc.pool_skew})', lambda: get_erm_student(dc, progress=False))
        step(f'digit checker (pool_skew {dc.pool_skew})', lambda: get_digit_checker(dc, progress=False))
    torch.set_num_threads(1)        # the distillation run as nbdev_test's single-thread workers would compute it
    dc = DigitsConfig(); data = spurious_digits(dc)
    cfg, guide = distill_preset('default', seed=0)
    den = PixelDenoiser(get_diffusion(data_cfg=dc, progress=False))
    step('ConfiG run of notebooks 05 and 06', lambda: cached_run_method(
        'kd_config', get_teacher(dc, progress=False), data, den, cfg, guide, dc, get_digit_checker(dc, progress=False), progress=False))


if __name__ == '__main__':
    main()
