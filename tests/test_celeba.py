"""The paper's experiment as one command (`configkd_celeba`, notebook 07), end to end on a fake CelebA folder with tiny random
CLIP and Stable Diffusion components saved in the Hub layout (no download): runs, resumes, prints the paper's column."""
import json, time
from pathlib import Path
import pytest

pytest.importorskip('transformers')
from configkd.benchmark import celeba_cli, CelebAConfig

from PIL import Image
def fake_celeba(root:Path, n:int=48):
    "A CelebA folder in the real layout: `n` images, the attribute and partition files (blond x male, all four groups)."
    (root/'img_align_celeba').mkdir(parents=True)
    rows, parts = [], []
    for i in range(n):
        f = f'{i:06d}.jpg'; blond, male = i % 2, (i // 2) % 2
        Image.new('RGB', (178, 218), (200 if blond else 60, 90, 160 if male else 40)).save(root/'img_align_celeba'/f)
        rows.append(f"{f} {1 if blond else -1} {1 if male else -1}"); parts.append(f"{f} {[0, 0, 1, 2][i % 4]}")
    (root/'list_attr_celeba.txt').write_text(f"{n}\nBlond_Hair Male\n" + '\n'.join(rows) + '\n')
    (root/'list_eval_partition.txt').write_text('\n'.join(parts) + '\n')
def tiny_hub_folders(root:Path):
    "A tiny random CLIP and tiny random Stable Diffusion components, saved in the layout `from_pretrained` reads."
    import json as _j
    from diffusers import DDPMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPImageProcessor
    from configkd.models import tiny_clip
    from configkd.latent import tiny_latent_denoiser
    vocab = {**{c: i for i, c in enumerate('abcdefghijklmnopqrstuvwxyz')}, **{c + '</w>': 26 + i for i, c in enumerate('abcdefghijklmnopqrstuvwxyz')},
             '<|startoftext|>': 62, '<|endoftext|>': 63}
    (root/'tok').mkdir(parents=True); (root/'tok'/'vocab.json').write_text(_j.dumps(vocab)); (root/'tok'/'merges.txt').write_text('#version: 0.2\n')
    tok = CLIPTokenizer(str(root/'tok'/'vocab.json'), str(root/'tok'/'merges.txt'), model_max_length=16)
    tiny_clip().save_pretrained(root/"clip"); tok.save_pretrained(root/"clip")
    CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}).save_pretrained(root/'clip')
    lat = tiny_latent_denoiser(prompt_len=16, emb_dim=16)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      max_position_embeddings=16, bos_token_id=62, eos_token_id=63, pad_token_id=63))
    lat.unet.save_pretrained(root/'sd'/'unet'); lat.vae.save_pretrained(root/'sd'/'vae'); te.save_pretrained(root/'sd'/'text_encoder')
    tok.save_pretrained(root/'sd'/'tokenizer'); DDPMScheduler(num_train_timesteps=1000).save_pretrained(root/'sd'/'scheduler')

def test_celeba_study_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('CONFIGKD_CACHE', str(tmp_path/'cache'))
    d_ = tmp_path
    fake_celeba(d_/'celeba'); tiny_hub_folders(d_)
    kw = dict(root=str(d_/'celeba'), out=str(d_/'runs'), size=32, clip=str(d_/'clip'), sd=str(d_/'sd'), dtype='fp32', device='cpu',
              epochs=3, period=1, rounds=1, ratio=0.5, steps=4, gen_bs=4, methods='teacher,kd,kd_config', quiet=True)
    celeba_cli(**kw)
    stamps = {p.name: p.stat().st_mtime_ns for p in (d_/'runs'/'runs').iterdir()}
    assert sorted(stamps) == ['kd-s0.json', 'kd_config-s0.json', 'teacher-s0.json']
    rows = json.loads((d_/'runs'/'results.json').read_text())
    assert {r['method'] for r in rows} == {'teacher', 'kd', 'kd_config'}
    assert next(r for r in rows if r['method'] == 'kd_config')['generated'] > 0         # the round ran through Stable Diffusion
    celeba_cli(**kw)                                                      # resumes: nothing left to run
    assert {p.name: p.stat().st_mtime_ns for p in (d_/'runs'/'runs').iterdir()} == stamps
    table = (d_/'runs'/'table.md').read_text()
    assert '| 66.1 |' in table and '| 15.2 |' in table and table.strip() in capsys.readouterr().out


def test_celeba_bad_input_fails_before_work(tmp_path, capsys):
    for kw, msg in [(dict(root=str(tmp_path/'none')), '--root'), (dict(root=str(tmp_path), teacher='gpt'), '--teacher'),
                    (dict(root=str(tmp_path), methods='kd,magic'), 'unknown method'), (dict(root=str(tmp_path), device='tpu9'), '`device`')]:
        with pytest.raises(SystemExit) as e: celeba_cli(out=str(tmp_path/'out'), quiet=True, **kw)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path/'out').exists()
