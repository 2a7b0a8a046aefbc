"""Spurious Shapes (notebook 08): the data the shipped diffusion model was trained on, the splits' groups, the reader, bad input."""
import json
import pytest
import torch

from configkd.shapes import (ShapesConfig, spurious_shapes, scene_attr, shapes_denoiser, shapes_diffusion_config, SHAPES_DIFFUSION,
                             TinyStudent, SceneTeacher)
from configkd.distill import fingerprint_data
from configkd.models import assets_dir
from configkd.diffusion import guided_sample, GuideConfig, DiffusionConfig


def test_code_still_makes_the_pool_the_shipped_model_learnt():
    "The generator of the data must not drift from the pool the committed diffusion model was trained on."
    meta = json.loads((assets_dir()/SHAPES_DIFFUSION/'configkd.json').read_text())
    pool = spurious_shapes(ShapesConfig(**meta['data']['shapes']), splits=['pool'])['pool']
    assert fingerprint_data(pool) == meta['data']['fingerprint']
    assert DiffusionConfig(**meta['diffusion']) == shapes_diffusion_config(pool)      # the settings the notebook names
    counts = pool.group_counts().reshape(3, 3)
    assert (counts.diag() > 0.9 * counts.sum(1)).all() and (counts > 0).all()   # skewed, but every group present


def test_splits_groups_and_reader():
    d = spurious_shapes(ShapesConfig(n_teacher=4, n_train=5, n_val=2, n_dev=3, n_test=3, n_pool=10), splits=['train', 'val', 'dev', 'test'])
    assert d['train'].group_counts().reshape(3, 3).equal(torch.eye(3, dtype=torch.long) * 5)    # usual colour only
    assert d['val'].group_counts().reshape(3, 3).equal(torch.eye(3, dtype=torch.long) * 2)
    assert d['test'].group_counts().tolist() == [3] * 9 and d['dev'].group_counts().tolist() == [3] * 9
    for v in d.values():
        assert v.shape == (3, 32, 32) and v.images.min() >= 0 and v.images.max() <= 1
        assert torch.equal(scene_attr(v.images), v.a)
    a = spurious_shapes(ShapesConfig(n_test=3), splits=['test'])['test']
    b = spurious_shapes(ShapesConfig(n_test=3), splits=['test'])['test']
    c = spurious_shapes(ShapesConfig(n_test=3, seed=1), splits=['test'])['test']
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


@pytest.mark.parametrize('kw, msg', [(dict(size=8), '`size`'), (dict(n_train=0), '`n_train`'), (dict(pool_skew=1.5), '`pool_skew`'),
                                     (dict(seed=-1), 'seed')])
def test_bad_config_is_refused_by_name(kw, msg):
    with pytest.raises((ValueError, TypeError), match=msg): ShapesConfig(**kw)


def test_bad_splits_and_missing_model(tmp_path):
    with pytest.raises(ValueError, match='`splits`'): spurious_shapes(splits='test')
    with pytest.raises(ValueError, match='`splits`'): spurious_shapes(splits=['tset'])
    with pytest.raises(FileNotFoundError, match='train_shapes_assets.py'): shapes_denoiser(tmp_path/'nothing')


def test_shipped_model_samples_at_32px_with_the_users_models():
    den = shapes_denoiser()
    assert den.shape == (3, 32, 32) and den.n_cond == 4
    d = spurious_shapes(ShapesConfig(n_train=2), splits=['train'])['train']
    torch.manual_seed(0)
    x = guided_sample(den, SceneTeacher().eval(), TinyStudent().eval(), d.cls, list(range(len(d))), d.y,
                      GuideConfig(steps=4, t_min=0, scale=0.05), init=d.images)
    assert x.shape == d.images.shape and torch.isfinite(x).all()
