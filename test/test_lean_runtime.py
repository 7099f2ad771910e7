"""The lean robot runtime (issue #36): ONNX Runtime goggles and policy without torch.

- the onnxruntime path of ``Goggles`` + ``Policy`` (and of both nodes' configure) imports no
  torch, checked in fresh interpreters;
- with torch made unimportable the shipped ONNX files (goggles, policy, domain score) run
  (``auto`` included) and give the torch results; without a usable ONNX the error is one line
  naming the file and the fix;
- a stale or foreign ONNX beside the weights is refused by path and reason;
- the actor's ONNX gives the torch logits within 1e-5 (tiny actor with frame stack and turn
  memory planes, and the shipped ``policy_sim``);
- the shipped ONNX files are exports of their safetensors (SHA-256 in ``metadata_props``,
  outputs through torch, a fresh ``vr-goggles export``), and small.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from vr_goggles import weights  # noqa: E402
from vr_goggles.engines import source_from_weights  # noqa: E402
from vr_goggles.engines.onnx_engine import OnnxModel, export_onnx  # noqa: E402
from vr_goggles.engines.onnx_files import (  # noqa: E402
    META_MODEL_KEY,
    META_WEIGHTS_SHA256,
)
from vr_goggles.image.preprocess import NORMALIZATION  # noqa: E402
from vr_goggles.models import build  # noqa: E402
from vr_goggles.policy import Policy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ONNX = ('goggles_vr_goggles', 'policy_sim', 'domain_score')
#: ONNX Runtime vs torch, max abs difference: images in [-1, 1] and logits to 1e-5; domain
#: scores reach about -20 on noise frames, where float32 sums agree to about 1e-5 relative
ONNX_ATOL = {'goggles_vr_goggles': 1e-5, 'policy_sim': 1e-5, 'domain_score': 2e-4}
#: Turn-memory actor: 3 frames (9 channels) + count and window planes.
STACK_KW = {'in_channels': 11, 'input_size': [64, 64], 'channels': [8, 16, 16],
            'features_dim': 32, 'n_actions': 3}
STACK_EXTRA = {'frame_stack': 3, 'turn_memory': 4, 'turn_window': 6, 'control_period_s': 0.5}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv('VR_GOGGLES_CACHE_DIR', str(tmp_path / 'cache'))


def _run(code: str, tmp_path: Path, *, block_torch: bool = False,
         timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (torch made unimportable with ``block_torch``)."""
    # keep the caller's PYTHONPATH: a sourced ROS install (Humble) puts rclpy there
    paths = [str(ROOT), *filter(None, os.environ.get('PYTHONPATH', '').split(os.pathsep))]
    if block_torch:  # a robot without torch: the import fails as it would when not installed
        blocker = tmp_path / 'no_torch' / 'torch'
        blocker.mkdir(parents=True, exist_ok=True)
        (blocker / '__init__.py').write_text(
            "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
        paths.insert(0, str(blocker.parent))
    env = {**os.environ, 'VR_GOGGLES_CACHE_DIR': str(tmp_path / 'cache'),
           'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.pathsep.join(paths)}
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


def _save_actor(path: Path, kwargs: dict, extra: dict, seed: int) -> Path:
    torch.manual_seed(seed)
    actor = build('NavActor', **kwargs).eval()
    card = weights.ModelCard(name=path.name, architecture='NavActor', kwargs=dict(kwargs),
                             input_size=[64, 64], normalization=dict(NORMALIZATION),
                             extra=dict(extra))
    return weights.save(path, actor.state_dict(), card)


def _export_beside(tensors: Path, tolerance: float = 1e-5) -> Path:
    """``vr-goggles export --model W --onnx W.onnx --dynamic-batch``, in-process."""
    from vr_goggles.commands import export

    onnx = tensors.with_suffix('.onnx')
    args = argparse.Namespace(model=str(tensors), onnx=str(onnx), opset=17, batch=1,
                              dynamic_batch=True, fp16=False, tolerance=tolerance)
    assert export.run(args) == 0
    return onnx


def _frames(rng, n: int) -> list[np.ndarray]:
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


# -- no torch on the onnxruntime path -------------------------------------------------------------
def test_onnxruntime_goggles_and_policy_import_no_torch(tmp_path):
    """Loading and running both on onnxruntime leaves torch out of sys.modules."""
    r = _run('''
        import sys
        import numpy as np
        from vr_goggles.goggles import Goggles
        from vr_goggles.policy import Policy
        g = Goggles.from_model(engine='onnxruntime')
        p = Policy.load('policy_sim', engine='onnxruntime')
        img = np.zeros((48, 64, 3), np.uint8)
        assert g.frame(img).shape == (64, 64, 3)
        p.velocity(img, t=0.0)
        print(g.engine.name, p.engine, sorted(m for m in sys.modules if m.split('.')[0] in (
            'torch', 'onnx')))
    ''', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ['onnxruntime', 'onnxruntime', '[]'], r.stdout


def test_nodes_configure_on_onnxruntime_without_importing_torch(tmp_path):
    """goggles_node (engine onnxruntime) and policy_node (engine default) configure torch-free."""
    pytest.importorskip('rclpy')
    r = _run('''
        import os, random, sys
        os.environ['ROS_DOMAIN_ID'] = str(random.randint(100, 200))
        os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        if os.environ.get('ROS_DISTRO') == 'humble':  # Humble predates the discovery range
            os.environ['ROS_LOCALHOST_ONLY'] = '1'
        import rclpy
        from rclpy.parameter import Parameter
        from vr_goggles.nodes.goggles_node import GogglesNode
        from vr_goggles.nodes.policy_node import PolicyNode
        from vr_goggles.nodes.ros_common import autostart
        rclpy.init()
        g = GogglesNode(parameter_overrides=[Parameter('engine', value='onnxruntime')])
        p = PolicyNode()
        assert autostart(g) and autostart(p)
        print(g.goggles.engine.name, p.policy.engine, 'torch' in sys.modules)
        g.destroy_node(); p.destroy_node(); rclpy.try_shutdown()
    ''', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-3:] == ['onnxruntime', 'onnxruntime', 'False'], r.stdout


def test_without_torch_the_shipped_onnx_run_and_match_torch(tmp_path, rng):
    """Without torch, auto picks onnxruntime for all three, with the torch outputs."""
    from vr_goggles.goggles.domain_score import DomainScore

    frames = np.stack(_frames(rng, 6))
    np.save(tmp_path / 'frames.npy', frames)
    r = _run('''
        import sys
        import numpy as np
        from vr_goggles.goggles import Goggles
        from vr_goggles.goggles.domain_score import DomainScore
        from vr_goggles.policy import Policy
        frames = np.load('frames.npy')
        g = Goggles.from_model()  # engine auto
        p = Policy.load('policy_sim', engine='auto')
        d = DomainScore.load('domain_score', engine='auto')
        assert g.engine.name == 'onnxruntime' and p.engine == 'onnxruntime'
        assert d.engine == 'onnxruntime'
        assert 'torch' not in sys.modules
        np.save('images.npy', g.translate_batch(list(frames)))
        np.save('logits.npy', p.logits(list(frames), times=[0.5 * i for i in range(6)]))
        np.save('scores.npy', d.scores(list(frames)))
    ''', tmp_path, block_torch=True)
    assert r.returncode == 0, r.stderr[-3000:]
    from vr_goggles.goggles import Goggles

    ref_img = Goggles.from_model(engine='torch').translate_batch(list(frames))
    got_img = np.load(tmp_path / 'images.npy')
    assert np.abs(got_img.astype(int) - ref_img.astype(int)).max() <= 1  # uint8 rounding
    ref = Policy.load('policy_sim', engine='torch').logits(
        list(frames), times=[0.5 * i for i in range(6)])
    np.testing.assert_allclose(np.load(tmp_path / 'logits.npy'), ref, atol=1e-5, rtol=0)
    scores = DomainScore.load('domain_score', engine='torch').scores(list(frames))
    np.testing.assert_allclose(np.load(tmp_path / 'scores.npy'), scores,
                               atol=ONNX_ATOL['domain_score'], rtol=0)


@pytest.mark.parametrize('kind', ['policy', 'goggles'])
def test_without_torch_and_onnx_the_error_is_one_line_with_the_fix(tmp_path, kind):
    """No ONNX beside the weights, none cached, no torch: one line naming file and command."""
    name = 'policy_sim' if kind == 'policy' else 'goggles_vr_goggles'
    for ext in ('.safetensors', '.json'):
        shutil.copy(weights.SHIPPED_DIR / f'{name}{ext}', tmp_path / f'{name}{ext}')
    load = (f"Policy.load({str(tmp_path / name)!r}, engine='onnxruntime')" if kind == 'policy'
            else f"Goggles.from_model({str(tmp_path / name)!r}, engine='onnxruntime')")
    r = _run(f'''
        from vr_goggles.engines import EngineUnavailable
        from vr_goggles.goggles import Goggles
        from vr_goggles.policy import Policy
        try:
            {load}
        except EngineUnavailable as e:
            print(e)
        else:
            raise SystemExit('loaded without an ONNX and without torch')
    ''', tmp_path, block_torch=True)
    assert r.returncode == 0, r.stderr[-3000:]
    line = r.stdout.strip()
    assert '\n' not in line
    onnx = tmp_path / f'{name}.onnx'
    assert f'{onnx} not found' in line and 'torch' in line
    assert f'vr-goggles export --model {tmp_path / name}.safetensors --onnx {onnx}' in line


def test_stale_or_foreign_onnx_beside_the_weights_is_refused(tmp_path, rng, caplog):
    """Refused by path and reason; with torch the policy falls back to a fresh export."""
    path = _save_actor(tmp_path / 'pol', STACK_KW, STACK_EXTRA, seed=0)
    onnx = _export_beside(path)
    _save_actor(tmp_path / 'pol', STACK_KW, STACK_EXTRA, seed=1)  # retrained: ONNX now stale
    r = _run(f'''
        from vr_goggles.policy import Policy
        Policy.load({str(path)!r}, engine='onnxruntime')
    ''', tmp_path, block_torch=True)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert f'{onnx}: refused: exported from weights with SHA-256' in last and 'stale' in last
    with caplog.at_level('WARNING', logger='vr_goggles.engines'):
        p = Policy.load(path, engine='onnxruntime')
    assert 'refused' in caplog.text and str(onnx) in caplog.text
    assert p.runner.path != onnx  # the cache export of the new weights
    x = rng.uniform(-1, 1, (2, 11, 64, 64)).astype(np.float32)
    ref = Policy.load(path, engine='torch').run(x)
    np.testing.assert_allclose(p.run(x), ref, atol=1e-5, rtol=0)
    # An ONNX that records nothing (exported by other code) is refused too.
    export_onnx(Policy.load(path).module, onnx, (64, 64), dynamic_batch=True, in_channels=11)
    source, _ = source_from_weights(path, engine='onnxruntime')
    from vr_goggles.engines.onnx_files import open_for_source, refusal

    assert 'records no weights SHA-256' in refusal(OnnxModel(onnx).metadata, source)
    assert open_for_source(source, OnnxModel).path != onnx


# -- actor parity ---------------------------------------------------------------------------------
def test_actor_onnx_matches_torch_with_frame_stack_and_turn_memory(tmp_path, rng):
    """Same logits within 1e-5 and same actions, step by step, history and planes included."""
    path = _save_actor(tmp_path / 'stacked', STACK_KW, STACK_EXTRA, seed=0)
    ours = Policy.load(path, engine='onnxruntime')
    ref = Policy.load(path, engine='torch')
    assert (ours.engine, ref.engine) == ('onnxruntime', 'torch')
    assert ours.turns is not None and ours.frame_stack == 3
    frames = _frames(rng, 12)
    times = [0.0, 0.2, 0.5, 1.0, 1.6, 2.0, 2.5, 2.7, 3.0, 3.5, 1.0, 1.5]  # time goes back too
    np.testing.assert_allclose(ours.logits(frames, times=times),
                               ref.logits(frames, times=times), atol=1e-5, rtol=0)
    ours.reset()
    ref.reset()
    assert [ours.act(f, t=t) for f, t in zip(frames, times)] == \
        [ref.act(f, t=t) for f, t in zip(frames, times)]
    assert 'onnx' in str(ours.runner.path)  # exported into the cache: no file beside
    # auto: an export exists now (cache), so onnxruntime; tiny weights without one: torch
    assert Policy.load(path, engine='auto').engine == 'onnxruntime'
    other = _save_actor(tmp_path / 'fresh', STACK_KW, STACK_EXTRA, seed=2)
    assert Policy.load(other, engine='auto').engine == 'torch'
    with pytest.raises(ValueError, match='engine'):
        Policy.load(path, engine='tensorrt')


def test_shipped_policy_onnx_matches_torch(rng):
    """policy_sim (4 frames + 2 turn planes): ONNX Runtime = torch within 1e-5."""
    ours = Policy.load('policy_sim', engine='onnxruntime')
    ref = Policy.load('policy_sim')
    assert ours.runner.path == weights.SHIPPED_DIR / 'policy_sim.onnx'
    frames = _frames(rng, 10)
    times = [0.5 * i for i in range(10)]
    np.testing.assert_allclose(ours.logits(frames, times=times),
                               ref.logits(frames, times=times), atol=1e-5, rtol=0)


# -- shipped ONNX files ---------------------------------------------------------------------------
@pytest.mark.parametrize('name', SHIPPED_ONNX)
def test_shipped_onnx_are_exports_of_their_weights(name, tmp_path, rng):
    """Metadata names the safetensors' SHA-256 and key; outputs = torch; = a fresh export."""
    tensors = weights.SHIPPED_DIR / f'{name}.safetensors'
    onnx = tensors.with_suffix('.onnx')
    source, card = source_from_weights(tensors)
    model = OnnxModel(onnx)
    assert model.metadata[META_WEIGHTS_SHA256] == weights.sha256_file(tensors) == card.sha256
    assert model.metadata[META_MODEL_KEY] == source.key
    # small: about the size of the weights they came from
    assert onnx.stat().st_size <= 1.15 * tensors.stat().st_size + 65536
    x = rng.uniform(-1, 1, (3, source.in_channels, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = source.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), ref, atol=ONNX_ATOL[name], rtol=0)
    # a fresh `vr-goggles export` of the safetensors gives the same graph results
    for ext in ('.safetensors', '.json'):
        shutil.copy(tensors.with_suffix(ext), tmp_path / f'{name}{ext}')
    again = OnnxModel(_export_beside(tmp_path / f'{name}.safetensors', ONNX_ATOL[name]))
    assert again.metadata == model.metadata
    np.testing.assert_allclose(again(x), model(x), atol=1e-6, rtol=0)


def test_cards_mention_their_onnx():
    """The card of each shipped ONNX says the file is there and how it was written."""
    for name in SHIPPED_ONNX:
        card = json.loads((weights.SHIPPED_DIR / f'{name}.json').read_text())
        onnx = card['extra'].get('onnx', {})
        assert onnx.get('file') == f'{name}.onnx', name
        assert onnx.get('bytes') == (weights.SHIPPED_DIR / f'{name}.onnx').stat().st_size, name
        assert f'vr-goggles export --model {name}' in onnx.get('command', ''), name


# -- packaging ------------------------------------------------------------------------------------
def test_torch_is_an_optional_extra_of_the_runtime():
    """install_requires has no torch; the torch and train extras pin the README's version."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'setup')
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords
          if k.arg in ('install_requires', 'extras_require')}
    assert not [r for r in kw['install_requires'] if r.startswith('torch')]
    assert 'onnxruntime>=1.17' in kw['install_requires']
    for extra in ('torch', 'train'):
        assert 'torch==2.13.0' in kw['extras_require'][extra], extra
