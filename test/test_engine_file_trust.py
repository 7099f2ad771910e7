"""A TensorRT engine file is unpickled only when its bytes are the ones its sidecar recorded.

Issue #39 item 5: ``torch.export.load`` of ``engine_file_path`` runs code from the file. The
sidecar records the file's SHA-256 when it is built; a mismatch is refused by path and reason
before anything loads it. No TensorRT or GPU needed: the decision is file logic, and the build's
save is driven with a fake ``torch_tensorrt.save``.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from vr_goggles.engines.base import EngineFileError
from vr_goggles.engines.tensorrt_engine import (
    build_metadata,
    decide_engine_action,
    metadata_path,
)


def _want() -> dict:
    return build_metadata(weights_sha256='ab' * 32, input_shape=(1, 3, 64, 64),
                          precision='fp16', gpu='NVIDIA H100',
                          versions={'tensorrt': '10.13.0', 'torch': '2.13.0',
                                    'torch_tensorrt': '2.13.0'})


def test_swapped_engine_file_is_refused_by_path_and_reason(tmp_path):
    """Same sidecar, other bytes: EngineFileError naming the file and both digests."""
    eng = tmp_path / 'g.ep'
    eng.write_bytes(b'engine as built')
    digest = hashlib.sha256(b'engine as built').hexdigest()
    metadata_path(eng).write_text(json.dumps(dict(_want(), engine_sha256=digest)))
    assert decide_engine_action(eng, _want())[0] == 'reuse'
    eng.write_bytes(b'a pickle that runs code')
    with pytest.raises(EngineFileError) as err:
        decide_engine_action(eng, _want())
    e = err.value
    assert e.path == str(eng) and 'SHA-256' in e.reason and digest in e.reason
    assert hashlib.sha256(b'a pickle that runs code').hexdigest() in e.reason
    assert eng.read_bytes() == b'a pickle that runs code'  # refused, not deleted or rebuilt over
    # force_engine_update still rebuilds on purpose
    assert decide_engine_action(eng, _want(), force_engine_update=True)[0] == 'build'


def test_sidecar_without_a_digest_means_rebuild_not_load(tmp_path):
    """A sidecar from before digests were recorded cannot vouch for the file: rebuild."""
    eng = tmp_path / 'g.ep'
    eng.write_bytes(b'old engine')
    metadata_path(eng).write_text(json.dumps(_want()))
    action, why = decide_engine_action(eng, _want())
    assert action == 'build' and 'engine_sha256' in why


def test_saved_sidecar_records_the_files_digest(tmp_path):
    """What ``_save`` writes is what the next start verifies (fake torch_tensorrt.save)."""
    torch = pytest.importorskip('torch')
    from vr_goggles.engines.tensorrt_engine import TensorRTEngine

    class FakeTorchTensorRT:
        @staticmethod
        def save(module, path, *, output_format, arg_inputs):
            with open(path, 'wb') as f:
                f.write(b'serialized program')

    eng = object.__new__(TensorRTEngine)
    eng._torch, eng._dev, eng._dtype = torch, torch.device('cpu'), torch.float16
    eng.shape = (1, 3, 64, 64)
    eng.path = tmp_path / 'trt' / 'g.ep'
    eng.metadata = _want()
    eng.parity = {'passed': True}
    eng._save(FakeTorchTensorRT, object())
    side = json.loads(metadata_path(eng.path).read_text())
    assert side['engine_sha256'] == hashlib.sha256(b'serialized program').hexdigest()
    assert decide_engine_action(eng.path, _want())[0] == 'reuse'
