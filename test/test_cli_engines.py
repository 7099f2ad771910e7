"""CLI verbs export / compile / translate / bench, end to end on tiny tmp models."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from tiny_models import SIZE, save_tiny_generator
import torch

from vr_goggles.cli import main
from vr_goggles.commands.bench import ROW_FIELDS


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv('VR_GOGGLES_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture
def weights(tmp_path):
    """Tiny random-init generator saved with its card in a tmp dir."""
    return save_tiny_generator(tmp_path / 'tiny_gen', seed=2)


def _png(path, h=40, w=50, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def test_export(weights, tmp_path, capsys):
    """Export writes a checked ONNX file with documented names and prints the diff."""
    import onnx

    out = tmp_path / 'exp' / 'g.onnx'
    assert main(['export', '--model', str(weights), '--onnx', str(out), '--opset', '17']) == 0
    text = capsys.readouterr().out
    assert 'max abs diff' in text and "'input'" in text and "'output'" in text
    diff = float(text.split('max abs diff:')[1].split()[0])
    assert diff <= 1e-3
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 17
    assert [i.name for i in model.graph.input] == ['input']


def test_export_dynamic_batch(weights, tmp_path, capsys):
    """--dynamic-batch makes the batch axis symbolic."""
    out = tmp_path / 'd.onnx'
    assert main(['export', '--model', str(weights), '--onnx', str(out), '--dynamic-batch']) == 0
    assert '(batch, 3, 32, 32)' in capsys.readouterr().out


def test_export_fp16(weights, tmp_path, capsys):
    """--fp16: float16 inside, float32 I/O, checked against torch fp32 at the fp16 tolerance."""
    import onnx

    out = tmp_path / 'h.onnx'
    assert main(['export', '--model', str(weights), '--onnx', str(out), '--fp16']) == 0
    text = capsys.readouterr().out
    assert 'float16 weights and arithmetic' in text and 'tolerance 0.03' in text
    assert "'input':  (1, 3, 32, 32) float32" in text
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in {i.data_type for i in model.graph.initializer}
    # an impossible tolerance is enforced: the fp16 rounding is real
    assert main(['export', '--model', str(weights), '--onnx', str(out), '--fp16',
                 '--tolerance', '1e-9']) == 1
    assert 'differs from torch' in capsys.readouterr().err


def test_export_bad_weights(tmp_path, capsys):
    """A missing weights file is a one-line error naming it, exit 1."""
    assert main(['export', '--model', str(tmp_path / 'missing'), '--onnx',
                 str(tmp_path / 'x.onnx')]) == 1
    assert 'missing' in capsys.readouterr().err


def test_compile_without_tensorrt(weights, tmp_path, capsys):
    """No TensorRT/CUDA here: compile explains why and exits 1."""
    import_error = None
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as e:
        import_error = str(e)
    if import_error is None and torch.cuda.is_available():
        pytest.skip('TensorRT and CUDA present')
    rc = main(['compile', '--model', str(weights), '--precision', 'fp16', '--out',
               str(tmp_path / 'g.ep')])
    err = capsys.readouterr().err
    assert rc == 1 and 'cannot build a TensorRT engine here' in err
    if import_error is not None:
        from vr_goggles.engines.tensorrt_engine import installed_version
        if installed_version() is None:  # the advice, from package metadata
            major_minor = '.'.join(torch.__version__.split('.')[:2])
            assert 'torch-tensorrt is not installed' in err
            assert f'install torch-tensorrt=={major_minor}.*' in err
        else:
            assert f'import torch_tensorrt failed: {import_error}' in err
    assert not (tmp_path / 'g.ep').exists()
    rc = main(['compile', '--model', str(weights), '--device', 'cpu', '--out',
               str(tmp_path / 'g.ep')])
    assert rc == 1 and 'NVIDIA GPUs only' in capsys.readouterr().err


def test_translate_files_and_folders(weights, tmp_path, capsys):
    """Folders and files -> PNGs at model size, colours kept."""
    src = tmp_path / 'in'
    _png(src / 'a.png', seed=0)
    _png(src / 'sub' / 'b.png', seed=1)
    single = tmp_path / 'single.png'
    _png(single, seed=2)
    out = tmp_path / 'out'
    assert main(['translate', str(src), str(single), '--out', str(out), '--model',
                 str(weights), '--engine', 'torch']) == 0
    assert 'translated 3 image(s)' in capsys.readouterr().out
    for rel in ('in/a.png', 'in/sub/b.png', 'single.png'):
        img = cv2.imread(str(out / rel))
        assert img is not None and img.shape == (*SIZE, 3)
    # RGB <-> BGR handled: the PNG equals the goggles output for the RGB image
    from vr_goggles.goggles import Goggles
    rgb = cv2.imread(str(single))[:, :, ::-1]
    want = Goggles.from_model(weights, engine='torch')(rgb)
    np.testing.assert_array_equal(cv2.imread(str(out / 'single.png'))[:, :, ::-1], want)


def test_translate_side_by_side(weights, tmp_path):
    """--side-by-side puts the resized input left of the output."""
    _png(tmp_path / 'x.png')
    out = tmp_path / 'o'
    assert main(['translate', str(tmp_path / 'x.png'), '--out', str(out), '--model',
                 str(weights), '--engine', 'onnxruntime', '--side-by-side']) == 0
    assert cv2.imread(str(out / 'x.png')).shape == (SIZE[0], 2 * SIZE[1], 3)


def test_translate_errors(weights, tmp_path, capsys):
    """Missing or unreadable inputs name the file and exit 1."""
    assert main(['translate', str(tmp_path / 'none.png'), '--out', str(tmp_path / 'o'),
                 '--model', str(weights)]) == 1
    assert 'none.png' in capsys.readouterr().err
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not a png')
    assert main(['translate', str(bad), '--out', str(tmp_path / 'o'), '--model',
                 str(weights), '--engine', 'torch']) == 1
    assert 'bad.png' in capsys.readouterr().err


def test_bench_json_has_every_field(weights, tmp_path, capsys):
    """bench: every row has every field; baseline and skips."""
    out = tmp_path / 'bench.json'
    assert main(['bench', '--model', str(weights), '--json', str(out), '--backends',
                 'torch-bf16', 'onnxruntime', 'torch-cl', 'tensorrt-fp16', '--sizes', '32,64',
                 '--batches', '1,2', '--iters', '3', '--warmup', '1']) == 0
    text = capsys.readouterr().out
    assert 'speedup' in text and 'best at 32x32/b1' in text
    assert text.count('p50 ms') == 1  # one table, rows added as each size/batch finishes
    assert text.count('\nonnxruntime ') == 4  # one row per size x batch, not printed twice
    report = json.loads(out.read_text())
    for key in ('model', 'host', 'results', 'best', 'sizes', 'batches', 'backends', 'iters'):
        assert key in report
    rows = report['results']
    assert len(rows) == 5 * 2 * 2  # eager baseline + 4 specs, 2 sizes, 2 batches
    for row in rows:
        assert set(ROW_FIELDS) <= set(row)
    ok = [r for r in rows if r['status'] == 'ok']
    assert {r['backend'] for r in ok} == {'torch', 'torch-bf16', 'onnxruntime', 'torch-cl'}
    for r in ok:
        assert r['p50_ms'] > 0 and r['throughput_ips'] > 0 and r['speedup_vs_eager_fp32'] > 0
        assert r['peak_mem_mb'] is not None and r['mem_kind'].startswith('cpu')
    base = [r for r in ok if r['backend'] == 'torch']
    assert all(r['speedup_vs_eager_fp32'] == 1.0 and r['max_abs_diff_vs_eager_fp32'] == 0
               for r in base)
    onnx_rows = [r for r in ok if r['backend'] == 'onnxruntime']
    assert all(r['max_abs_diff_vs_eager_fp32'] <= 1e-3 for r in onnx_rows)
    assert all(r['device'] == 'cpu' for r in ok)
    trt = [r for r in rows if r['backend'] == 'tensorrt-fp16']
    # --device cpu (the default): TensorRT is skipped with the reason, never run on the GPU
    # under a cpu label
    assert len(trt) == 4
    assert all(r['status'] == 'skipped' and 'NVIDIA GPUs only' in r['error']
               and r['device'] is None and r['p50_ms'] is None for r in trt)


def test_bench_exits_1_when_no_requested_backend_ran(weights, tmp_path, capsys):
    """Only TensorRT requested on CPU: the row is skipped, the JSON written, exit status 1."""
    out = tmp_path / 'b.json'
    rc = main(['bench', '--model', str(weights), '--json', str(out), '--backends',
               'tensorrt-fp16', '--iters', '2', '--warmup', '1'])
    captured = capsys.readouterr()
    assert rc == 1
    assert 'none of the requested backends ran' in captured.err
    assert 'tensorrt-fp16' in captured.err and 'NVIDIA GPUs only' in captured.err
    assert captured.out.count('p50 ms') == 1
    rows = json.loads(out.read_text())['results']
    statuses = [(r['backend'], r['status']) for r in rows]
    assert statuses == [('torch', 'ok'), ('tensorrt-fp16', 'skipped')]


def test_bench_random_init_and_bad_args(tmp_path, capsys):
    """--random-init works; bad sizes/models exit 1."""
    out = tmp_path / 'r.json'
    assert main(['bench', '--random-init', '--ngf', '4', '--n-blocks', '1', '--sizes', '16',
                 '--backends', 'onnxruntime', '--iters', '2', '--json', str(out)]) == 0
    assert json.loads(out.read_text())['random_init'] is True
    assert main(['bench', '--random-init', '--sizes', '30', '--json', str(out)]) == 1
    assert 'multiples of 4' in capsys.readouterr().err
    assert main(['bench', '--model', str(tmp_path / 'nothing'), '--json', str(out)]) == 1
    assert '--random-init' in capsys.readouterr().err
