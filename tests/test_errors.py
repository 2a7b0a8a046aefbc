"configkd.errors cross-checked against fairlearn's MetricFrame, plus bad input."
import warnings
import numpy as np, pandas as pd, pytest, torch
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score
from configkd.errors import group_metrics, wilson_interval, decompose, soft_ce

@pytest.mark.parametrize('seed', range(5))
def test_group_metrics_against_fairlearn(seed):
    rng = np.random.default_rng(seed)
    n, G = 300, 5
    y = rng.integers(0, 3, n); p = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    g = rng.integers(0, G, n)
    g[g == 3] = 4                                       # group 3 is empty
    train_counts = rng.integers(1, 100, G)
    with pytest.warns(UserWarning, match="no samples"):
        r = group_metrics(y, p, g, n_groups=G, train_group_counts=train_counts)
    mf = MetricFrame(metrics={'acc': accuracy_score, 'n': lambda yt, yp: len(yt)}, y_true=y, y_pred=p, sensitive_features=g)
    by = mf.by_group
    for k in by.index:
        assert r.table.acc[k] == pytest.approx(by.loc[k, 'acc']) and r.table.n[k] == by.loc[k, 'n']
    assert np.isnan(r.table.acc[3]) and 3 not in by.index
    assert r.wga == pytest.approx(mf.group_min()['acc'])
    assert r.mga == pytest.approx(by['acc'].mean())                                   # unweighted group mean
    assert r.acc == pytest.approx(mf.overall['acc'])                                  # sample mean
    w = train_counts[by.index.to_numpy()]
    assert r.train_weighted_acc == pytest.approx(np.sum(w * by['acc'].to_numpy()) / w.sum())   # train-weighted
    # the three averages genuinely differ on such data (peers mix them up)
    assert len({round(r.mga, 6), round(r.acc, 6), round(r.train_weighted_acc, 6)}) == 3

def test_wilson_against_closed_form():
    lo, hi = wilson_interval(np.array([0, 10, 5]), np.array([10, 10, 10]))
    assert lo[0] == 0 and hi[1] == 1 and hi[0] == pytest.approx(0.2775, abs=1e-3) and lo[1] == pytest.approx(0.7225, abs=1e-3)
    assert lo[2] == pytest.approx(0.2366, abs=1e-3) and hi[2] == pytest.approx(0.7634, abs=1e-3)

def test_bad_input():
    with pytest.raises(ValueError, match="same length"): group_metrics([0, 1], [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="`groups` holds id 5"): group_metrics([0], [0], [5], n_groups=2)
    with pytest.raises(ValueError, match="integer ids"): group_metrics([0, 1], [0.3, 0.9], [0, 1])
    with pytest.raises(ValueError, match="1-D"): group_metrics(np.zeros((2, 2)), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="`train_group_counts` must have 2"): group_metrics([0, 1], [0, 1], [0, 1], train_group_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="no groups"): group_metrics([], [], [])

def test_all_groups_empty_but_one():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = group_metrics([1, 1], [1, 0], [2, 2], n_groups=4)
    assert r.wga == 0.5 and r.mga == 0.5 and np.isnan(r.train_weighted_acc)

def test_soft_ce_against_kl_identity():
    s, t = torch.randn(6, 3), torch.randn(6, 3).softmax(-1)
    ent = -(t * t.log()).sum(-1)
    kl = torch.nn.functional.kl_div(s.log_softmax(-1), t, reduction='none').sum(-1)
    assert torch.allclose(soft_ce(s, t), kl + ent, atol=1e-6)                       # CE = KL + H(t)

def test_decompose_class_mismatch():
    from configkd.models import make_student, ConvNet
    from configkd.data import GroupedImages
    ds = GroupedImages(torch.rand(4, 3, 16, 16), [0, 1, 0, 1], [0, 1, 1, 0])
    with pytest.raises(ValueError, match="the teacher gives 3 logits per image but the data have 2 classes"):
        decompose(make_student(), ConvNet(n_classes=3), ds, ds)
