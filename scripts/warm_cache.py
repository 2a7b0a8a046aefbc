#!/usr/bin/env python
"""Fill the model cache with what several notebooks share, before `nbdev_test` runs them in parallel.

Without it, two notebooks that need the same cached object would build it at the same time (one waits for the
other's lock, but the pair then runs serially): the ERM student (notebooks 01-07), the biased teacher (01, 05), and
the ConfiG run of notebooks 05, 06 and 07 (`kd_config`, default preset, seed 0, the benchmark's data). The teacher,
the digit checker and the diffusion models ship with the package. Prints what each step cost.
"""
import time
from configkd.data import DigitsConfig, spurious_digits, digits_attr_reader
from configkd.models import get_teacher, get_erm_student
from configkd.diffusion import PixelDenoiser, DiffusionConfig, get_diffusion, get_digit_checker
from configkd.distill import distill_preset, cached_run_method, BENCH_POOL_SKEW


def step(name, fn):
    t0 = time.time(); out = fn(); print(f"  {name}: {time.time() - t0:.1f} s", flush=True); return out


def main():
    dc = DigitsConfig(pool_skew=BENCH_POOL_SKEW)                         # the teacher and ERM splits ignore the pool's skew
    teacher = step('teacher (shipped)', lambda: get_teacher(dc, progress=False))
    step('ERM student', lambda: get_erm_student(dc, progress=False))
    step('biased teacher', lambda: get_teacher(dc, split='train', progress=False))
    checker = step('digit checker (shipped)', lambda: get_digit_checker(dc, progress=False))
    data = spurious_digits(dc, splits=('train', 'val', 'test', 'dev'))
    cfg, guide = distill_preset('default', seed=0)
    den = PixelDenoiser(get_diffusion(DiffusionConfig(), dc, progress=False))
    step('ConfiG run of notebooks 05, 06 and 07', lambda: cached_run_method(
        'kd_config', teacher, data, den, cfg, guide, dc, checker, progress=False, attr_fn=digits_attr_reader(dc)))


if __name__ == '__main__':
    main()
