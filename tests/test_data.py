"Bad input and determinism for configkd.data (what the notebook teaches badly)."
import numpy as np, pytest, torch
from PIL import Image
from configkd.data import (GroupedImages, DigitsConfig, spurious_digits, check_images, drop_groups,
                           load_celeba, load_waterbirds, make_split)

def test_image_rank_channels_range_dtype_nan():
    with pytest.raises(ValueError, match=r"`images` must have 4 dimensions"): check_images(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"): check_images(torch.rand(2, 3, 8, 8) * 255)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"): check_images(torch.rand(2, 3, 8, 8) - 0.5)
    with pytest.raises(TypeError, match="float"): check_images(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels"): check_images(torch.rand(2, 8, 8, 3))
    with pytest.raises(ValueError, match="NaN"): check_images(torch.full((1, 3, 2, 2), float('inf')), 'x')
    with pytest.raises(TypeError, match="torch.Tensor"): check_images(np.zeros((1, 3, 2, 2)))

def test_grouped_images_lengths_and_ranges():
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match=r"`a` has 3 entries but there are 4 images"): GroupedImages(x, [0, 1, 0, 1], [0, 1, 0])
    with pytest.raises(ValueError, match=r"`y` must lie in \[0, 2\)"): GroupedImages(x, [0, 1, 2, 1], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="images"): GroupedImages(torch.rand(4, 3, 8, 8) + 1, [0] * 4, [0] * 4)
    with pytest.raises(ValueError, match="concatenate"): GroupedImages.cat([GroupedImages(x, [0] * 4, [0] * 4), GroupedImages(torch.rand(1, 3, 4, 4), [0], [0])])
    with pytest.raises(ValueError, match="empty"): GroupedImages.cat([])

def test_unknown_split_and_bad_config():
    with pytest.raises(ValueError, match="unknown split"): spurious_digits(splits=['trian'])
    for kw, word in [(dict(size=20), 'size'), (dict(cue='texture'), 'cue'), (dict(minority_frac=1.5), 'minority_frac'),
                     (dict(fractions=(0.5, 0.5, 0.5, 0.5)), 'fractions')]:
        with pytest.raises(ValueError, match=word): DigitsConfig(**kw)

def test_determinism_and_counterfactual_render():
    a = spurious_digits(DigitsConfig(seed=3), splits=['train', 'test'])
    b = spurious_digits(DigitsConfig(seed=3), splits=['test', 'train'])
    for k in a: assert torch.equal(a[k].images, b[k].images) and torch.equal(a[k].g, b[k].g)
    tr = a['train']; flipped = make_split(DigitsConfig(seed=3), tr.src, 1 - tr.a, seed_offset=7)
    assert torch.equal(flipped.y, tr.y) and (flipped.a != tr.a).all() and flipped.group_counts()[[0, 3]].sum() == 0

def test_empty_group_and_drop_groups():
    ds = spurious_digits(splits=['train'])['train']
    assert ds.group_counts()[1] == 0 and ds.group_counts()[2] == 0
    assert len(ds[ds.g == 1]) == 0                                    # an empty selection is a valid, empty dataset
    with pytest.raises(ValueError, match="out of range"): drop_groups(ds, [4])
    assert drop_groups(ds, [0]).group_counts()[0] == 0

def test_missing_dataset_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebA folder not found.*torchvision"): load_celeba(tmp_path/'nope')
    (tmp_path/'celeba').mkdir()
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"): load_celeba(tmp_path/'celeba')
    with pytest.raises(FileNotFoundError, match="metadata.csv"): load_waterbirds(tmp_path/'celeba')

def _fake_celeba(root, n=8):
    (root/'img_align_celeba').mkdir(parents=True)
    names = ['5_o_Clock_Shadow', 'Blond_Hair', 'Male']
    rows, parts = [], []
    for i in range(n):
        f = f'{i:06d}.jpg'; Image.new('RGB', (178, 218), (20 * i, 100, 50)).save(root/'img_align_celeba'/f)
        blond, male = (1 if i % 2 else -1), (1 if i % 4 >= 2 else -1)
        rows.append(f"{f} -1 {blond} {male}"); parts.append(f"{f} {0 if i < 6 else 2}")
    (root/'list_attr_celeba.txt').write_text(f"{n}\n{' '.join(names)}\n" + '\n'.join(rows) + '\n')
    (root/'list_eval_partition.txt').write_text('\n'.join(parts) + '\n')

def test_celeba_fake_folder(tmp_path):
    _fake_celeba(tmp_path)
    tr = load_celeba(tmp_path, 'train', size=16)
    assert tr.images.shape == (6, 3, 16, 16) and tr.class_names == ['not Blond_Hair', 'Blond_Hair']
    assert tr.group_counts().tolist() == [2, 1, 2, 1]
    assert load_celeba(tmp_path, 'train', size=16, drop=[3]).group_counts()[3] == 0       # no blond men
    assert len(load_celeba(tmp_path, 'test', size=16)) == 2
    with pytest.raises(ValueError, match="`target` attribute 'Bald'"): load_celeba(tmp_path, target='Bald')
    with pytest.raises(ValueError, match="`split`"): load_celeba(tmp_path, split='dev')

def test_waterbirds_malformed_metadata(tmp_path):
    (tmp_path/'metadata.csv').write_text('img_id,img_filename,y\n0,a.jpg,1\n')
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['place', 'split'\]"): load_waterbirds(tmp_path)
