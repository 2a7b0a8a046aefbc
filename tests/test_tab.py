"configkd.tab: per-sample KD loss, the recording KD loop, per-class clustering and its edge cases, the balanced sampler, TAB and the hybrid plumbing."
import time, warnings
import numpy as np, pandas as pd, pytest, torch
import torch.nn.functional as F
from configkd.data import GroupedImages, DigitsConfig, spurious_digits
from configkd.models import make_student, predict
from configkd.distill import kd_loss, DistillConfig, Distiller, oracle_augmenter, run_method, fingerprint, cached_run_method
from configkd.tab import (kd_loss_per_sample, TabConfig, kd_fit, loss_histories, cluster_histories, pseudo_groups,
                          pseudo_group_names, purity, pseudo_group_quality, BalancedSampler, run_tab, results_table,
                          distillation_set)


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    "These nets are tiny: one thread is as fast, and much faster on a shared, loaded CPU."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _toy(n=96, seed=0):
    "Random 8×8 images with labels, attributes and random 'teacher' logits."
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g); a = torch.randint(0, 2, (n,), generator=g)
    ds = GroupedImages(torch.rand(n, 3, 8, 8, generator=g), y, a)
    return ds, torch.randn(n, 2, generator=g) * 3


@pytest.mark.parametrize('T', [1.0, 4.0])
def test_kd_loss_per_sample_matches_references(T):
    s, t = torch.randn(10, 4), torch.randn(10, 4)
    l = kd_loss_per_sample(s, t, T)
    assert l.shape == (10,) and (l >= 0).all()
    assert l.mean().item() == pytest.approx(kd_loss(s, t, T).item(), abs=1e-6)
    ref = T * T * F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction='none', log_target=True).sum(-1)
    torch.testing.assert_close(l, ref)
    assert kd_loss_per_sample(t, t, T).abs().max() < 1e-6
    with pytest.raises(ValueError, match='same shape'): kd_loss_per_sample(s, t[:, :3])


def test_kd_fit_records_and_validates():
    ds, tl = _toy()
    cfg = TabConfig(epochs=3, bs=32)
    r = kd_fit(ds, tl, cfg, record=True, progress=False)
    assert r.losses.shape == (len(ds), 3) and torch.isfinite(r.losses).all()
    assert list(r.history.epoch) == [1, 2, 3] and (r.history.n_seen == len(ds)).all()
    r2 = kd_fit(ds, tl, cfg, record=True, progress=False)                  # same seed, same run
    torch.testing.assert_close(r.losses, r2.losses)
    # an explicit index list per epoch: only those samples are seen
    idx = [torch.arange(10)] * 3
    r3 = kd_fit(ds, tl, cfg, sampler=idx, progress=False)
    assert (r3.history.n_seen == 10).all() and (r3.history.n_unique == 10).all()
    with pytest.raises(ValueError, match=r'\(N, K\)'): kd_fit(ds, tl[:5], cfg, progress=False)
    with pytest.raises(ValueError, match='outside'): kd_fit(ds, tl, cfg, sampler=[torch.tensor([len(ds)])] * 3, progress=False)
    with pytest.raises(ValueError, match='one per epoch'): kd_fit(ds, tl, cfg, sampler=[torch.arange(4)], progress=False)
    with pytest.raises(ValueError, match='empty'): kd_fit(ds[torch.zeros(len(ds), dtype=torch.bool)], tl[:0], cfg, progress=False)


def test_kd_fit_uniform_is_distillers_plain_kd():
    "Same seeds, batches, optimiser and schedule as notebook 05's Distiller without rounds."
    train = spurious_digits(DigitsConfig(), splits=('train',))['train']
    torch.manual_seed(0); teacher = make_student().eval()                   # any frozen net will do as a teacher
    dcfg = DistillConfig(epochs=2, rounds=0, epoch_size=None)            # the real images once per epoch, as kd_fit's default
    d = run_method('kd', teacher, {'train': train}, cfg=dcfg, progress=False)
    r = kd_fit(train, predict(teacher, train), TabConfig.from_distill(dcfg), progress=False)
    np.testing.assert_allclose(r.history.loss.values, d.history.loss.values, atol=1e-4)


def test_cluster_histories_separates_and_ranks():
    g = torch.Generator().manual_seed(0)
    low, high = torch.rand(40, 6, generator=g) * 0.1, 2 + torch.rand(8, 6, generator=g)
    H = torch.cat([low, high, low + 0.05, high + 1])                          # class 0: 40 low, 8 high; class 1 likewise
    y = torch.tensor([0] * 48 + [1] * 48)
    rank = cluster_histories(H, y, n_classes=2)
    truth = torch.tensor(([0] * 40 + [1] * 8) * 2)
    assert torch.equal(rank, truth)
    assert torch.equal(pseudo_groups(rank, y), y * 2 + truth)
    # order of the samples does not matter
    perm = torch.randperm(len(y), generator=g)
    assert torch.equal(cluster_histories(H[perm], y[perm], 2), truth[perm])
    # k = 3: ranks follow the mean loss
    H3 = torch.cat([torch.zeros(10, 2), torch.ones(10, 2) * 5, torch.ones(10, 2)])
    r3 = cluster_histories(H3, torch.zeros(30, dtype=torch.long), k=3)
    assert r3.tolist() == [0] * 10 + [2] * 10 + [1] * 10
    assert pseudo_group_names(['a', 'b']) == ['a·low', 'a·high', 'b·low', 'b·high']


def test_cluster_histories_edge_cases():
    H = torch.tensor([[0.1, 0.1]] * 3 + [[5.0, 4.0], [0.2, 0.1], [4.0, 5.0]] + [[0.1, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    with pytest.warns(UserWarning) as rec:
        r = cluster_histories(H, y, n_classes=4)                              # class 3 absent: no warning, no error
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 2
    assert any('class 0' in m and 'distinct' in m for m in msgs)           # identical histories: one pseudo-group
    assert any('class 2 has 1 sample' in m for m in msgs)                   # one sample: one pseudo-group
    assert r.tolist() == [0, 0, 0, 1, 0, 1, 0]
    # a single class of all-identical histories, and an empty input
    with pytest.warns(UserWarning, match='distinct'): assert cluster_histories(torch.ones(5, 3), torch.zeros(5, dtype=torch.long)).sum() == 0
    assert len(cluster_histories(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), n_classes=2)) == 0
    with pytest.raises(ValueError, match='NaN'): cluster_histories(H * float('nan'), y)
    with pytest.raises(ValueError, match='one row per label'): cluster_histories(H[:3], y)
    with pytest.raises(ValueError, match='one row per label'): cluster_histories(H[:, 0], y)
    with pytest.raises(ValueError, match='must lie in'): cluster_histories(H, y, n_classes=2)
    with pytest.raises(ValueError, match='k'): cluster_histories(H, y, k=1)


def test_balanced_sampler():
    groups = torch.tensor([0] * 90 + [1] * 10 + [3] * 300)                  # group 2 empty
    s = BalancedSampler(groups, seed=1)
    assert len(s) == 400 and s.weights.sum().item() == pytest.approx(1.0)
    share = torch.bincount(groups[torch.cat([s(e) for e in range(10)])], minlength=4).float() / 4000
    np.testing.assert_allclose(share.numpy(), [1 / 3, 1 / 3, 0, 1 / 3], atol=0.03)
    assert torch.equal(s(2), s(2)) and not torch.equal(s(2), s(3))
    assert not torch.equal(s(0), BalancedSampler(groups, seed=2)(0))
    assert len(list(iter(s))) == 400
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(groups), batch_size=50, sampler=s)
    assert sum(len(b[0]) for b in dl) == 400
    assert len(BalancedSampler(groups, n=7)(0)) == 7
    with pytest.raises(ValueError, match='empty'): BalancedSampler(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match='>= 0'): BalancedSampler(torch.tensor([-1, 0]))


def test_purity_and_quality():
    assert purity([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert purity([0, 0, 0, 0], [5, 5, 7, 7]) == 0.5
    assert purity([0, 1, 1, 1], [5, 7, 7, 5]) == 0.75
    with pytest.raises(ValueError, match='same length'): purity([0], [0, 1])
    q = pseudo_group_quality(torch.tensor([0, 0, 1, 1, 0, 0]), torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0, 0, 1, 0, 3, 3]))
    assert q['n_minority'] == 1 and q['minority_recall'] == 1.0 and q['minority_precision'] == 0.5 and q['n_high'] == 2
    q0 = pseudo_group_quality(torch.zeros(4, dtype=torch.long), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 3, 3]))
    assert q0['purity'] == 1.0 and np.isnan(q0['minority_recall']) and np.isnan(q0['minority_precision'])


def test_run_tab_finds_planted_minority():
    "A teacher that disagrees with a colour shortcut on a few samples: the helper's histories flag them."
    g = torch.Generator().manual_seed(0)
    n = 160
    y = torch.arange(n) % 2
    a = y.clone(); a[:16] = 1 - a[:16]                                      # 16 minority samples (10 %)
    x = torch.rand(n, 3, 8, 8, generator=g) * 0.2
    x[:, 0] += 0.7 * (a == 0)[:, None, None].float(); x[:, 2] += 0.7 * (a == 1)[:, None, None].float()  # colour = a
    x[:, 1, 2:6, 2:6] += 0.6 * y[:, None, None].float()                     # a faint "digit" = y
    ds = GroupedImages(x.clamp(0, 1), y, a)
    tl = torch.stack([(1 - y) * 4.0, y * 4.0], 1) - 2.0                      # the teacher is right about y
    cfg = TabConfig(epochs=4, helper_epochs=6, bs=32)
    H = loss_histories(ds, tl, cfg, progress=False)
    assert H.shape == (n, 6)
    res = run_tab(ds, tl, cfg, progress=False)
    assert res.losses.shape == (n, 6) and res.pseudo.max() < 4 and res.quality['minority_recall'] >= 0.75, res.quality
    assert res.history.n_seen.eq(n).all()
    ora = run_tab(ds, tl, cfg, groups=ds.g, progress=False)
    assert ora.losses is None and ora.quality is None and torch.equal(ora.pseudo, ds.g)
    with pytest.raises(ValueError, match='entries'): run_tab(ds, tl, cfg, groups=ds.g[:3], progress=False)
    t = results_table({'x': __import__('configkd.errors', fromlist=['evaluate']).evaluate(res.student, ds)})
    assert list(t.columns) == ['WGA', 'MGA', 'acc'] and t.index.tolist() == ['x']


def test_distillation_set_and_cache(tmp_path):
    "The hybrid's plumbing, on the cheap oracle augmenter (no diffusion model)."
    dc = DigitsConfig()
    data = spurious_digits(dc, splits=('train',))
    data['train'] = data['train'][torch.arange(0, len(data['train']), 3)]  # a third of train, for speed
    torch.manual_seed(0); teacher = make_student().eval()
    cfg = DistillConfig(epochs=3, period=1, rounds=2, ratio=0.1, recon=False)
    d = Distiller(teacher, data['train'], cfg, oracle_augmenter(dc, pair=False), progress=False)   # the re-renders only
    with pytest.raises(ValueError, match='not run'): distillation_set(d)
    d.run()
    aug, tl = distillation_set(d)
    assert len(aug) == len(data['train']) + len(d.pool) == len(tl) and len(d.pool) > 0
    torch.testing.assert_close(tl, predict(teacher, aug), atol=1e-5, rtol=1e-4)   # logits aligned with the images
    assert (aug.g[len(data['train']):] != aug.y[len(data['train']):] * 3).all()    # the pool holds the flipped groups
    paired = Distiller(teacher, data['train'], cfg, oracle_augmenter(dc), progress=False).run()   # with each source beside it
    assert len(paired.pool) == 2 * len(d.pool) and (paired.pool.a != paired.pool.y).float().mean() == 0.5
    # the cache: second call loads the finished run instead of training
    t0 = time.time(); d1 = cached_run_method('oracle', teacher, data, cfg=cfg, data_cfg=dc, cache=tmp_path, progress=False); t1 = time.time() - t0
    files = list((tmp_path/'distill_runs').glob('oracle-*.pt'))
    assert len(files) == 1
    d2 = cached_run_method('oracle', teacher, data, cfg=cfg, data_cfg=dc, cache=tmp_path, progress=False)
    for k, v in d1.student.state_dict().items(): torch.testing.assert_close(v, d2.student.state_dict()[k])
    assert len(d2.pool) == len(d1.pool) and len(d2.history) == cfg.epochs
    torch.manual_seed(1); other = make_student().eval()
    assert fingerprint(other) != fingerprint(teacher) and fingerprint(teacher) == fingerprint(teacher)
    cached_run_method('oracle', other, data, cfg=cfg, data_cfg=dc, cache=tmp_path, progress=False)
    assert len(list((tmp_path/'distill_runs').glob('oracle-*.pt'))) == 2             # another teacher, another run
