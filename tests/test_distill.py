"configkd.distill: KD loss against torchmetrics, bad input, and resume-after-crash equality."
import pytest, torch
import torch.nn.functional as F
from torchmetrics.functional import kl_divergence
from configkd.data import spurious_digits, DigitsConfig
from configkd.models import get_teacher
from configkd.distill import kd_loss, DistillConfig, Distiller, oracle_augmenter, run_method, final_metrics, cutmix

@pytest.mark.parametrize('T', [1.0, 2.0, 4.0, 10.0])
def test_kd_loss_against_torchmetrics(T):
    g = torch.Generator().manual_seed(int(T))
    s, t = torch.randn(16, 5, generator=g) * 3, torch.randn(16, 5, generator=g) * 3
    ref = T * T * kl_divergence(F.softmax(t / T, -1), F.softmax(s / T, -1), log_prob=False, reduction='mean')
    assert kd_loss(s, t, T=T).item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)

def test_kd_loss_alpha_mix():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    want = 0.7 * kd_loss(s, t, T=2.0) + 0.3 * F.cross_entropy(s, y)
    assert kd_loss(s, t, T=2.0, alpha=0.3, labels=y).item() == pytest.approx(want.item(), rel=1e-6)

def test_bad_input():
    with pytest.raises(ValueError, match=r"`T` \(temperature\) must be > 0"): kd_loss(torch.randn(2, 2), torch.randn(2, 2), T=-1)
    with pytest.raises(ValueError, match="same shape"): kd_loss(torch.randn(2, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="`alpha`"): kd_loss(torch.randn(2, 2), torch.randn(2, 2), alpha=2)
    with pytest.raises(ValueError, match="`period` must be >= 1"): DistillConfig(period=0)
    with pytest.raises(ValueError, match=r"`ratio` must lie in \(0, 1\]"): DistillConfig(ratio=1.5)
    with pytest.raises(ValueError, match=r"`ratio` must lie in \(0, 1\]"): DistillConfig(ratio=0)
    with pytest.raises(ValueError, match="do not fit"): DistillConfig(epochs=10, period=5, rounds=2)
    with pytest.raises(ValueError, match="unknown `method`"): run_method('kd_magic', None, {})
    with pytest.raises(ValueError, match="needs the diffusion model"): run_method('kd_config', None, {'train': None})

def test_cutmix_keeps_range_and_mixes():
    x = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)] * 4)
    m = cutmix(x, torch.Generator().manual_seed(0))
    assert m.shape == x.shape and 0 <= m.min() and m.max() <= 1

def _distiller(ckpt, data, teacher):
    cfg = DistillConfig(epochs=5, period=1, rounds=3, ratio=0.1, bs=64, recon=False)
    return Distiller(teacher, data['train'], cfg, oracle_augmenter(DigitsConfig()), test=data.get('test'), ckpt=ckpt, progress=False)

def test_resume_after_a_round_gives_identical_results(tmp_path):
    data, teacher = spurious_digits(splits=['train', 'test']), get_teacher(progress=False)
    full = _distiller(tmp_path/'a.pt', data, teacher).run()
    part = _distiller(tmp_path/'b.pt', data, teacher).run(stop_after=2)   # "crash" after the first round and one more epoch
    assert part.history.epoch.max() == 2 and len(part.rounds) == 1
    resumed = _distiller(tmp_path/'b.pt', data, teacher).run()          # a new process would do exactly this
    assert len(resumed.rounds) == 3 and len(resumed.pool) == len(full.pool)
    for k, v in full.student.state_dict().items(): assert torch.equal(v, resumed.student.state_dict()[k]), k
    assert final_metrics(full, data['test']) == final_metrics(resumed, data['test'])
    assert full.history.drop(columns=[]).equals(resumed.history)
    assert not list(tmp_path.glob('.*.tmp'))                             # nothing half-written left behind

def test_corrupt_or_foreign_checkpoint(tmp_path):
    data, teacher = spurious_digits(splits=['train']), get_teacher(progress=False)
    (tmp_path/'c.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match="corrupt or truncated"): _distiller(tmp_path/'c.pt', data, teacher).run()
    d = _distiller(tmp_path/'d.pt', data, teacher); d.run(stop_after=1)
    other = Distiller(teacher, data['train'], DistillConfig(epochs=6, period=1, rounds=3, ratio=0.1, recon=False),
                      oracle_augmenter(DigitsConfig()), ckpt=tmp_path/'d.pt', progress=False)
    with pytest.raises(ValueError, match="another DistillConfig"): other.run()
