#!/usr/bin/env python
"""How notebook 05's `default` preset was chosen: distiller settings compared on the dev split, three seeds each.

Every row is KD + ConfiG (or a reference) on Spurious Digits with the benchmark's diffusion model, one budget per row
for every method in it (images seen and SGD steps are the same for all rows: 24 epochs of the real images plus the
pool). Runs are cached (`cached_run_method`), so a second call prints at once. The test split is never read.

    python scripts/choose_preset.py            # 42 runs from an empty cache, most about a CPU minute each
    python scripts/choose_preset.py --variants # the default schedule's ratios, γ and paired reconstructions on dev of
                                               # the benchmark's two variants (24 runs)
"""
import argparse
from dataclasses import replace
from configkd.data import DigitsConfig, spurious_digits, digits_attr_reader
from configkd.models import get_teacher
from configkd.diffusion import PixelDenoiser, DiffusionConfig, GuideConfig, get_diffusion, get_digit_checker
from configkd.distill import DistillConfig, cached_run_method, final_metrics, BENCH_POOL_SKEW

BASE = dict(epochs=24, period=5, rounds=4, ratio=0.16)      # the earlier default, the start of the search
ROWS = [  # (name, method, distiller overrides, sampler overrides)
    ('period 5, 4 rounds, ratio 0.16', 'kd_config', {}, {}),
    ('period 5, 4 rounds, ratio 0.16, γ = 1', 'kd_config', {}, dict(gamma=1.0)),
    ('period 5, 4 rounds, ratio 0.3', 'kd_config', dict(ratio=0.3), {}),
    ('period 5, 4 rounds, ratio 0.3, γ = 1', 'kd_config', dict(ratio=0.3), dict(gamma=1.0)),
    ('period 5, 4 rounds, ratio 0.5', 'kd_config', dict(ratio=0.5), {}),
    ('period 4, 5 rounds, ratio 0.3', 'kd_config', dict(ratio=0.3, rounds=5, period=4), {}),
    ('period 4, 5 rounds, ratio 0.3, γ = 1', 'kd_config', dict(ratio=0.3, rounds=5, period=4), dict(gamma=1.0)),
    ('period 4, 5 rounds, ratio 0.5', 'kd_config', dict(ratio=0.5, rounds=5, period=4), {}),
    ('period 4, 5 rounds, ratio 0.5, γ = 1', 'kd_config', dict(ratio=0.5, rounds=5, period=4), dict(gamma=1.0)),
    ('period 4, 5 rounds, ratio 0.5, no paired reconstructions', 'kd_config', dict(ratio=0.5, rounds=5, period=4, pair_recon=False), {}),
    ('unguided img2img, period 5, 4 rounds, ratio 0.16', 'kd_unguided', {}, {}),
    ('unguided img2img, period 5, 4 rounds, ratio 0.3', 'kd_unguided', dict(ratio=0.3), {}),
    ('unguided img2img, period 4, 5 rounds, ratio 0.3', 'kd_unguided', dict(ratio=0.3, rounds=5, period=4), {}),
    ('unguided img2img, period 4, 5 rounds, ratio 0.5', 'kd_unguided', dict(ratio=0.5, rounds=5, period=4), {}),
]
VARIANTS = {'pool_skew 0.9': dict(pool_skew=0.9), 'minority_frac 0.02': dict(pool_skew=BENCH_POOL_SKEW, minority_frac=0.02)}
VARIANT_NAMES = ('period 4, 5 rounds, ratio 0.3', 'period 4, 5 rounds, ratio 0.5', 'period 4, 5 rounds, ratio 0.5, γ = 1',
                 'period 4, 5 rounds, ratio 0.5, no paired reconstructions')
VARIANT_ROWS = [r for r in ROWS if r[1] == 'kd_config' and r[0] in VARIANT_NAMES]


def study(dc, rows, variant=None):
    "Print each row's dev worst group on seeds 0-2 for Spurious Digits `dc`, then the table."
    teacher, checker = get_teacher(dc, progress=False), get_digit_checker(dc, progress=False)
    data = spurious_digits(dc, splits=('train', 'val', 'test', 'dev'))
    den = PixelDenoiser(get_diffusion(DiffusionConfig(), dc, progress=False))
    out, prefix, where = {}, f'{variant}: ' if variant else '', f' ({variant})' if variant else ''
    for name, method, kc, kg in rows:
        for seed in (0, 1, 2):
            cfg = DistillConfig(**{**BASE, **kc}, seed=seed)
            d = cached_run_method(method, teacher, data, den, cfg, replace(GuideConfig(steps=10), **kg), dc, checker,
                                  progress=False, attr_fn=digits_attr_reader(dc))
            out[(name, f'seed {seed}')] = final_metrics(d, data['dev'])['wga']
        print(f"{prefix}{name}: {[round(out[(name, f'seed {s}')], 3) for s in (0, 1, 2)]}", flush=True)
    print(f'\n| dev worst-group{where} (γ = 2 unless stated) | method | seed 0 | seed 1 | seed 2 | mean |\n|---|---|---|---|---|---|')
    for name, method, *_ in rows:
        w = [out[(name, f'seed {s}')] for s in (0, 1, 2)]
        print(f"| {name.replace('unguided img2img, ', '')} | {method} | " + ' | '.join(f'{v:.3f}' for v in w) + f" | {sum(w) / 3:.3f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--variants', action='store_true', help="the default schedule's ratios, γ and paired reconstructions on the benchmark's two variants instead")
    a = ap.parse_args(argv)
    if not a.variants: return study(DigitsConfig(pool_skew=BENCH_POOL_SKEW), ROWS)
    for name, kv in VARIANTS.items():
        study(DigitsConfig(**kv), VARIANT_ROWS, name)
        print()


if __name__ == '__main__':
    main()
