"""Engines: parity between backends, auto selection, ONNX export, TensorRT cache logic."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
from tiny_models import KWARGS, SIZE, save_tiny_generator
import torch

from vr_goggles.bench.engines import PeakMemory, latency_stats
from vr_goggles.engines import (
    Engine,
    EngineFileError,
    EngineUnavailable,
    ModelSource,
    Variant,
    create_engine,
    select_engine,
    source_from_weights,
)
from vr_goggles.engines.base import check_batch, check_precision
from vr_goggles.engines.onnx_engine import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxRuntimeEngine,
    export_onnx,
    verify_onnx,
)
from vr_goggles.engines.tensorrt_engine import (
    TensorRTEngine,
    build_metadata,
    decide_engine_action,
    default_engine_path,
    import_torch_tensorrt,
    installed_version,
    metadata_path,
    version_pair_problem,
)
from vr_goggles.engines.timing import time_engine
from vr_goggles.engines.torch_engine import TorchEngine
from vr_goggles.models import build
from vr_goggles.weights import ModelCard, WeightsError, save


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv('VR_GOGGLES_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture
def weights(tmp_path):
    """Tiny random-init generator saved with its card in a tmp dir."""
    return save_tiny_generator(tmp_path / 'w' / 'tiny_gen', seed=0)


@pytest.fixture
def source(weights):
    """The tiny weights loaded as a ModelSource."""
    src, _ = source_from_weights(weights)
    return src


def _batch(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, *size)).astype(np.float32)


def _real_trt_import_error() -> str:
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as e:
        return str(e)
    pytest.skip('torch_tensorrt is importable here; the fallback path is not testable')


def _trt_unavailable_reason() -> str:
    """What import_torch_tensorrt says on this machine (metadata first, then the import)."""
    with pytest.raises(EngineUnavailable) as ei:
        import_torch_tensorrt()
    return ei.value.reason


# -- parity -------------------------------------------------------------------------------------

def test_torch_vs_onnxruntime_fp32_parity(source):
    """fp32 torch and onnxruntime agree to 1e-3."""
    x = _batch(3)
    ref = create_engine('torch', source)(x)
    got = create_engine('onnxruntime', source)(x)
    assert ref.shape == got.shape == x.shape and got.dtype == np.float32
    assert np.max(np.abs(ref - got)) <= 1e-3


def test_torch_vs_module_and_layouts(source):
    """The torch engine equals the module; channels_last too."""
    x = _batch(2)
    with torch.no_grad():
        direct = source.module(torch.from_numpy(x)).numpy()
    eng = create_engine('torch', source)
    cl = create_engine('torch', source, channels_last=True)
    assert isinstance(eng, Engine) and (eng.name, eng.device, eng.precision) == \
        ('torch', 'cpu', 'fp32')
    assert np.max(np.abs(eng(x) - direct)) <= 1e-5
    assert cl.name == 'torch-cl' and np.max(np.abs(cl(x) - direct)) <= 1e-4


def test_bf16_within_tolerance(source):
    """bf16 autocast keeps fp32 weights; activations lose ~3 significant digits (<= 0.05)."""
    x = _batch(2)
    ref = create_engine('torch', source)(x)
    bf16 = create_engine('torch', source, precision='bf16')
    assert bf16.precision == 'bf16'
    out = bf16(x)
    assert out.dtype == np.float32 and np.max(np.abs(out - ref)) <= 0.05


def test_onnxruntime_rejects_low_precision(source):
    """Onnxruntime offers fp32 only, and says so."""
    with pytest.raises(EngineUnavailable, match='fp32'):
        create_engine('onnxruntime', source, precision='bf16')


def test_check_batch_and_precision():
    """Input validation gives layout-specific messages."""
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        check_batch(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match='uint8'):
        check_batch(np.zeros((1, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match='static shape'):
        check_batch(np.zeros((2, 3, 8, 8), np.float32), static_shape=(1, 3, 8, 8))
    assert check_batch(np.zeros((1, 3, 8, 8))).dtype == np.float32
    assert check_precision('bfloat16') == 'bf16' and check_precision('half') == 'fp16'
    with pytest.raises(ValueError, match='precision'):
        check_precision('int8')


def test_torch_cuda_and_graphs_unavailable_on_cpu(source):
    """CUDA requests fail cleanly on CPU."""
    if torch.cuda.is_available():
        pytest.skip('CUDA present')
    with pytest.raises(EngineUnavailable, match='torch'):
        create_engine('torch', source, device='cuda')
    with pytest.raises(ValueError, match='cuda_graphs'):
        TorchEngine(source.module, cuda_graphs=True)


@pytest.mark.slow
def test_torch_compile_parity(source):
    """torch.compile (needs gcc, ~10-30 s): same output as eager."""
    x = _batch(1)
    ref = create_engine('torch', source)(x)
    eng = create_engine('torch', source, compile=True)
    assert eng.name == 'torch-compile'
    assert np.max(np.abs(eng(x) - ref)) <= 1e-4


@pytest.mark.slow
def test_torch_compile_parity_antialiased_resize_generator():
    """The shipped architecture (BlurPool, two resize-convs in a row) compiles, = eager.

    Inductor once failed on its replicate padding of a pixel-shuffled tensor.
    """
    torch.manual_seed(0)
    module = build('ResnetGenerator', **KWARGS, antialias=True, upsample='resize')
    x = _batch(1)
    ref = TorchEngine(module, input_size=SIZE)(x)
    eng = TorchEngine(module, compile=True, input_size=SIZE)
    assert np.max(np.abs(eng(x) - ref)) <= 1e-4


# -- auto ---------------------------------------------------------------------------------------

def test_auto_without_tensorrt_and_cuda(source, caplog):
    """Real import failure and real CUDA absence; picks a measured CPU backend, logs why."""
    if torch.cuda.is_available():
        pytest.skip('CUDA present: auto would pick it')
    _real_trt_import_error()
    with caplog.at_level(logging.INFO, logger='vr_goggles.engines'):
        eng = select_engine(source, device='auto')
    assert eng.device == 'cpu' and eng.name in ('torch', 'torch-cl', 'onnxruntime')
    lines = [r.getMessage() for r in caplog.records if 'engine auto' in r.getMessage()]
    assert len(lines) == 1
    assert f'tensorrt: skipped ({_trt_unavailable_reason()})' in lines[0]
    assert 'torch-cuda: skipped' in lines[0] and f'chose {eng.name}' in lines[0]
    assert 'measured' in lines[0]
    report = eng.auto_report
    assert report['chosen'] == eng.name and len(report['skipped']) >= 4
    # second start: cached timing, same choice, no compile
    caplog.clear()
    with caplog.at_level(logging.INFO, logger='vr_goggles.engines'):
        again = select_engine(source, device='auto')
    assert again.name == eng.name
    assert any('cached timing' in r.getMessage() for r in caplog.records)
    x = _batch(1)
    assert np.max(np.abs(again(x) - create_engine('torch', source)(x))) <= 1e-3


def test_auto_cpu_device_and_bf16(source):
    """device='cpu' keeps auto on CPU; bf16 excludes onnxruntime."""
    eng = select_engine(source, device='cpu', precision='bf16')
    assert eng.precision == 'bf16' and eng.name.startswith('torch')  # no bf16 onnxruntime
    skipped = ' '.join(eng.auto_report['skipped'])
    assert "tensorrt: skipped (device='cpu' requested)" in skipped
    assert 'onnxruntime' not in eng.auto_report['why'] or eng.name != 'onnxruntime'


def test_auto_corrupt_timing_cache_is_remeasured(source, tmp_path):
    """A corrupt timing cache is re-measured."""
    cache = tmp_path / 'cache'
    cache.mkdir(parents=True, exist_ok=True)
    (cache / 'auto_cpu.json').write_text('{not json')
    eng = select_engine(source, device='cpu')
    assert 'measured' in eng.auto_report['why']
    assert json.loads((cache / 'auto_cpu.json').read_text())


# -- ONNX export --------------------------------------------------------------------------------

def test_export_round_trip(source, tmp_path):
    """Exported ONNX: names, static/dynamic shapes, parity."""
    import onnx

    path = export_onnx(source.module, tmp_path / 'g.onnx', SIZE)
    model = onnx.load(str(path))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == [1, 3, *SIZE]
    assert verify_onnx(path, source.module, SIZE) <= 1e-3
    eng = OnnxRuntimeEngine(path)
    assert eng.batch_size == 1 and eng.input_size == SIZE
    dyn = export_onnx(source.module, tmp_path / 'd.onnx', SIZE, dynamic_batch=True)
    assert OnnxRuntimeEngine(dyn).batch_size is None
    assert OnnxRuntimeEngine(dyn)(_batch(3)).shape == (3, 3, *SIZE)


def test_corrupt_onnx_names_file(tmp_path):
    """A corrupt or missing ONNX file is an error naming it."""
    bad = tmp_path / 'broken.onnx'
    bad.write_bytes(b'\x08\x07garbage' * 10)
    with pytest.raises(EngineFileError, match='broken.onnx'):
        OnnxRuntimeEngine(bad)
    with pytest.raises(EngineFileError, match='not found'):
        OnnxRuntimeEngine(tmp_path / 'missing.onnx')


def test_corrupt_onnx_cache_is_rebuilt(source, tmp_path):
    """A corrupt cached export is re-exported."""
    eng = create_engine('onnxruntime', source)
    eng.path.write_bytes(b'truncated')
    again = create_engine('onnxruntime', source)
    x = _batch(1)
    assert np.max(np.abs(again(x) - eng(x))) == 0


def test_corrupt_and_mismatched_weights_name_file(weights, tmp_path):
    """Bad weights name the file and problem."""
    data = bytearray(weights.read_bytes())
    data[-5:] = b'XXXXX'
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match='tiny_gen.safetensors'):
        source_from_weights(weights)
    torch.manual_seed(0)
    other = build('ResnetGenerator', ngf=8, n_blocks=1, n_down=2)
    card = ModelCard(name='mm', architecture='ResnetGenerator', kwargs=dict(KWARGS),
                     input_size=list(SIZE))
    mm = save(tmp_path / 'mm', other.state_dict(), card)
    with pytest.raises(WeightsError, match=r'mm\.safetensors.*shape'):
        source_from_weights(mm)


# -- TensorRT (no GPU here: everything around the build) ---------------------------------------

def test_tensorrt_import_failure_is_clean(source):
    """The real failure becomes EngineUnavailable, with the install advice when not installed."""
    err = _real_trt_import_error()
    with pytest.raises(EngineUnavailable) as ei:
        import_torch_tensorrt()
    assert ei.value.backend == 'tensorrt'
    if installed_version() is None:  # no package metadata: the advice, before any import
        major_minor = '.'.join(torch.__version__.split('.')[:2])
        assert 'torch-tensorrt is not installed' in ei.value.reason
        assert f'torch-tensorrt=={major_minor}.*' in ei.value.reason
    else:
        assert err in ei.value.reason
    with pytest.raises(EngineUnavailable, match='torch-tensorrt|torch_tensorrt'):
        create_engine('tensorrt', source, device='cuda')
    with pytest.raises(EngineUnavailable):
        TensorRTEngine(source.module, weights_sha256=source.sha256, input_size=SIZE)


def test_tensorrt_never_claims_cpu(source):
    """An explicit cpu device is refused before anything else: TensorRT is GPU only."""
    with pytest.raises(EngineUnavailable, match="device 'cpu'.*NVIDIA GPUs only"):
        create_engine('tensorrt', source, device='cpu')


def test_version_pair_read_from_metadata_before_import(monkeypatch):
    """A mismatched pair is explained from package metadata; the import is never tried."""
    import importlib.metadata as md
    import sys

    real = md.version

    def fake_version(name):
        if name.replace('-', '_') == 'torch_tensorrt':
            return '2.12.1'
        return real(name)

    imported = []

    class Finder:
        """Records an attempt to import torch_tensorrt (and makes it fail)."""

        def find_spec(self, name, path=None, target=None):
            if name == 'torch_tensorrt':
                imported.append(name)
                raise ImportError('undefined symbol: _ZN3c10 (mismatched torch ABI)')
            return None

    monkeypatch.setattr(md, 'version', fake_version)
    monkeypatch.delitem(sys.modules, 'torch_tensorrt', raising=False)
    monkeypatch.setattr(sys, 'meta_path', [Finder(), *sys.meta_path])
    with pytest.raises(EngineUnavailable) as ei:
        import_torch_tensorrt()
    assert 'torch-tensorrt 2.12.1 is built for torch 2.12.x' in ei.value.reason
    assert 'Install torch-tensorrt==' in ei.value.reason and not imported
    # a matching pair that still fails to import passes the real error through, with versions
    monkeypatch.setattr(md, 'version', lambda name: torch.__version__.split('+')[0]
                        if name.replace('-', '_') == 'torch_tensorrt' else real(name))
    with pytest.raises(EngineUnavailable, match='import torch_tensorrt failed: undefined '
                                                'symbol.*is installed for torch'):
        import_torch_tensorrt()
    assert imported == ['torch_tensorrt']


@pytest.mark.parametrize(('torch_v', 'trt_v', 'ok'), [
    ('2.13.0+cu130', '2.13.0', True), ('2.13.1', '2.13.0+cu130', True),
    ('2.13.0', '2.12.1', False), ('2.11.0+cu130', '2.13.0', False), ('3.0.0', '2.13.0', False)])
def test_version_pairing(torch_v, trt_v, ok):
    """Torch and torch-tensorrt must share major.minor."""
    problem = version_pair_problem(torch_v, trt_v)
    assert (problem is None) == ok
    if not ok:
        assert torch_v in problem and trt_v in problem and 'major.minor' in problem
        assert 'Install torch-tensorrt==' in problem


def test_version_pairing_unparseable():
    """Unparseable versions are reported, not crashed on."""
    assert 'cannot parse' in version_pair_problem('nightly', '2.13.0')


def _meta(**over):
    base = {'weights_sha256': 'ab' * 32, 'input_shape': (1, 3, 64, 64), 'precision': 'fp16',
            'gpu': 'NVIDIA H200',
            'versions': {'tensorrt': '10.13.0', 'torch': '2.13.0', 'torch_tensorrt': '2.13.0'}}
    base.update(over)
    return build_metadata(**base)


def test_tensorrt_reuse_rebuild_decision(tmp_path):
    """Reuse only when every sidecar field matches."""
    eng = tmp_path / 'g.ep'
    want = _meta()
    assert decide_engine_action(eng, want)[0] == 'build'
    assert 'no engine file' in decide_engine_action(eng, want)[1]
    eng.write_bytes(b'engine')
    action, why = decide_engine_action(eng, want)
    assert action == 'build' and 'no metadata sidecar' in why
    side = metadata_path(eng)
    assert side.name == 'g.ep.json'
    side.write_text('{broken')
    action, why = decide_engine_action(eng, want)
    assert action == 'build' and 'unreadable' in why and str(side) in why
    side.write_text(json.dumps(dict(want, engine_sha256=hashlib.sha256(b'engine').hexdigest())))
    assert decide_engine_action(eng, want)[0] == 'reuse'
    assert decide_engine_action(eng, want, force_engine_update=True) == \
        ('build', 'force_engine_update is set')
    for change in ({'precision': 'fp32'}, {'gpu': 'NVIDIA A100'},
                   {'input_shape': (1, 3, 128, 128)}, {'weights_sha256': 'cd' * 32},
                   {'versions': {'tensorrt': '10.14.0', 'torch': '2.13.0',
                                 'torch_tensorrt': '2.13.0'}}):
        action, why = decide_engine_action(eng, _meta(**change))
        key = next(iter(change)) if 'versions' not in change else 'tensorrt'
        assert action == 'build' and 'stale' in why and key in why


def test_tensorrt_metadata_fields_and_default_path(tmp_path):
    """Sidecar fields; default engine path."""
    m = _meta()
    for key in ('weights_sha256', 'input_shape', 'precision', 'gpu', 'tensorrt', 'torch',
                'torch_tensorrt'):
        assert key in m
    assert m['input_shape'] == [1, 3, 64, 64]
    p = default_engine_path('gen', 'ab' * 32, (1, 3, 64, 64), 'fp16')
    assert str(p).startswith(str(tmp_path / 'cache')) and p.name.endswith('64x64-fp16.ep')


def test_tensorrt_corrupt_engine_file_names_file(tmp_path):
    """Loading a corrupt saved program fails with the file name and how to rebuild."""
    bad = tmp_path / 'corrupt.ep'
    bad.write_bytes(b'not a zip archive')
    eng = object.__new__(TensorRTEngine)
    eng._torch = torch
    with pytest.raises(EngineFileError, match='corrupt.ep.*force_engine_update'):
        eng._load(bad)


# -- helpers ------------------------------------------------------------------------------------

def test_variant_parse():
    """Backend spec strings parse and round-trip."""
    v = Variant.parse('torch-compile-bf16')
    assert (v.backend, v.precision, v.compile) == ('torch', 'bf16', True)
    assert v.label == 'torch-compile-bf16'
    assert Variant.parse('tensorrt').label == 'tensorrt-fp32'
    assert Variant.parse('torch-cl').channels_last
    with pytest.raises(ValueError, match='unknown backend'):
        Variant.parse('tvm')
    with pytest.raises(ValueError, match='torch only'):
        Variant.parse('onnxruntime-compile')


def test_timing_and_memory_helpers(source):
    """Peak-RSS tracking sees a 30 MiB allocation; stats keys."""
    eng = create_engine('torch', source)
    with PeakMemory('cpu') as mem:
        big = np.ones((2000, 2000))  # ~30 MiB touched
        times = time_engine(eng, _batch(1), warmup=1, iters=3)
    del big
    assert mem.peak_mb is not None and mem.peak_mb > 10
    stats = latency_stats(times, batch=1)
    assert set(stats) == {'p50_ms', 'p90_ms', 'p99_ms', 'mean_ms', 'throughput_ips'}
    assert stats['p50_ms'] <= stats['p99_ms'] and stats['throughput_ips'] > 0


def test_model_source_other_size(source):
    """Engines follow the source's input size (bench runs one model at several sizes)."""
    other = ModelSource(source.module, (64, 64), source.sha256, source.stem)
    assert create_engine('onnxruntime', other)(_batch(1, (64, 64))).shape == (1, 3, 64, 64)


@pytest.mark.parametrize('variant', [{'antialias': True}, {'upsample': 'resize'},
                                     {'antialias': True, 'blur_first': True,
                                      'upsample': 'resize'}])
def test_generator_options_export_parity(variant, tmp_path):
    """BlurPool (either order) and resize-conv survive ONNX export (1e-3)."""
    torch.manual_seed(0)
    module = build('ResnetGenerator', **KWARGS, **variant).eval()
    path = export_onnx(module, tmp_path / 'v.onnx', SIZE, dynamic_batch=True)
    x = _batch(2)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(OnnxRuntimeEngine(path)(x) - ref)) <= 1e-3
