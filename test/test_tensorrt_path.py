"""The TensorRT path without TensorRT: parity refusal, cache keys, file modes, ONNX for TRT.

TensorRT cannot run on these machines, so everything around the build is tested here with
stand-ins: a perturbed torch module plays a bad engine, a fake ``torch_tensorrt.save`` writes the
engine file. The build itself (``torch_tensorrt.compile``) runs only where a GPU and
torch-tensorrt are installed.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import stat

import numpy as np
import pytest
from tiny_models import SIZE, save_tiny_generator
import torch

from vr_goggles.engines import EngineParityError, ModelSource, factory, source_from_weights
from vr_goggles.engines.base import model_key
from vr_goggles.engines.onnx_engine import (
    OnnxRuntimeEngine,
    declared_output_shape,
    export_onnx,
    onnx_cache_path,
    verify_onnx,
)
from vr_goggles.engines.parity import (
    PARITY_TOLERANCES,
    checked_engine,
    parity_inputs,
    parity_report,
)
from vr_goggles.engines.tensorrt_engine import (
    METADATA_KEYS,
    TensorRTEngine,
    build_metadata,
    compile_kwargs,
    default_engine_path,
    metadata_path,
)
from vr_goggles.models import build
from vr_goggles.weights import ModelCard, build_module, save


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv('VR_GOGGLES_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture
def umask022():
    """Run with the usual umask, whatever the test runner's is."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _as_numpy(module, dtype=torch.float32):
    """A torch module as a numpy engine callable computing in ``dtype``."""
    module = copy.deepcopy(module).eval().to(dtype)

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x).to(dtype)).float().numpy()
    return run


def _shipped():
    module, card = build_module('goggles_vr_goggles')
    return module.eval(), (1, 3, *card.input_size)


# -- parity ---------------------------------------------------------------------------------------

def test_parity_inputs_are_fixed_and_in_range():
    """Same inputs every time (seeded noise and a ramp), in [-1, 1], at the static shape."""
    a, b = parity_inputs((2, 3, 16, 24)), parity_inputs((2, 3, 16, 24))
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
    for x in a:
        assert x.shape == (2, 3, 16, 24) and x.dtype == np.float32
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1


@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_low_precision_arithmetic_passes_its_tolerance(precision):
    """The shipped generator run entirely in fp16 / bf16 passes: the tolerances are not tight.

    CPU arithmetic stands in for TensorRT's kernels; it measured fp16 max 0.0067 and bf16
    max 0.055 (see vr_goggles/engines/parity.py).
    """
    module, shape = _shipped()
    dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}[precision]
    report = parity_report(_as_numpy(module, dtype), _as_numpy(module), parity_inputs(shape),
                           precision)
    assert report['passed'], report
    assert 0 < report['max_abs'] <= PARITY_TOLERANCES[precision]['max_abs']


def _perturbed(module, scale=0.3):
    """The module with one convolution's weights disturbed: a stand-in for a bad engine."""
    bad = copy.deepcopy(module)
    conv = next(m for m in bad.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        conv.weight.add_(torch.randn(conv.weight.shape, generator=g) * scale
                         * conv.weight.std())
    return bad


def test_perturbed_engine_is_rebuilt_once_then_refused_with_the_numbers():
    """A bad engine fails parity, is rebuilt once, fails again, and is refused with numbers."""
    module, shape = _shipped()
    inputs, reference = parity_inputs(shape), _as_numpy(module)
    builds = []

    def build_bad():
        builds.append(1)
        return _as_numpy(_perturbed(module))

    def check(fn):
        return parity_report(fn, reference, inputs, 'fp16')

    with pytest.raises(EngineParityError) as ei:
        checked_engine(build=build_bad, check=check, what='g.ep')
    assert len(builds) == 2  # the build and one rebuild, no more
    err = ei.value
    assert err.backend == 'tensorrt' and not err.report['passed']
    assert err.report['max_abs'] > PARITY_TOLERANCES['fp16']['max_abs']
    msg = str(err)
    assert 'g.ep refused' in msg and 'built:' in msg and 'rebuilt:' in msg
    assert f'max abs diff {err.report["max_abs"]:.3g}' in msg and 'tolerance 0.03' in msg


def test_bad_saved_engine_is_rebuilt_and_the_good_rebuild_kept():
    """A loaded engine failing parity is replaced by a rebuild that passes."""
    module, shape = _shipped()
    inputs, reference = parity_inputs(shape), _as_numpy(module)
    fn, report, how = checked_engine(
        load=lambda: _as_numpy(_perturbed(module)), build=lambda: _as_numpy(module, torch.half),
        check=lambda f: parity_report(f, reference, inputs, 'fp16'))
    assert how == 'rebuilt' and report['passed'] and report['max_abs'] > 0
    fn2, report2, how2 = checked_engine(
        load=lambda: _as_numpy(module), build=lambda: pytest.fail('must not rebuild'),
        check=lambda f: parity_report(f, reference, inputs, 'fp32'))
    assert how2 == 'loaded' and report2['max_abs'] == 0


def test_non_finite_or_misshapen_output_fails():
    """NaNs or a wrong shape never pass, whatever the tolerance."""
    x = parity_inputs((1, 3, 8, 8))
    nan = parity_report(lambda a: a * np.nan, np.copy, x, 'bf16')
    shape = parity_report(lambda a: a[:, :2], np.copy, x, 'bf16')
    assert not nan['passed'] and not shape['passed'] and nan['max_abs'] == float('inf')


# -- cache key ------------------------------------------------------------------------------------

def _card_with(tmp_path, **change):
    """A generator whose card changes with the same tensors (n_down=0: no down/up layers).

    With no stride-2 layers, ``antialias`` and ``upsample`` change no tensor, so the edited card
    loads the same file: exactly the case a tensors-only cache key got wrong.
    """
    kwargs = {'ngf': 4, 'n_blocks': 1, 'n_down': 0}
    torch.manual_seed(0)
    module = build('ResnetGenerator', **kwargs)
    card = ModelCard(name='g', architecture='ResnetGenerator', kwargs=dict(kwargs),
                     input_size=list(SIZE))
    path = save(tmp_path / 'g', module.state_dict(), card)
    if change:
        card_path = path.with_suffix('.json')
        data = json.loads(card_path.read_text())
        data['kwargs'].update(change)
        card_path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize('change', [{'antialias': True}, {'upsample': 'resize'},
                                    {'antialias': True, 'blur_first': True}])
def test_card_change_with_same_tensors_changes_every_cache_key(tmp_path, change):
    """Same tensors, different card: different key, ONNX cache, engine path and auto key."""
    base, _ = source_from_weights(_card_with(tmp_path / 'a'))
    again, _ = source_from_weights(_card_with(tmp_path / 'b'))
    other, card = source_from_weights(_card_with(tmp_path / 'c', **change))
    assert other.sha256 == base.sha256 and card.kwargs != {'ngf': 4, 'n_blocks': 1,
                                                           'n_down': 0}
    assert again.key == base.key and other.key != base.key
    assert onnx_cache_path(other.key, 'g', SIZE) != onnx_cache_path(base.key, 'g', SIZE)
    shape = (1, 3, *SIZE)
    assert default_engine_path('g', other.key, shape, 'fp16') != \
        default_engine_path('g', base.key, shape, 'fp16')
    assert factory._cpu_cache_key(other, 'fp32', False) != \
        factory._cpu_cache_key(base, 'fp32', False)
    want = build_metadata(weights_sha256=base.sha256, input_shape=shape, precision='fp16',
                          gpu='g', versions={}, model_key=base.key)
    found = build_metadata(weights_sha256=other.sha256, input_shape=shape, precision='fp16',
                           gpu='g', versions={}, model_key=other.key)
    assert 'model_key' in METADATA_KEYS and want['model_key'] != found['model_key']


def test_key_without_a_card_follows_the_module_structure():
    """Sources built without architecture/kwargs key on the module's printed structure."""
    torch.manual_seed(0)
    a = build('ResnetGenerator', ngf=4, n_blocks=1, n_down=1)
    torch.manual_seed(0)
    b = build('ResnetGenerator', ngf=4, n_blocks=1, n_down=1, upsample='resize')
    assert model_key('s' * 64, module=a) != model_key('s' * 64, module=b)
    assert model_key('s' * 64, module=a) == model_key('s' * 64, module=copy.deepcopy(a))
    assert ModelSource(a, SIZE, 's' * 64).key == model_key('s' * 64, module=a)


# -- file modes -----------------------------------------------------------------------------------

def test_onnx_exports_are_readable(tmp_path, umask022):
    """Exported and cached ONNX files are 0644 like the weights, not mkstemp's 0600."""
    weights = save_tiny_generator(tmp_path / 'w' / 'tiny', seed=0)
    source, _ = source_from_weights(weights)
    path = export_onnx(source.module, tmp_path / 'g.onnx', SIZE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    cached = factory.create_engine('onnxruntime', source).path
    assert stat.S_IMODE(cached.stat().st_mode) == 0o644


class _FakeTorchTensorRT:
    """``torch_tensorrt.save`` as a file writer: enough to test what happens around it."""

    saved: list = []

    @classmethod
    def save(cls, module, path, *, output_format, arg_inputs):
        cls.saved.append((output_format, [tuple(a.shape) for a in arg_inputs]))
        with open(path, 'wb') as f:
            f.write(b'engine')


def test_engine_file_and_sidecar_are_readable_and_record_parity(tmp_path, umask022):
    """The saved engine is 0644, its sidecar carries the parity numbers and tolerances."""
    eng = object.__new__(TensorRTEngine)
    eng._torch, eng._dev, eng._dtype = torch, torch.device('cpu'), torch.float16
    eng.shape = (1, 3, *SIZE)
    eng.path = tmp_path / 'trt' / 'g.ep'
    eng.metadata = build_metadata(weights_sha256='ab' * 32, input_shape=eng.shape,
                                  precision='fp16', gpu='NVIDIA H100', versions={},
                                  model_key='cd' * 32)
    module, _ = _shipped()
    eng.parity = parity_report(_as_numpy(module, torch.half), _as_numpy(module),
                               parity_inputs((1, 3, 64, 64)), 'fp16')
    eng._save(_FakeTorchTensorRT, object())
    assert _FakeTorchTensorRT.saved[-1] == ('exported_program', [eng.shape])
    assert stat.S_IMODE(eng.path.stat().st_mode) == 0o644
    side = metadata_path(eng.path)
    assert stat.S_IMODE(side.stat().st_mode) == 0o644
    meta = json.loads(side.read_text())
    assert meta['model_key'] == 'cd' * 32 and meta['parity']['passed'] is True
    assert meta['parity']['tolerance'] == PARITY_TOLERANCES['fp16']
    assert meta['parity']['max_abs'] == eng.parity['max_abs'] > 0
    assert not [p for p in eng.path.parent.iterdir() if p.name.startswith('.')]


# -- the build call -------------------------------------------------------------------------------

def test_compile_kwargs_pass_the_device_and_no_dead_arguments():
    """torch-tensorrt 2.13 dynamo: device passed; precision from dtypes, no enabled_precisions."""
    class FakeInput:
        def __init__(self, shape, dtype):
            self.shape, self.dtype = shape, dtype

    class Fake:
        Input = FakeInput

    kw = compile_kwargs(Fake, (1, 3, 64, 64), torch.float16, torch.device('cuda:1'))
    assert kw['ir'] == 'dynamo' and kw['device'] == torch.device('cuda:1')
    (inp,) = kw['inputs']
    assert inp.shape == (1, 3, 64, 64) and inp.dtype == torch.float16
    assert kw['require_full_compilation'] is True
    assert not {'enabled_precisions', 'use_explicit_typing', 'arg_inputs'} & set(kw)


def test_auto_warns_when_a_gpu_robot_falls_back_from_tensorrt(tmp_path, monkeypatch, caplog):
    """With CUDA present and TensorRT failing, the auto line is a WARNING naming why."""
    from vr_goggles.engines import torch_engine

    weights = save_tiny_generator(tmp_path / 'w' / 'tiny', seed=0)
    source, _ = source_from_weights(weights)
    real_create = factory.create_engine

    def fake_create(backend, src, **kw):
        if backend == 'tensorrt':
            raise EngineParityError('tensorrt', 'refused: max abs diff 0.4', {})
        engine = real_create(backend, src, **dict(kw, device='cpu'))
        engine.device = kw.get('device', 'cpu')  # stands in for the CUDA torch engine
        return engine

    monkeypatch.setattr(factory, 'create_engine', fake_create)
    monkeypatch.setattr(torch_engine, 'cuda_unavailable_reason', lambda: None)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a: 'Fake GPU')
    with caplog.at_level(logging.INFO, logger='vr_goggles.engines'):
        eng = factory.select_engine(source, device='cuda')
    (rec,) = [r for r in caplog.records if 'engine auto' in r.getMessage()]
    assert eng.device == 'cuda' and rec.levelno == logging.WARNING
    assert 'tensorrt: skipped (build/load failed: EngineParityError' in rec.getMessage()


# -- ONNX for TensorRT / Isaac ROS ----------------------------------------------------------------

@pytest.mark.parametrize('dynamic', [False, True])
def test_onnx_declares_the_true_output_shape(tmp_path, dynamic):
    """Output dims: batch (static or the symbol 'batch'), 3, H, W static: not 'batch' for H."""
    import onnx

    module, _ = _shipped()
    path = export_onnx(module, tmp_path / 'g.onnx', (64, 64), dynamic_batch=dynamic)
    batch = 'batch' if dynamic else 1
    assert declared_output_shape(path) == [batch, 3, 64, 64]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = [[d.dim_param or d.dim_value for d in t.type.tensor_type.shape.dim]
            for t in (inp, out)]
    assert dims == [[batch, 3, 64, 64], [batch, 3, 64, 64]]
    assert verify_onnx(path, module, (64, 64), batch=2 if dynamic else 1) <= 1e-3


def test_fp16_onnx_keeps_float32_io_and_passes_the_fp16_tolerance(tmp_path):
    """--fp16: float16 weights inside, float32 bindings, within the fp16 engine tolerance."""
    import onnx

    module, _ = _shipped()
    path = export_onnx(module, tmp_path / 'h.onnx', (64, 64), fp16=True)
    model = onnx.load(str(path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [t.type.tensor_type.elem_type for t in (*model.graph.input, *model.graph.output)] \
        == [f32, f32]
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == 'Conv'}
    types = {i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert types == {f16}
    assert declared_output_shape(path) == [1, 3, 64, 64]
    diff = verify_onnx(path, module, (64, 64))
    assert 0 < diff <= PARITY_TOLERANCES['fp16']['max_abs']
    assert OnnxRuntimeEngine(path)(np.zeros((1, 3, 64, 64), np.float32)).dtype == np.float32
