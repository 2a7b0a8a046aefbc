"""One device per run: every model an entry point calls is placed on the run's device by configkd itself.

On a CPU-only machine a model left on the CPU and one moved to the CPU look alike, so the audit records which models
configkd moved where: `nn.Module.to` (and `.cuda`/`.cpu`) calls are logged per model, and a forward pre-hook fails any
call of a watched model (the user's teacher, checker and diffusion UNet) that the pipeline did not place on the device
it was given. Before the device fixes, the distiller used the teacher wherever `get_teacher` had left it (the CPU):
on a GPU run its first teacher call failed; here the audit fails on the same call.
"""
import contextlib
import pytest
import torch
import torch.nn as nn

from configkd.data import DigitsConfig, spurious_digits, digits_attr_reader
from configkd.models import ConvNet, make_teacher
from configkd.diffusion import DiffusionConfig, PixelDenoiser, make_unet, GuideConfig, config_round
from configkd.distill import Distiller, DistillConfig, config_augmenter, distill_preset, run_method
from configkd.tab import run_tab, TabConfig

torch.set_num_threads(1)


@contextlib.contextmanager
def device_audit(watched: dict, device):
    "Fail any forward call of a watched model (name -> module) that configkd did not move to `device` first."
    device, placed, bad = torch.device(device), {}, []
    ids = {id(m): name for name, m in watched.items()}
    orig_to = nn.Module.to
    def to(self, *a, **k):
        if id(self) in ids:
            dev = next((torch.device(x) for x in list(a) + [k.get('device')] if isinstance(x, (str, torch.device))), None)
            if dev is not None: placed[id(self)] = dev
        return orig_to(self, *a, **k)
    def hook(module, args):
        if id(module) in ids and placed.get(id(module)) != device: bad.append(ids[id(module)])
    nn.Module.to = to
    h = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try: yield bad
    finally: nn.Module.to = orig_to; h.remove()


@pytest.fixture(scope='module')
def tiny():
    dc = DigitsConfig()
    data = spurious_digits(dc, splits=('train', 'dev'))
    torch.manual_seed(0); teacher = make_teacher().eval()
    torch.manual_seed(1); den = PixelDenoiser(make_unet(DiffusionConfig.tiny()))
    torch.manual_seed(2); checker = ConvNet(10).eval()
    return dc, data, teacher, den, checker


def test_distiller_places_every_model_on_its_device(tiny):
    dc, data, teacher, den, checker = tiny
    cfg = DistillConfig(epochs=2, period=1, rounds=1, ratio=0.05, recon=True, bs=64)
    aug = config_augmenter(den, teacher, GuideConfig(steps=3, t_min=0, bs=32), checker=checker, attr_fn=digits_attr_reader(dc))
    with device_audit({'teacher': teacher, 'unet': den.unet, 'checker': checker}, 'cpu') as bad:
        Distiller(teacher, data['train'][:200], cfg, aug, den, device='cpu', progress=False).run()
    assert not bad, f"models used without being placed on the run's device: {sorted(set(bad))}"


def test_the_audit_catches_a_model_left_behind(tiny):
    "The audit can fail: a teacher called without the pipeline having moved it is reported."
    dc, data, teacher, den, checker = tiny
    fresh = make_teacher().eval()
    with device_audit({'teacher': fresh}, 'cpu') as bad:
        fresh(data['train'].images[:2])
    assert bad == ['teacher']


def test_round_tab_and_methods_place_their_models(tiny):
    dc, data, teacher, den, checker = tiny
    cfg, guide = distill_preset('tiny', 0)
    with device_audit({'teacher': teacher, 'unet': den.unet}, 'cpu') as bad:
        run_method('kd_unguided', teacher, {'train': data['train'][:150]}, den, DistillConfig(epochs=2, period=1, rounds=1, ratio=0.05, bs=64),
                   replace_steps(guide), dc, device='cpu', progress=False)
        run_tab(data['train'][:100], torch.randn(100, 2), TabConfig(epochs=1, helper_epochs=1), device='cpu', progress=False)
    assert not bad, sorted(set(bad))


def replace_steps(g):
    from dataclasses import replace
    return replace(g, steps=3)


def test_unknown_or_absent_devices_fail_before_work(tiny):
    dc, data, teacher, den, checker = tiny
    with pytest.raises(ValueError, match='`device`'): Distiller(teacher, data['train'], device='tpu9')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA device'): Distiller(teacher, data['train'], device='cuda')
