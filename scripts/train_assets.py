#!/usr/bin/env python
"""Train the teacher and the digit checker that ship in configkd/assets (default Spurious Digits, seed 0).

    python scripts/train_assets.py              # writes configkd/assets/teacher_digits16 and digit_checker_digits16

Both train at `compute_threads()` threads (1 unless $CONFIGKD_THREADS says otherwise), from scratch (the shipped
copies are never read: `use_committed=False`), and each folder gets a TRAINED_WITH.md naming this command, the
configs, the seeds, the wall time and the machine. The teacher split does not depend on the diffusion pool's skew, so
these two models serve notebook 00's data and the benchmark's alike.
"""
import argparse, json, platform, sys, time
from dataclasses import asdict
from pathlib import Path

import torch
from configkd.data import DigitsConfig, spurious_digits
from configkd.models import (TrainConfig, cached_model, train_teacher, make_teacher, assets_dir, compute_threads, ConvNet,
                             config_key, CACHE_VERSION, save_model)
from configkd.diffusion import train_digit_checker
from configkd.distill import fingerprint
from configkd.errors import evaluate
from configkd.benchmark import cpu_model

NOTE = """# {name}: {what}

- Command: `python scripts/train_assets.py` (from the repository root), {threads} torch thread(s), {seconds:.0f} s on
  {cpu}, torch {torch}. It trained from scratch; the shipped copy is never read by that command.
- Data: the `teacher` split of `DigitsConfig()` (seed 0): the external digits, each rendered once per background,
  i.e. group-balanced ({n} images). The split does not depend on the pool's skew (`pool_skew`) or on `minority_frac`,
  so this model serves notebook 00's data and the benchmark's (`pool_skew=0.97`) alike.
- Config: `{cfg}`; architecture `{arch}`.
- Cache key `{key}` (kind `{kind}`): a builder whose key matches (`{builder}`) loads this folder instead of training.
- Test accuracy (group-balanced test split): worst group {wga:.3f}, mean over groups {mga:.3f}. Weights fingerprint `{fp}`.
"""

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(assets_dir()), help='folder to write the two model folders into')
    out = Path(ap.parse_args().out)
    dc = DigitsConfig(); test = spurious_digits(dc, splits=['test'])['test']
    n = len(spurious_digits(dc, splits=['teacher'])['teacher'])
    jobs = [('teacher_digits16', 'the robust teacher of Spurious Digits (notebook 01)', 'teacher_teacher', TrainConfig.teacher(),
             lambda cfg: train_teacher(dc, cfg, 'teacher', progress=False), make_teacher().config,
             dict(data=dc.fields_for('teacher')), 'get_teacher()'),
            ('digit_checker_digits16', 'the independent 10-way digit checker (notebook 04)', 'digit_checker', TrainConfig(epochs=30, lr=3e-3),
             lambda cfg: train_digit_checker(dc, cfg, progress=False), ConvNet(10, widths=(32, 64, 128), convs=1, dropout=0.1).config,
             dict(data={k: v for k, v in dc.fields_for('teacher').items() if k != 'task'}), 'get_digit_checker()')]
    for name, what, kind, cfg, train, arch, key_parts, builder in jobs:
        key = config_key(version=CACHE_VERSION, kind=kind, **key_parts, train=cfg, arch=arch)
        t0 = time.time(); m = train(cfg); sec = time.time() - t0
        save_model(m, out/name, extra={'key': key, 'kind': kind})
        if kind == 'teacher_teacher': rep = evaluate(m, test); wga, mga = rep.wga, rep.mga
        else:
            acc = (m(test.images).argmax(-1) == test.cls).float()
            per = [acc[test.g == g].mean().item() for g in range(test.n_groups)]; wga, mga = min(per), sum(per) / len(per)
        (out/name/'TRAINED_WITH.md').write_text(NOTE.format(
            name=name, what=what, threads=compute_threads(), seconds=sec, cpu=cpu_model(), torch=torch.__version__, n=n,
            cfg=cfg, arch=json.dumps(arch), key=key, kind=kind, builder=builder, wga=wga, mga=mga, fp=fingerprint(m)))
        print(f"{name}: key {key}, {sec:.0f} s, worst group {wga:.3f}, mean group {mga:.3f}, fingerprint {fingerprint(m)}")

if __name__ == '__main__': main()
