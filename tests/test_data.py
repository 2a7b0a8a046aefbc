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


# ---- folder loaders: malformed real folders, arguments, uint8 storage, your own folder, downloads ----
import base64, io, json, sys, types
from pathlib import Path
import configkd.data as data
from configkd.data import (load_image_folder, download_celeba, download_celeba_hub, celeba_from_records,
                           celeba_from_hub_folder, CELEBA_HUB_CONFIG)

def _lines(root, name, lines): (root/name).write_text('\n'.join(lines) + '\n')

def test_celeba_attr_file_malformed(tmp_path):
    _fake_celeba(tmp_path); good = (tmp_path/'list_attr_celeba.txt').read_text().splitlines()
    _lines(tmp_path, 'list_attr_celeba.txt', good[2:])                                     # no header
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt, lines 1-2: expected the header"): load_celeba(tmp_path, size=16)
    _lines(tmp_path, 'list_attr_celeba.txt', good[1:])                                     # no count line
    with pytest.raises(ValueError, match=r"lines 1-2: expected the header"): load_celeba(tmp_path, size=16)
    _lines(tmp_path, 'list_attr_celeba.txt', good[:3] + ['000001.jpg -1 1'] + good[4:])    # line 4: a field short
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt, line 4: expected 4 fields \(an image name and 3 values, -1 or 1\), got 3"):
        load_celeba(tmp_path, size=16)
    _lines(tmp_path, 'list_attr_celeba.txt', good[:5] + ['000003.jpg -1 yes -1'] + good[6:])  # line 6: not -1/1
    with pytest.raises(ValueError, match=r"line 6: expected -1 or 1 for Blond_Hair, got 'yes'.*download list_attr_celeba.txt again"):
        load_celeba(tmp_path, size=16)
    _lines(tmp_path, 'list_attr_celeba.txt', good[:4] + ['000002.jpg 0.5 -1 1'] + good[5:])  # an unused column is checked too
    with pytest.raises(ValueError, match=r"line 5: expected -1 or 1 for 5_o_Clock_Shadow, got '0.5'"): load_celeba(tmp_path, size=16)
    _lines(tmp_path, 'list_attr_celeba.txt', good[:2])
    with pytest.raises(ValueError, match=r"lists no images after its two header lines"): load_celeba(tmp_path, size=16)

def test_celeba_partition_file_malformed(tmp_path):
    _fake_celeba(tmp_path); part = tmp_path/'list_eval_partition.txt'
    part.write_text('\n\n')
    with pytest.raises(ValueError, match=r"list_eval_partition.txt is empty: expected one line"): load_celeba(tmp_path, size=16)
    part.write_text('000001.jpg 0\n000002.jpg\n')
    with pytest.raises(ValueError, match=r"list_eval_partition.txt, line 2: expected two fields"): load_celeba(tmp_path, size=16)
    part.write_text('000001.jpg 0\n000002.jpg 3\n')
    with pytest.raises(ValueError, match=r"line 2: the partition must be 0 \(train\), 1 \(val\) or 2 \(test\), got '3'"): load_celeba(tmp_path, size=16)
    part.write_text('000001.png 0\n')                                                        # another copy's names
    with pytest.raises(ValueError, match=r"none of the images in .*list_attr_celeba.txt is listed in"): load_celeba(tmp_path, size=16)

def test_celeba_missing_and_corrupt_images(tmp_path, monkeypatch):
    _fake_celeba(tmp_path); img = tmp_path/'img_align_celeba'
    calls = []
    real = data._load_image
    monkeypatch.setattr(data, '_load_image', lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    (img/'000005.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 6 images listed in list_attr_celeba.txt is missing \(e.g. .*000005.jpg\): "
                       r"check the folder .*unzip img_align_celeba.zip"):
        load_celeba(tmp_path, size=16)
    assert calls == []                                                                       # raised before reading any image
    nested = tmp_path/'nested'; _fake_celeba(nested); (nested/'img_align_celeba').rename(nested/'x')
    (nested/'img_align_celeba').mkdir(); (nested/'x').rename(nested/'img_align_celeba'/'img_align_celeba')
    with pytest.raises(FileNotFoundError, match=r"one folder too deep"): load_celeba(nested, size=16)
    Image.new('RGB', (178, 218), (1, 2, 3)).save(img/'000005.jpg')
    (img/'000002.jpg').write_bytes(b'<html>Google Drive - Quota exceeded</html>')              # not an image
    with pytest.raises(ValueError, match=r"000002.jpg is not a readable image \(UnidentifiedImageError.*download img_align_celeba.zip again"):
        load_celeba(tmp_path, size=16)
    b = io.BytesIO(); Image.effect_noise((178, 218), 40).convert('RGB').save(b, 'JPEG')
    (img/'000002.jpg').write_bytes(b.getvalue()[:len(b.getvalue()) // 2])                     # a truncated JPEG
    with pytest.raises(ValueError, match=r"000002.jpg is not a readable image"): load_celeba(tmp_path, size=16)

def _fake_waterbirds(root, rows=((0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0), (0, 0, 2), (1, 1, 1))):
    (root/'imgs').mkdir(parents=True)
    for i, _ in enumerate(rows): Image.new('RGB', (20, 24), (30 * i, 90, 160)).save(root/'imgs'/f'{i}.jpg')
    (root/'metadata.csv').write_text('img_id,img_filename,y,split,place\n' + ''.join(f'{i},imgs/{i}.jpg,{y},{s},{p}\n' for i, (y, p, s) in enumerate(rows)))

def test_waterbirds_malformed_rows(tmp_path):
    _fake_waterbirds(tmp_path); meta = tmp_path/'metadata.csv'; good = meta.read_text().splitlines()
    meta.write_text(good[0] + '\n')
    with pytest.raises(ValueError, match=r"metadata.csv has no rows, only its header"): load_waterbirds(tmp_path)
    meta.write_text('')
    with pytest.raises(ValueError, match=r"metadata.csv is empty"): load_waterbirds(tmp_path)
    for line, col, what in [('1,imgs/1.jpg,2,0,1', 'y', r"0 \(landbird\) or 1 \(waterbird\), got '2'"),
                            ('1,imgs/1.jpg,0,0,-1', 'place', r"0 \(land\) or 1 \(water\), got '-1'"),
                            ('1,imgs/1.jpg,0,train,1', 'split', r"0 \(train\), 1 \(val\) or 2 \(test\), got 'train'"),
                            ('1,imgs/1.jpg,0,0.5,1', 'split', r".*got '0.5'")]:
        meta.write_text('\n'.join([good[0], good[1], line] + good[3:]) + '\n')
        with pytest.raises(ValueError, match=rf"metadata.csv, line 3 \(imgs/1.jpg\): `{col}` must be {what}") as e: load_waterbirds(tmp_path)
        assert 'n_classes' not in str(e.value)
    meta.write_text('\n'.join(good) + '\n')
    (tmp_path/'imgs'/'3.jpg').write_bytes(b'\x00' * 10)
    with pytest.raises(ValueError, match=r"imgs/3.jpg is not a readable image.*download Waterbirds again"): load_waterbirds(tmp_path)
    (tmp_path/'imgs'/'3.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 4 images named in metadata.csv is missing \(e.g. .*3.jpg\)"): load_waterbirds(tmp_path)

def test_file_instead_of_folder(tmp_path):
    _fake_celeba(tmp_path/'celeba'); _fake_waterbirds(tmp_path/'wb')
    for call, f in [(load_celeba, tmp_path/'celeba'/'list_attr_celeba.txt'), (load_celeba, tmp_path/'celeba'/'list_eval_partition.txt'),
                    (load_waterbirds, tmp_path/'wb'/'metadata.csv'), (load_image_folder, tmp_path/'wb'/'imgs'/'0.jpg')]:
        with pytest.raises(NotADirectoryError, match=r"is a file: pass the folder that holds it, not the file") as e: call(f)
        assert f"{f.name}/{f.name}" not in str(e.value) and str(f.parent) in str(e.value)

@pytest.mark.parametrize('loader', [load_celeba, load_waterbirds, load_image_folder])
def test_loader_arguments_checked_first(tmp_path, loader):
    "Bad arguments are named before any file is looked at (the folder does not even exist)."
    nope = tmp_path/'nope'
    cases = [(dict(size=4), '`size` must be a whole number >= 8'), (dict(size=16.0), '`size`'), (dict(size='64'), '`size`'),
             (dict(max_items=0), '`max_items` must be None'), (dict(max_items=2.5), '`max_items`'), (dict(dtype='float16'), '`dtype`')]
    if loader is not load_image_folder:
        cases += [(dict(drop=[4]), r'`drop` holds \[4\]'), (dict(drop=[-1]), '`drop`'), (dict(split='dev'), '`split` must be one of')]
    else: cases += [(dict(attr_fn='border'), '`attr_fn` must be a function')]
    for kw, msg in cases:
        with pytest.raises((ValueError, TypeError), match=msg): loader(nope, **kw)
    if loader is not load_image_folder:
        with pytest.raises(TypeError, match=r"`drop` must be a list of group ids, e.g. drop=\[3\]"): loader(nope, drop=3)
        with pytest.raises(ValueError, match=r"3 \(.*·.*\)"): loader(nope, drop=[7])              # the groups are listed

def test_uint8_storage_matches_float(tmp_path):
    _fake_celeba(tmp_path/'celeba'); _fake_waterbirds(tmp_path/'wb')
    for load, root, kw in [(load_celeba, tmp_path/'celeba', dict(max_items=5, seed=1, drop=[1])), (load_waterbirds, tmp_path/'wb', {})]:
        f, u = load(root, size=16, **kw), load(root, size=16, dtype='uint8', **kw)
        assert f.data.dtype == torch.float32 and u.data.dtype == torch.uint8 and u.data.nbytes * 4 == f.data.nbytes
        assert torch.equal(u.y, f.y) and torch.equal(u.g, f.g)
        idx = torch.arange(len(f)).flip(0)
        assert (u.take(idx) - f.images[idx]).abs().max() <= 0.5 / 255
        assert next(u.batches(2))[0].dtype == torch.float32
    assert load_celeba(tmp_path/'celeba', size=16, dtype=torch.uint8).data.dtype == torch.uint8

def _own_folder(root):
    "Two classes with the awkward files a real folder has."
    for c in ('b_dog', 'a_cat'): (root/c).mkdir(parents=True)
    strip = Image.new('RGB', (30, 10), (255, 0, 0)); strip.paste((0, 255, 0), (10, 0, 20, 10)); strip.paste((0, 0, 255), (20, 0, 30, 10))
    strip.save(root/'a_cat'/'strip.png')                                                     # centre crop: the green third
    Image.new('RGBA', (12, 12), (10, 200, 10, 128)).save(root/'a_cat'/'alpha.png')
    Image.new('L', (9, 9), 200).save(root/'a_cat'/'grey.bmp')
    (root/'a_cat'/'sub').mkdir(); Image.new('RGB', (16, 16), (0, 0, 0)).save(root/'a_cat'/'sub'/'deep.webp')
    for i in range(3): Image.new('RGB', (20, 20), (0, 0, 250)).save(root/'b_dog'/f'{i}.JPG')
    (root/'b_dog'/'labels.csv').write_text('x'); (root/'b_dog'/'._0.jpg').write_bytes(b'\x00\x05')  # skipped: other ext, hidden
    (root/'.cache').mkdir()                                                                  # a hidden folder is no class

def test_image_folder(tmp_path):
    _own_folder(tmp_path)
    ds = load_image_folder(tmp_path, size=8)
    assert ds.class_names == ['a_cat', 'b_dog'] and ds.y.tolist() == [0] * 4 + [1] * 3 and ds.shape == (3, 8, 8)
    assert ds.n_attrs == 1 and (ds.a == 0).all() and ds.attr_names == ['?'] and ds.group_counts().tolist() == [4, 3]
    green = ds.images[2]                                                                     # sorted: alpha, grey, strip, sub/deep
    assert torch.allclose(green, torch.tensor([0., 1., 0.])[:, None, None].expand(3, 8, 8), atol=0.02)
    u = load_image_folder(tmp_path, size=8, dtype='uint8', classes=['b_dog', 'a_cat'])
    assert u.class_names == ['b_dog', 'a_cat'] and u.y.tolist() == [0] * 3 + [1] * 4 and u.data.dtype == torch.uint8
    assert (u.take(slice(None)) - ds.images[[4, 5, 6, 0, 1, 2, 3]]).abs().max() <= 0.5 / 255     # the same images, dogs first
    with pytest.raises(ValueError, match=r"`classes` selects one class \('b_dog'\): a classifier needs at least two"):
        load_image_folder(tmp_path, size=8, classes=['b_dog'])
    sub = load_image_folder(tmp_path, size=8, max_items=3, seed=2)
    assert len(sub) == 3 and torch.equal(sub.images, load_image_folder(tmp_path, size=8, max_items=3, seed=2).images)
    blue = lambda x: (x[:, 2].mean((1, 2)) > 0.5).long()
    a = load_image_folder(tmp_path, size=8, attr_fn=blue)
    assert a.n_attrs == 2 and a.attr_names == ['a0', 'a1'] and a.group_counts().tolist() == [3, 1, 0, 3]   # the grey cat reads as blue
    a.save(tmp_path/'own.safetensors'); back = GroupedImages.load(tmp_path/'own.safetensors')
    assert back.meta() == a.meta() and torch.equal(back.data, a.data)

def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image folder not found"): load_image_folder(tmp_path/'nope')
    (tmp_path/'empty').mkdir()
    with pytest.raises(ValueError, match=r"empty is empty: expected one subfolder of images per class"): load_image_folder(tmp_path/'empty')
    (tmp_path/'flat').mkdir(); Image.new('RGB', (8, 8)).save(tmp_path/'flat'/'a.png')
    with pytest.raises(ValueError, match=r"has no class subfolders.*move them into one subfolder per class"): load_image_folder(tmp_path/'flat')
    root = tmp_path/'own'; _own_folder(root); (root/'c_bird').mkdir(); (root/'c_bird'/'readme.txt').write_text('no images yet')
    with pytest.raises(ValueError, match=r"class folder .*c_bird holds no image files \(.png, .jpg"): load_image_folder(root)
    assert len(load_image_folder(root, size=8, classes=['a_cat', 'b_dog'])) == 7
    with pytest.raises(ValueError, match=r"no folder named \['cow'\]"): load_image_folder(root, classes=['a_cat', 'cow'])
    with pytest.raises(ValueError, match=r"`classes` must name distinct"): load_image_folder(root, classes=['a_cat', 'a_cat'])
    (root/'c_bird'/'x.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match=r"c_bird/x.png is not a readable image.*replace or delete it"): load_image_folder(root, size=8)
    (root/'c_bird'/'x.png').unlink(); (root/'c_bird').rename(tmp_path/'bird_away')
    for fn, msg in [(lambda x: torch.rand(len(x)), 'whole number'), (lambda x: torch.zeros(1), r'got 1 values in \[0.0, 0.0\] for 7 images'),
                    (lambda x: -torch.ones(len(x)), r'>= 0')]:
        with pytest.raises(ValueError, match=rf"`attr_fn` must return .*{msg}"): load_image_folder(root, size=8, attr_fn=fn)

def _fake_torchvision(monkeypatch, err):
    class CelebA:
        def __init__(self, *a, **k): raise err
    tv, tvd = types.ModuleType('torchvision'), types.ModuleType('torchvision.datasets')
    tv.datasets, tvd.CelebA = tvd, CelebA
    monkeypatch.setitem(sys.modules, 'torchvision', tv); monkeypatch.setitem(sys.modules, 'torchvision.datasets', tvd)

class FileURLRetrievalError(Exception): pass        # gdown's error when Drive refuses

@pytest.mark.parametrize('err, quota', [
    (RuntimeError("The daily quota of the file img_align_celeba.zip is exceeded and it can't be downloaded."), True),
    (FileURLRetrievalError("Failed to retrieve file url:\n\n\tToo many users have viewed or downloaded this file recently."), True),
    (FileNotFoundError("[Errno 2] No such file or directory: 'data/celeba/img_align_celeba.zip'"), False)])
def test_download_celeba_quota_message(tmp_path, monkeypatch, err, quota):
    _fake_torchvision(monkeypatch, err)
    with pytest.raises(RuntimeError) as e: download_celeba(tmp_path/'data')
    msg = str(e.value)
    assert ("Google Drive's download quota stopped" in msg) == quota and "Google Drive's download quota" in msg
    assert type(err).__name__ in msg and e.value.__cause__ is err
    for part in ('img_align_celeba.zip', 'list_attr_celeba.txt', 'list_eval_partition.txt', 'Baidu', str(tmp_path/'data'/'celeba'/'img_align_celeba'),
                 f"download_celeba_hub('{tmp_path/'data'}')", 'flwrlabs/celeba'):
        assert part in msg, part

def test_download_celeba_returns_a_folder_that_is_there(tmp_path, monkeypatch):
    _fake_celeba(tmp_path/'data'/'celeba')
    monkeypatch.setitem(sys.modules, 'torchvision', None); monkeypatch.setitem(sys.modules, 'torchvision.datasets', None)
    assert download_celeba(tmp_path/'data') == tmp_path/'data'/'celeba'
    assert download_celeba_hub(tmp_path/'data') == tmp_path/'data'/'celeba'       # no Hub call either

def _jpeg(colour):
    b = io.BytesIO(); Image.new('RGB', (18, 22), colour).save(b, 'JPEG'); return b.getvalue()

def _hub_rows(n, path=True):
    "Rows in the Hub copy's format: a datasets Image struct, celeb_id, boolean attributes."
    return [{'image': {'bytes': _jpeg((25 * i, 100, 40)), 'path': f'{i + 1:06d}.jpg' if path else None}, 'celeb_id': 7 * i,
             'Bald': False, 'Blond_Hair': i % 2 == 1, 'Male': i % 4 >= 2} for i in range(n)]

@pytest.fixture
def write_shard(monkeypatch):
    "Write parquet shards with pyarrow where it is installed; elsewhere JSON stand-ins, read by a stand-in `pyarrow.parquet`."
    try:
        import pyarrow as pa, pyarrow.parquet as pq
        return lambda path, rows: pq.write_table(pa.Table.from_pylist(rows), path)
    except ImportError: pass
    enc = lambda r: {**r, 'image': {**r['image'], 'bytes': base64.b64encode(r['image']['bytes']).decode()}}
    dec = lambda r: {**r, 'image': {**r['image'], 'bytes': base64.b64decode(r['image']['bytes'])}}
    class Batch:
        def __init__(self, rows): self.rows = rows
        def to_pylist(self): return [dec(r) for r in self.rows]
    class ParquetFile:
        def __init__(self, path): self.rows = json.loads(Path(path).read_text())
        def iter_batches(self, batch_size): return (Batch(self.rows[s:s + batch_size]) for s in range(0, len(self.rows), batch_size))
    monkeypatch.setattr(data, '_pyarrow', lambda: types.SimpleNamespace(ParquetFile=ParquetFile))
    return lambda path, rows: Path(path).write_text(json.dumps([enc(r) for r in rows]))

def _hub_copy(src, write_shard, rows, names=('train-00000-of-00002', 'train-00001-of-00002', 'valid-00000-of-00001', 'test-00000-of-00001')):
    (src/CELEBA_HUB_CONFIG).mkdir(parents=True, exist_ok=True)
    for name, part in zip(names, (rows[:2], rows[2:4], rows[4:5], rows[5:])): write_shard(src/CELEBA_HUB_CONFIG/f'{name}.parquet', part)
    return src

def test_celeba_from_hub_folder(tmp_path, write_shard):
    rows = _hub_rows(7)
    out = celeba_from_hub_folder(_hub_copy(tmp_path/'hub', write_shard, rows), tmp_path/'celeba')
    attr = (out/'list_attr_celeba.txt').read_text().splitlines()
    assert attr[:3] == ['7', 'Bald Blond_Hair Male', '000001.jpg -1 -1 -1'] and attr[-1] == '000007.jpg -1 -1 1'
    assert (out/'list_eval_partition.txt').read_text().split('\n')[3:6] == ['000004.jpg 0', '000005.jpg 1', '000006.jpg 2']
    assert (out/'img_align_celeba'/'000003.jpg').read_bytes() == rows[2]['image']['bytes']
    tr = load_celeba(out, size=16)
    assert len(tr) == 4 and tr.group_counts().tolist() == [1, 1, 1, 1]
    assert len(load_celeba(out, 'val', size=16)) == 1 and len(load_celeba(out, 'test', size=16, dtype='uint8')) == 2
    out2 = celeba_from_hub_folder(_hub_copy(tmp_path/'hub2', write_shard, _hub_rows(7, path=False)), tmp_path/'celeba2')
    assert sorted(p.name for p in (out2/'img_align_celeba').iterdir())[:2] == ['000001.jpg', '000002.jpg']
    with pytest.raises(FileNotFoundError, match=r"no parquet shards under"): celeba_from_hub_folder(tmp_path/'empty', tmp_path/'x')
    (tmp_path/'hub3').mkdir(); write_shard(tmp_path/'hub3'/'extra-00000.parquet', rows[:1])
    with pytest.raises(ValueError, match=r"extra-00000.parquet: cannot tell its split"): celeba_from_hub_folder(tmp_path/'hub3', tmp_path/'x')

def test_celeba_from_records_bad_rows(tmp_path):
    ok = _hub_rows(1)[0]
    cases = [((0, {**ok, 'image': {'bytes': b'<html>', 'path': None}}, 'shard a row 0'), r"shard a row 0: `image` holds no JPEG"),
             ((0, {**ok, 'image': None}, 'shard a row 1'), r"shard a row 1: `image` holds no"),
             ((0, {'image': ok['image'], 'celeb_id': 3}, 'shard a row 2'), r"no boolean attribute fields"),
             ((5, ok, 'shard a row 3'), r"the partition must be 0 \(train\), 1 \(val\) or 2 \(test\), got 5")]
    for rec, msg in cases:
        with pytest.raises(ValueError, match=msg): celeba_from_records([rec], tmp_path/'out')
    with pytest.raises(ValueError, match=r"attribute 'Male' must be a boolean, got 'yes'"):
        celeba_from_records([(0, ok, 'r0'), (0, {**_hub_rows(2)[1], 'Male': 'yes'}, 'r1')], tmp_path/'out')
    assert not (tmp_path/'out'/'list_attr_celeba.txt').exists()               # no half-ready folder: the text files come last
    with pytest.raises(ValueError, match=r"no rows"): celeba_from_records([], tmp_path/'out')

def test_download_celeba_hub_with_a_stand_in_hub(tmp_path, monkeypatch, write_shard):
    import huggingface_hub
    calls = []
    def snapshot_download(repo_id, repo_type=None, revision=None, local_dir=None, allow_patterns=None):
        calls.append(dict(repo_id=repo_id, repo_type=repo_type, allow_patterns=allow_patterns))
        return str(_hub_copy(Path(local_dir), write_shard, _hub_rows(7)))
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', snapshot_download)
    out = download_celeba_hub(tmp_path/'data')
    assert out == tmp_path/'data'/'celeba' and len(load_celeba(out, size=16)) == 4
    assert calls[0]['repo_id'] == 'flwrlabs/celeba' and calls[0]['repo_type'] == 'dataset'
    assert f'*train-*.parquet' in calls[0]['allow_patterns'] and f'*test/*.parquet' in calls[0]['allow_patterns']
    download_celeba_hub(tmp_path/'data'); assert len(calls) == 1                 # there already: no second download
    with pytest.raises(ValueError, match=r"`splits` must list some of"): download_celeba_hub(tmp_path/'d2', splits='train')
    with pytest.raises(ValueError, match=r"`splits`"): download_celeba_hub(tmp_path/'d2', splits=['dev'])
