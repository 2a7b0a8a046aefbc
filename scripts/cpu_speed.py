"""How slow this CPU is against the machine the notebooks' time budgets were set on, as one factor (>= 1).

`scripts/test.sh` multiplies each notebook's CPU budget by it, so that a budget catches a notebook that grew slower,
not a machine that is slower: the same notebooks took 2.1-2.3x as long on an AVX2-only AMD EPYC as on the AVX-512
Intel Xeon the budgets were set on. The workload is what the notebooks spend their time on: training configkd's student conv
net at one thread (as every configkd training path runs). Prints the seconds and the factor; `--factor` prints the
factor only.
"""
import argparse, time
import torch, torch.nn as nn
from configkd.models import make_student

REFERENCE_S = 1.00  # seconds of `workload()` on the reference machine (2-core Intel Xeon, AVX-512): 0.93-1.04 alone

def workload(reps:int=3) -> float:
    "Median seconds of 20 AdamW steps (batch 128, 32x32 RGB) of configkd's student `ConvNet`, one thread."
    torch.set_num_threads(1); torch.manual_seed(0)
    net = make_student(3)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 3, (128,))
    def steps(n):
        for _ in range(n):
            loss = nn.functional.cross_entropy(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
    steps(3)                                                      # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter(); steps(20); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--factor', action='store_true', help='print only the factor')
    a = ap.parse_args()
    s = workload()
    f = max(1.0, s / REFERENCE_S)
    print(f"{f:.2f}" if a.factor else f"cpu speed: {s:.2f} s for the workload, {REFERENCE_S} s on the reference machine: budget factor {f:.2f}")
