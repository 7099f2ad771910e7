"""Tiny CPU runs of the translator trainer: learning, exact resume, CLI/presets, export, eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sim_training import eval_translator
from sim_training.data import FrameSet, load_source, synthetic_frames
from sim_training.train_translator import config_from_args
from sim_training.translator import PRESETS, TranslatorConfig, TranslatorTrainer, train
from vr_goggles.models.segmenter import SegmentationNet

torch.set_num_threads(1)

TINY = dict(size=16, ngf=4, n_blocks=1, n_down=2, ndf=4, d_layers=2, synthetic=6,
            progress=False, log_every=1, image_every=2)


def _frames():
    return (synthetic_frames(6, (16, 16), domain='sim', seed=0),
            synthetic_frames(6, (16, 16), domain='real', seed=1))


def _seg():
    torch.manual_seed(0)
    return SegmentationNet(width=4)


def test_tiny_training_lowers_cycle_loss():
    """Tiny training lowers cycle loss."""
    sim, real = _frames()
    cfg = TranslatorConfig(**{**TINY, **PRESETS['cyclegan'], 'preset': 'cyclegan',
                              'lr': 2e-3, 'steps': 60, 'batch_size': 2})
    tr = TranslatorTrainer(cfg, sim=sim, real=real)
    cyc = [tr.train_step()['cycle'] for _ in range(60)]
    assert np.mean(cyc[-10:]) < 0.7 * np.mean(cyc[:5])


def test_resume_gives_bit_identical_next_step(tmp_path):
    """Resume gives bit identical next step."""
    sim = synthetic_frames(6, (32, 32), domain='sim', seed=0)
    real = synthetic_frames(6, (32, 32), domain='real', seed=1)
    cfg = TranslatorConfig(**{**TINY, **PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'size': 32,
                              'steps': 10, 'pool_size': 2, 'warmup_steps': 2,
                              'pseudo_threshold': 0.0, 'pseudo_start_step': 3,
                              'lambda_feat_adv': 0.5, 'lambda_selfreg': 0.5,
                              'g_steps_per_d': 2})
    a = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    for _ in range(5):
        a.train_step()
    a.save_checkpoint(tmp_path / 'ck.pt')
    want = [a.train_step() for _ in range(3)]
    b = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    torch.manual_seed(1234)  # disturb global RNG: the checkpoint must restore it
    b.load_checkpoint(tmp_path / 'ck.pt')
    got = [b.train_step() for _ in range(3)]
    assert got == want  # exact float equality, every logged term incl. shift / feat / pool
    for (k, v), v2 in zip(a.G.state_dict().items(), b.G.state_dict().values()):
        assert torch.equal(v, v2), k


def test_cli_resume_matches_uninterrupted_run(tmp_path):
    """Cli resume matches uninterrupted run."""
    base = ['--synthetic', '6', '--size', '16', '--ngf', '4', '--n-blocks', '1', '--ndf', '4',
            '--d-layers', '2', '--decay-steps', '0', '--no-progress', '--ckpt-every', '2',
            '--preset', 'cyclegan', '--precision', 'bf16', '--image-every', '2']
    full = train(config_from_args(base + ['--steps', '4', '--out', str(tmp_path / 'a')]))
    train(config_from_args(base + ['--steps', '2', '--out', str(tmp_path / 'b'),
                                   '--snapshot-every', '2']))
    resumed = train(config_from_args(base + ['--steps', '4', '--out', str(tmp_path / 'b'),
                                             '--resume', 'auto', '--snapshot-every', '2']))
    assert resumed.step == 4
    for v1, v2 in zip(full.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(v1, v2)
    assert (tmp_path / 'b' / 'tb').is_dir() and (tmp_path / 'b' / 'last.pt').exists()
    # snapshots: the generator as it was at steps 2 and 4, loadable like any shipped model
    snaps = sorted(p.name for p in (tmp_path / 'b' / 'snapshots').iterdir())
    assert snaps == ['step_000002.json', 'step_000002.safetensors',
                     'step_000004.json', 'step_000004.safetensors']
    from vr_goggles.weights import load
    state, card = load(tmp_path / 'b' / 'snapshots' / 'step_000004')
    assert card.extra['steps'] == 4
    for k, v in resumed.G.state_dict().items():
        assert torch.equal(torch.as_tensor(state[k]), v), k


def test_semantic_cycle_term_uses_true_sim_labels():
    """sem_cycle = CE(S(G(F(x_s))), y_s), logged under its name; it needs sim labels."""
    from sim_training import losses as L

    sim, real = _frames()
    cfg = TranslatorConfig(**{**TINY, **PRESETS['cyclegan'], 'preset': 'cyclegan',
                              'warmup_steps': 0, 'lambda_sem_cycle': 1.0, 'lambda_adv': 0.0,
                              'lambda_identity': 0.0})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    torch.manual_seed(0)
    x_s = torch.rand(2, 3, 16, 16) * 2 - 1
    y_s = torch.randint(0, 6, (2, 16, 16))
    x_r = torch.rand(2, 3, 16, 16) * 2 - 1
    total, terms, _, fake_r = tr.generator_losses(x_s, y_s, x_r)
    with torch.no_grad():
        want = L.semantic_loss(tr.seg(tr.G(fake_r)), y_s)
    assert float(terms['sem_cycle'].detach()) == pytest.approx(float(want), rel=1e-5)
    assert float(total.detach()) == pytest.approx(
        float((cfg.lambda_cycle * terms['cycle'] + terms['sem_cycle']).detach()), rel=1e-5)
    unlabelled = FrameSet(images=sim.images, labels=None, name='nolabels')
    with pytest.raises(ValueError, match='lambda_sem_cycle'):
        TranslatorTrainer(cfg, sim=unlabelled, real=real, segmenter=_seg())


def _save_labeller(labeller, tmp_path):
    """Write ``labeller`` as shipped-style weights; return the path for --pseudo-segmenter."""
    from vr_goggles.image.semantics import NUM_CLASSES
    from vr_goggles.weights import ModelCard, save

    path = tmp_path / 'labeller'
    save(path, labeller.state_dict(), ModelCard(
        name='labeller', architecture='SegmentationNet',
        kwargs={'in_channels': 3, 'num_classes': NUM_CLASSES, 'width': 4}, input_size=[16, 16],
        task='test labeller', training_command='', metrics={}, extra={}))
    return path


def test_class_weights_parse_and_reject():
    """'chair=4,object=2' -> one weight per class; unknown names and negatives refused."""
    from sim_training.translator.config import class_weights
    from vr_goggles.image.semantics import CLASS_NAMES

    assert class_weights('') is None
    w = class_weights('chair=4, object=2')
    assert len(w) == len(CLASS_NAMES)
    assert w[CLASS_NAMES.index('chair')] == 4.0 and w[CLASS_NAMES.index('object')] == 2.0
    assert sum(w) == 4.0 + 2.0 + len(CLASS_NAMES) - 2
    for bad in ('chiar=3', 'chair', 'chair=-1'):
        with pytest.raises(ValueError, match='sem_class_weights'):
            TranslatorConfig(sem_class_weights=bad).resolved()


def test_pseudo_segmenter_labels_the_real_side(tmp_path):
    """--pseudo-segmenter: pseudo-labels come from that labeller, not the frozen segmenter."""
    from sim_training import losses as L
    from vr_goggles.image.semantics import NUM_CLASSES

    labeller = SegmentationNet(width=4)
    with torch.no_grad():             # a labeller that calls every pixel class 4, confidently
        last = [m for m in labeller.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0, 0, 0, 50.0, 0][:NUM_CLASSES]))
    path = _save_labeller(labeller, tmp_path)
    sim, real = _frames()
    cfg = TranslatorConfig(**{**TINY, **PRESETS['cycada'], 'preset': 'cycada',
                              'pseudo_start_step': 0,
                              'pseudo_segmenter': str(path), 'sem_class_weights': 'chair=3'})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    assert tr.labeller is not tr.seg
    x_r = torch.rand(2, 3, 16, 16) * 2 - 1
    assert (tr.pseudo_labels(x_r) == 4).all()
    assert tr.sem_weight.tolist()[4] == 3.0
    x_s = torch.rand(2, 3, 16, 16) * 2 - 1
    y_s = torch.randint(0, NUM_CLASSES, (2, 16, 16))
    _, terms, fake_s, _ = tr.generator_losses(x_s, y_s, x_r)
    with torch.no_grad():
        want = L.semantic_loss(tr.seg(fake_s), torch.full((2, 16, 16), 4),
                               weight=tr.sem_weight)
    assert float(terms['sem_real'].detach()) == pytest.approx(float(want), rel=1e-4)
    default = TranslatorTrainer(TranslatorConfig(**{**cfg.__dict__, 'pseudo_segmenter': ''}),
                                sim=sim, real=real, segmenter=_seg())
    assert default.labeller is default.seg


def test_batched_generator_step_equals_separate_calls():
    """One batched call per network gives the terms that separate calls give (vr_goggles)."""
    from sim_training import losses as L

    sim, real = _frames()
    cfg = TranslatorConfig(**{**TINY, **PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'warmup_steps': 0, 'pseudo_start_step': 0, 'size': 16})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    torch.manual_seed(1)
    x_s = torch.rand(2, 3, 16, 16) * 2 - 1
    y_s = torch.randint(0, 6, (2, 16, 16))
    x_r = torch.rand(2, 3, 16, 16) * 2 - 1
    rng_state = tr.shift_rng.get_state()
    _, terms, fake_s, fake_r = tr.generator_losses(x_s, y_s, x_r)
    tr.shift_rng.set_state(rng_state)
    i, j = (int(v) for v in torch.randint(tr.max_shift, (2,), generator=tr.shift_rng))
    assert (i, j) != (0, 0)  # a real shift (the seeded draw)
    G, F_, S = tr.G, tr.F, tr.seg
    with torch.no_grad():
        want = {
            'identity': L.identity_loss(G(x_s), x_s) + L.identity_loss(F_(x_r), x_r),
            'shift': L.shift_loss(G, x_r, i, j) + L.shift_loss(F_, x_s, i, j),
            'sem_sim': L.semantic_loss(S(F_(x_s)), y_s, weight=tr.sem_weight),
            'sem_real': L.semantic_loss(S(G(x_r)), tr.pseudo_labels(x_r), weight=tr.sem_weight),
            'sem_cycle': L.semantic_loss(S(G(F_(x_s))), y_s, weight=tr.sem_weight),
        }
        assert torch.allclose(fake_s, G(x_r), atol=1e-5)
        assert torch.allclose(fake_r, F_(x_s), atol=1e-5)
    for name, value in want.items():
        assert float(terms[name].detach()) == pytest.approx(float(value), rel=1e-4, abs=1e-7)


def test_presets_and_flag_overrides():
    """Presets and flag overrides."""
    cfg = config_from_args(['--preset', 'vr_goggles', '--lambda-shift', '3', '--no-flip'])
    assert cfg.lambda_shift == 3.0 and cfg.lambda_sem_real == 1.0 and cfg.flip is False
    assert cfg.pseudo_segmenter == 'segmenter_dr' and cfg.pseudo_refresh_every == 0
    assert cfg.sem_class_weights == 'chair=5,object=2'
    # the shipped card's --pseudo-refresh-every 0 still parses; the removed recipe is refused
    assert config_from_args(['--pseudo-refresh-every', '0']).pseudo_refresh_every == 0
    with pytest.raises(ValueError, match='translator_history.md'):
        config_from_args(['--preset', 'vr_goggles', '--pseudo-refresh-every', '250'])
    assert cfg.decay_steps == cfg.steps // 2
    cg = config_from_args([])
    assert cg.preset == 'cyclegan' and cg.lambda_shift == 0 and cg.lambda_sem_sim == 0
    assert config_from_args(['--preset', 'cycada']).lambda_sem_sim > 0
    with pytest.raises(ValueError):
        TranslatorConfig(precision='fp16').resolved()  # fp16 needs CUDA


def test_export_card_and_eval_translator(tmp_path):
    """Export card and eval translator."""
    sim, real = _frames()
    cfg = TranslatorConfig(**{**TINY, **PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'steps': 2})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    tr.train_step()
    path = tr.export(tmp_path / 'goggles_test', command='pytest')
    card = json.loads((tmp_path / 'goggles_test.json').read_text())
    assert card['architecture'] == 'ResnetGenerator' and card['input_size'] == [16, 16]
    assert card['kwargs']['n_down'] == 2 and card['extra']['preset'] == 'vr_goggles'
    fn, max_shift, _ = eval_translator.load_translator(str(path))
    assert max_shift == 4
    labelled = FrameSet(real.images, real.labels, 'real')
    clips = {'clip': real.images[:4]}
    m = eval_translator.evaluate(fn, labelled, max_shift=max_shift, clips=clips,
                                 segmenter=_seg().eval())
    assert m['shift_error'] > 0 and m['flicker'] > 0
    assert 0 <= m['miou_translated'] <= 100 and 0 <= m['miou_raw'] <= 100
    assert set(m['chair_translated']) == set(m['chair_raw']) == {
        'false_frames', 'missed_frames', 'precision', 'recall', 'empty_frames', 'present_frames'}
    raw = eval_translator.evaluate(lambda t: t, labelled, max_shift=4, clips=clips)
    assert raw['shift_error'] == 0.0 and raw['flicker'] == pytest.approx(1.0)
    assert raw['contrast_ratio'] == pytest.approx(1.0) and m['contrast_ratio'] > 0
    eval_translator.update_card(str(path), {'shift_error': m['shift_error']})
    assert json.loads((tmp_path / 'goggles_test.json').read_text())['metrics'][
        'shift_error'] == m['shift_error']


def test_load_source_export_layout(tmp_path):
    """Load source export layout."""
    import cv2

    frames = synthetic_frames(3, (20, 24), domain='sim')
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels').mkdir()
    for k, (im, lab) in enumerate(zip(frames.images, frames.labels)):
        cv2.imwrite(str(tmp_path / 'images' / f'{k:06d}.png'), im[:, :, ::-1])
        cv2.imwrite(str(tmp_path / 'labels' / f'{k:06d}.png'), lab)
    fs = load_source(str(tmp_path), (16, 16))
    assert fs.images.shape == (3, 16, 16, 3) and fs.labels.shape == (3, 16, 16)
    assert set(np.unique(fs.labels)) <= set(np.unique(frames.labels))
    assert load_source(str(tmp_path), (16, 16), labels='eval').labels is None


@pytest.mark.parametrize('fmt,compressed', [('mcap', False), ('ros1', False), ('mcap', True)])
def test_load_source_reads_bags(tmp_path, fmt, compressed):
    """Bags (ROS 2 MCAP dir, ROS 1 .bag, compressed) load via ``path:/topic`` or ``topic=``."""
    from bagfactory import write_bag

    bag = write_bag(tmp_path / 'cam', fmt=fmt, n=4, compressed=compressed,
                    encoding='bgr8', other_topics=True)
    fs = load_source(f'{bag}:/camera/image_raw', (16, 16))
    assert fs.images.shape == (4, 16, 16, 3) and fs.labels is None
    same = load_source(str(bag), (16, 16), topic='/camera/image_raw')
    assert np.array_equal(fs.images, same.images)
    if not compressed:  # colour order and preprocessing are the deployment ones
        from bagfactory import frame_rgb

        from vr_goggles.image.preprocess import Preprocessor

        want = Preprocessor(size=(16, 16)).image(frame_rgb(2, 48, 64))
        assert np.array_equal(fs.images[2], want)
    with pytest.raises(ValueError, match='no topic'):
        load_source(str(bag), (16, 16), topic='/nope')


def test_bf16_warning_only_where_bf16_is_emulated():
    """bf16 on a CPU without native kernels is named as slow; fp32 and CUDA are never warned."""
    from sim_training.translator.trainer import bf16_warning

    assert bf16_warning(TranslatorConfig(precision='fp32')) == ''
    assert bf16_warning(TranslatorConfig(precision='bf16', device='cuda')) == ''
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    msg = bf16_warning(TranslatorConfig(precision='bf16'))
    assert (msg == '') == native
    if not native:
        assert 'fp32' in msg and torch.backends.cpu.get_cpu_capability() in msg


@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'fp16'])
def test_cuda_training_steps_and_export(tmp_path, precision):
    """On CUDA, every precision trains (fp16 through the GradScaler), and the export is G.

    The CPU-loaded card reproduces the CUDA generator's output.
    """
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device')
    from vr_goggles.weights import build_module

    sim, real = _frames()
    cfg = TranslatorConfig(**{**TINY, **PRESETS['vr_goggles'], 'preset': 'vr_goggles',
                              'pseudo_segmenter': '', 'steps': 6, 'device': 'cuda',
                              'precision': precision, 'pseudo_threshold': 0.0})
    tr = TranslatorTrainer(cfg, sim=sim, real=real, segmenter=_seg())
    before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    logs = [tr.train_step() for _ in range(6)]
    assert all(np.isfinite(v) for log in logs for v in log.values())
    assert {'shift', 'sem_real', 'cycle', 'D_sim'} <= set(logs[-1])
    assert any(not torch.equal(v, tr.G.state_dict()[k]) for k, v in before.items())
    assert (tr.scaler.get_scale() > 0) if precision == 'fp16' else not tr.scaler.is_enabled()
    tr.export(tmp_path / 'g')
    cpu, _ = build_module(tmp_path / 'g')
    x = torch.from_numpy(real.images[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad(), torch.backends.cudnn.flags(allow_tf32=False):
        want = tr.G.eval()(x.cuda()).float().cpu()
        got = cpu(x)
    assert torch.allclose(got, want, atol=1e-4)


def test_bench_translator_reports_side_by_side_ratios(tmp_path):
    """The iteration benchmark times every preset and divides by the first one's median."""
    from sim_training import bench_translator

    out = tmp_path / 'b.json'
    assert bench_translator.main(['--presets', 'cyclegan', 'vr_goggles', '--rounds', '1',
                                  '--steps', '2', '--size', '32', '--ngf', '4',
                                  '--json', str(out)]) == 0
    r = json.loads(out.read_text())
    ms, ratio = r['ms_per_step'], r['ratio_to_cyclegan']
    assert set(ms) == set(ratio) == {'cyclegan', 'vr_goggles'} and ratio['cyclegan'] == 1.0
    assert ratio['vr_goggles'] == pytest.approx(ms['vr_goggles'] / ms['cyclegan'], abs=2e-3)
    assert r['steps_timed'] == 2 and r['device_name'] == 'cpu'
    runs = [{'ms_per_step': {'cyclegan': 10.0, 'vr_goggles': m},
             'ratio_to_cyclegan': {'cyclegan': 1.0, 'vr_goggles': m / 10}} for m in (15, 18, 16)]
    s = bench_translator.summarize(runs, 'cyclegan')
    assert s['ratio_to_cyclegan'] == {'cyclegan': 1.0, 'vr_goggles': 1.6}
    assert s['ratio_range']['vr_goggles'] == [1.5, 1.8] and s['repeats'] == 3
    assert s['ms_per_step']['vr_goggles'] == 16.0


def test_bench_translator_on_cuda_names_the_device(tmp_path):
    """``--device cuda`` times synchronised steps on the GPU and records which one."""
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device')
    from sim_training import bench_translator

    out = tmp_path / 'b.json'
    assert bench_translator.main(['--presets', 'cyclegan', 'vr_goggles', '--rounds', '1',
                                  '--steps', '2', '--size', '32', '--ngf', '4', '--device',
                                  'cuda', '--repeats', '2', '--json', str(out)]) == 0
    r = json.loads(out.read_text())
    assert r['device_name'] == torch.cuda.get_device_name(0) and r['repeats'] == 2
    assert r['ms_per_step']['vr_goggles'] > 0 and r['overrides']['device'] == 'cuda'


def test_sampler_draws_the_same_images_with_or_without_labels():
    """Unlabelled frames (a bag) sample y=None with the same image draws as labelled ones.

    Labels get their image's crop and flip: with the red channel as the label map, y is x's.
    """
    from sim_training.data import FrameSampler

    frames = synthetic_frames(5, (16, 16), domain='real', seed=3)
    red = FrameSet(frames.images, frames.images[..., 0].copy(), 'red')
    x, y = FrameSampler(red, seed=0, flip=True, crop_pad=4).sample(8)
    x0, y0 = FrameSampler(FrameSet(frames.images, None, 'bag'), seed=0, flip=True,
                          crop_pad=4).sample(8)
    assert y0 is None and torch.equal(x, x0)
    assert y.dtype == torch.long and torch.equal(y, ((x[:, 0] + 1) * 127.5).round().long())


def test_log_every_zero_logs_only_the_last_step_and_negative_intervals_are_refused(tmp_path):
    """--log-every 0 once divided by zero at the first step; negative intervals are refused."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / 'r'
    train(config_from_args(
        ['--synthetic', '4', '--size', '16', '--ngf', '4', '--n-blocks', '1', '--ndf', '4',
         '--d-layers', '2', '--no-progress', '--steps', '3', '--log-every', '0',
         '--out', str(out)]))
    acc = EventAccumulator(str(out / 'tb'))
    acc.Reload()
    assert [e.step for e in acc.Scalars('loss/cycle')] == [3]
    with pytest.raises(ValueError, match='ckpt_every must be >= 0'):
        TranslatorConfig(ckpt_every=-1).resolved()
