"Tests for configkd.divergence: histogram divergences, edge cases, feature extraction, spurious ranking, model divergence."
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch.nn as nn
import torch.nn.functional as F

from configkd.data import DigitsConfig, spurious_digits
from configkd.divergence import (counterfactual_digits, divergence_table, feature_divergence, feature_frame, flip_rate,
                                 flip_rates, group_kl, hist_js, hist_kl, hist_mi, image_features, kl_rows,
                                 label_association, penultimate_features, shared_edges, smoothed_hist, spurious_ranking,
                                 stroke_mask)
from configkd.models import make_student


@pytest.fixture(scope='module')
def digits():
    return spurious_digits(splits=('train', 'test'))


# --- histogram KL / JS -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('bins,alpha', [(5, 1.0), (20, 0.5), (3, 1e-3)])
def test_hist_kl_matches_scipy(seed, bins, alpha):
    r = np.random.default_rng(seed)
    xa, xb = r.normal(0, 1, 40), r.normal(0.7, 1.5, 25)
    e = shared_edges(xa, xb, bins=bins)
    p, q = smoothed_hist(xa, e, alpha), smoothed_hist(xb, e, alpha)
    # smoothed histograms by hand
    ca, cb = np.histogram(xa, e)[0], np.histogram(xb, e)[0]
    np.testing.assert_allclose(p, (ca + alpha) / (len(xa) + bins * alpha))
    np.testing.assert_allclose(q, (cb + alpha) / (len(xb) + bins * alpha))
    assert hist_kl(xa, xb, bins, alpha) == pytest.approx(scipy.stats.entropy(p, q), abs=1e-12)
    m = (p + q) / 2
    js = 0.5 * scipy.stats.entropy(p, m) + 0.5 * scipy.stats.entropy(q, m)
    assert hist_js(xa, xb, bins, alpha) == pytest.approx(js, abs=1e-12)
    assert hist_js(xa, xb, bins, alpha) == pytest.approx(hist_js(xb, xa, bins, alpha), abs=1e-12)
    assert 0 <= hist_js(xa, xb, bins, alpha) <= np.log(2) + 1e-12
    # JS against scipy's jensenshannon (which returns the square root of the divergence)
    from scipy.spatial.distance import jensenshannon
    assert hist_js(xa, xb, bins, alpha) == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-10)


def test_shared_bins_fix_the_seed_pitfall():
    x = np.random.default_rng(0).normal(0, 1, 300)
    # own-range histograms of x and x + 3 are identical; shared bins see the shift
    own = [np.histogram(v, 10)[0] for v in (x, x + 3)]
    np.testing.assert_array_equal(own[0], own[1])
    assert hist_kl(x, x + 3) > 1.0
    assert hist_kl(x, x) == pytest.approx(0.0, abs=1e-12)


def test_values_outside_edges_are_clipped_not_dropped():
    p = smoothed_hist(np.array([-5.0, 0.5, 5.0]), np.array([0.0, 1.0]), alpha=0.0)
    np.testing.assert_allclose(p, [1.0])


def test_constant_feature_is_zero():
    assert hist_kl(np.ones(5), np.ones(9)) == 0.0
    assert hist_js(np.full(3, 2.5), np.full(7, 2.5)) == 0.0
    test = shared_edges(np.ones(4), bins=20)
    assert len(test) == 2  # one bin
    # a feature constant within each group but different between groups is not constant
    assert hist_kl(np.zeros(50), np.ones(50)) > 1.0


def test_empty_groups_raise():
    with pytest.raises(ValueError, match='empty'): hist_kl([], [1.0, 2.0])
    with pytest.raises(ValueError, match='empty'): hist_js([1.0], np.array([]))
    with pytest.raises(ValueError, match='empty'): hist_kl([np.nan], [1.0], nan_policy='omit')  # empty after omitting
    df = pd.DataFrame({'f': np.arange(6.0)})
    with pytest.raises(ValueError, match='group 5 has no samples'): feature_divergence(df, [0, 0, 1, 1, 2, 2], group=5)
    with pytest.raises(ValueError, match="no 'rest'"): feature_divergence(df, [3] * 6, group=3)


def test_nan_inputs():
    with pytest.raises(ValueError, match='NaN'): hist_kl([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match='NaN'): hist_js([1.0, 2.0], [np.inf, 2.0])
    assert hist_kl([1.0, np.nan, 2.0], [1.0, 2.0], nan_policy='omit') == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match='nan_policy'): hist_kl([1.0], [1.0], nan_policy='ignore')
    df = pd.DataFrame({'f': [1.0, np.nan, 2.0, 3.0]})
    with pytest.raises(ValueError, match='NaN'): feature_divergence(df, [0, 0, 1, 1], group=0)
    with pytest.raises(ValueError, match='NaN'): label_association(df, [0, 0, 1, 1])


def test_bad_arguments():
    with pytest.raises(ValueError, match='bins'): shared_edges([1.0, 2.0], bins=0)
    with pytest.raises(ValueError, match='alpha'): smoothed_hist([1.0], np.array([0.0, 1.0]), alpha=-1)
    df = pd.DataFrame({'f': np.arange(4.0)})
    with pytest.raises(ValueError, match='method'): feature_divergence(df, [0, 0, 1, 1], 0, method='tv')
    with pytest.raises(ValueError, match='entries'): feature_divergence(df, [0, 1], 0)
    with pytest.raises(ValueError, match='two classes'): label_association(df, [1, 1, 1, 1])


# --- ranking ------------------------------------------------------------------------------------------------------

def test_feature_divergence_ranks_and_table():
    r = np.random.default_rng(0)
    g = np.repeat([0, 1, 2], 100)
    df = pd.DataFrame({'noise': r.normal(size=300), 'sep': np.where(g == 1, 5.0, 0.0) + r.normal(size=300),
                       'weak': np.where(g == 1, 0.7, 0.0) + r.normal(size=300)})
    top = feature_divergence(df, g, group=1, top_k=2)
    assert list(top.feature) == ['sep', 'weak']
    assert len(feature_divergence(df, g, group=1, top_k=None)) == 3
    js = feature_divergence(df, g, group=1, method='js', top_k=None).set_index('feature').divergence
    assert js['sep'] <= np.log(2) and js['sep'] > js['noise']
    T = divergence_table(df, g, n_groups=4, group_names=list('abcd'))
    assert T.shape == (4, 3) and T.loc['d'].isna().all() and not T.loc[['a', 'b', 'c']].isna().any().any()
    assert T.loc['b', 'sep'] == pytest.approx(js['sep'])


def _planted(n, spurious_on, seed):
    r = np.random.default_rng(seed); y = r.integers(0, 2, n)
    a = y if spurious_on else r.integers(0, 2, n)
    return pd.DataFrame({'noise': r.normal(size=n), 'causal': y + r.normal(0, 0.8, n), 'planted': a + r.normal(0, 0.3, n)}), y


@pytest.mark.parametrize('seed', [0, 10, 20])
@pytest.mark.parametrize('method', ['auc', 'mi'])
def test_planted_spurious_column_ranks_first(seed, method):
    (Xtr, ytr), (Xte, yte) = _planted(600, True, seed), _planted(600, False, seed + 1)
    R = spurious_ranking(Xtr, ytr, Xte, yte, method=method).set_index('feature')
    assert R.index[0] == 'planted' and R.loc['planted', 'spurious']
    assert not R.loc['causal', 'spurious'] and not R.loc['noise', 'spurious']
    assert R.loc['causal', 'test'] > 0.5 * R.loc['causal', 'train']
    assert R.loc['causal', 'collapse'] < 0.3 * R.loc['planted', 'collapse']


def test_label_association_auc_sign_and_reversal():
    y = np.array([0, 0, 0, 1, 1, 1])
    df = pd.DataFrame({'up': [0, 1, 2, 3, 4, 5.0], 'down': [5, 4, 3, 2, 1, 0.0]})
    s = label_association(df, y)
    assert s['up'] == pytest.approx(1.0) and s['down'] == pytest.approx(-1.0)
    # a feature whose direction reverses collapses by more than its train strength
    R = spurious_ranking(df, y, df[['down', 'up']].set_axis(['up', 'down'], axis=1), y).set_index('feature')
    assert R.loc['up', 'collapse'] == pytest.approx(2.0)
    assert hist_mi(df['up'], y, bins=2) == pytest.approx(np.log(2))


def test_spurious_digits_background_ranks_first(digits):
    tr, te = digits['train'], digits['test']
    R = spurious_ranking(image_features(tr.images), tr.y, image_features(te.images), te.y)
    assert set(R.feature.iloc[:2]) == {'bg_R', 'bg_B'} and R.spurious.iloc[:2].all()
    assert not R.set_index('feature').loc['ink_top', 'spurious']


# --- features -----------------------------------------------------------------------------------------------------

def test_image_features_known_image_and_grey():
    x = torch.empty(2, 3, 16, 16); x[:] = torch.tensor([0.2, 0.45, 0.85])[:, None, None]
    x[:, :, 2:14, 7:9] = 0.05
    f = image_features(x)
    np.testing.assert_allclose(f.loc[0, ['bg_R', 'bg_G', 'bg_B']], [0.2, 0.45, 0.85], atol=1e-6)
    np.testing.assert_allclose(f.loc[0, ['fg_R', 'fg_G', 'fg_B']], [0.05] * 3, atol=1e-6)
    assert f.loc[0, 'stroke_mass'] == pytest.approx(24 / 256)
    m, c_bg = stroke_mask(x)
    assert m.shape == (2, 16, 16) and c_bg.shape == (2, 3)
    g = image_features(x.mean(1, keepdim=True))       # one channel works too
    assert 'bg_L' in g.columns and 'bg_saturation' not in g.columns
    with pytest.raises(ValueError, match='4 dimensions'): image_features(x[0])


def test_penultimate_features_generic_hook():
    torch.manual_seed(0)
    net = make_student().eval()
    x = torch.rand(7, 3, 16, 16)
    h = penultimate_features(net, x, bs=3)
    torch.testing.assert_close(h, net.features(x))
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(768, 5), nn.ReLU(), nn.Linear(5, 2))
    assert penultimate_features(mlp, x).shape == (7, 5)
    assert penultimate_features(mlp, x, layer=mlp[1]).shape == (7, 768)
    with pytest.raises(ValueError, match='no nn.Linear'): penultimate_features(nn.Sequential(nn.Flatten()), x)
    with pytest.raises(ValueError, match='submodule'): penultimate_features(mlp, x, layer=nn.Linear(2, 2))
    # the hook is removed even when the forward pass fails
    with pytest.raises(RuntimeError): penultimate_features(mlp, torch.rand(2, 3, 8, 8))
    assert all(len(m._forward_hooks) == 0 for m in mlp.modules())
    assert list(feature_frame(h, 's').columns[:2]) == ['s0', 's1']


# --- teacher vs student -------------------------------------------------------------------------------------------

def test_kl_rows_and_group_kl():
    torch.manual_seed(0)
    pt, ps = torch.softmax(torch.randn(8, 3), -1), torch.softmax(torch.randn(8, 3), -1)
    torch.testing.assert_close(kl_rows(pt, ps), F.kl_div(ps.log(), pt, reduction='none').sum(-1), atol=1e-6, rtol=1e-5)
    one_hot = torch.eye(3)[[0, 1]]
    assert torch.isfinite(kl_rows(one_hot, one_hot)).all() and kl_rows(one_hot, one_hot).abs().max() < 1e-6
    g = [0, 0, 0, 2, 2, 2, 2, 2]
    df = group_kl(pt, ps, g, n_groups=3)
    assert list(df.n) == [3, 0, 5] and np.isnan(df.kl[1])
    assert df.kl[2] == pytest.approx(kl_rows(pt, ps)[3:].mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match='same shape'): kl_rows(pt, ps[:, :2])


class _ReadsBackground(nn.Module):
    "Predicts class 1 when the top-left pixel is bluer than it is red: a pure shortcut."
    def __init__(self): super().__init__(); self.lin = nn.Linear(1, 1); self.n_classes = 2
    def forward(self, x):
        s = (x[:, 2, 0, 0] - x[:, 0, 0, 0])[:, None] * 50
        return torch.cat([-s, s], 1)


def test_counterfactual_flip_rate_of_a_shortcut_model():
    cfg = DigitsConfig()
    x0, x1 = counterfactual_digits(cfg, torch.arange(40))
    assert (x0.a == 0).all() and (x1.a == 1).all() and torch.equal(x0.src, x1.src)
    m0, m1 = stroke_mask(x0.images)[0] > 0.5, stroke_mask(x1.images)[0] > 0.5
    assert (m0 != m1).float().mean() < 0.03                # same digit, same place
    shortcut, blind = _ReadsBackground(), nn.Sequential(nn.Flatten(), nn.Linear(768, 2))
    nn.init.zeros_(blind[1].weight)
    assert flip_rate(shortcut, x0, x1) == 1.0
    assert flip_rate(blind, x0.images, x1.images) == 0.0
    df = flip_rates({'shortcut': shortcut, 'blind': blind}, x0, x1, classes=x0.y)
    assert set(df['class']) == {'all', 0, 1} and (df[df.model == 'shortcut'].flip_rate == 1).all()
    with pytest.raises(ValueError, match='pairs'): flip_rate(shortcut, x0, x1[:3])
    with pytest.raises(ValueError, match='empty'): flip_rate(shortcut, x0[:0], x1[:0])


# --- the real teacher and ERM student (from the cache of notebook 01) ----------------------------------------------

def _cached(kind, train_cfg, arch):
    import os
    from configkd.models import CACHE_VERSION, cache_dir, config_key
    key = config_key(version=CACHE_VERSION, kind=kind, data=DigitsConfig(), train=train_cfg, arch=arch)
    return (cache_dir()/f'{kind}-{key}'/'config.json').exists() or os.environ.get('CONFIGKD_TRAIN_IN_TESTS') == '1'


def test_teacher_student_divergence_on_spurious_digits(digits):
    from configkd.divergence import teacher_student_divergence
    from configkd.models import TrainConfig, get_erm_student, get_teacher, make_teacher
    if not (_cached('teacher_teacher', TrainConfig.teacher(), make_teacher().config)
            and _cached('erm_student', TrainConfig(), make_student().config)):
        pytest.skip("teacher / ERM student not cached (training takes minutes on a CPU): run nbs/01_models.ipynb first "
                    "or set CONFIGKD_TRAIN_IN_TESTS=1")
    teacher, student = get_teacher(progress=False), get_erm_student(progress=False)
    te, tr = digits['test'], digits['train']
    kl = teacher_student_divergence(teacher, student, te).set_index('group').kl
    missing = [n for n, c in zip(tr.group_names, tr.group_counts()) if c == 0]
    assert len(missing) == 2 and kl[missing].min() > 5 * kl.drop(missing).max()
    x0, x1 = counterfactual_digits(DigitsConfig(), te.src[te.a == 0])
    fr_T, fr_S = flip_rate(teacher, x0, x1), flip_rate(student, x0, x1)
    assert fr_S > 0.8 and fr_T < 0.1 and fr_S > 10 * max(fr_T, 0.01)
