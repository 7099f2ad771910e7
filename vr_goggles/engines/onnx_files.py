"""Which ONNX file runs a weights file under onnxruntime, and whether it belongs to them.

A robot without torch cannot export, so the file must already exist. For ``W.safetensors``
(a shipped model or a path) the ONNX Runtime engine of the goggles and of the policy looks in
this order:

1. ``W.onnx`` beside the weights (shipped: ``vr_goggles/weights/NAME.onnx``, written by
   ``vr-goggles export``). It is used only when its ``metadata_props`` record the SHA-256 of
   ``W.safetensors`` and the model key (architecture and card sizes) of its card; a stale or
   foreign file is refused with its path and the reason.
2. The export cache (:func:`vr_goggles.engines.onnx_engine.onnx_cache_path`, keyed by the model
   key), filled by earlier runs.
3. A fresh export into that cache, which needs torch.

Without 1 or 2 and without torch, :class:`EngineUnavailable` says in one line which file is
missing or refused and the command that makes it.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
from pathlib import Path
from typing import Any, TypeVar

from vr_goggles.engines.base import EngineFileError, EngineUnavailable, torch_import_error

log = logging.getLogger('vr_goggles.engines')

#: ``metadata_props`` keys of an ONNX file written by this project.
META_WEIGHTS_SHA256 = 'vr_goggles.weights_sha256'
META_MODEL_KEY = 'vr_goggles.model_key'
META_MODEL = 'vr_goggles.model'

R = TypeVar('R')


def metadata_for(source: Any) -> dict[str, str]:
    """What an export of ``source`` records: its weights' SHA-256, model key and name."""
    return {META_WEIGHTS_SHA256: source.sha256, META_MODEL_KEY: source.key,
            META_MODEL: source.stem}


def refusal(metadata: dict[str, str], source: Any) -> str:
    """Why an ONNX with ``metadata`` is not an export of ``source`` ('' when it is)."""
    sha = metadata.get(META_WEIGHTS_SHA256)
    if not sha:
        return (f'records no weights SHA-256 (metadata_props {META_WEIGHTS_SHA256}), so '
                'nothing says which weights it came from')
    if sha != source.sha256:
        return (f'exported from weights with SHA-256 {sha[:12]}..., but '
                f'{source.weights_path or source.stem} has {source.sha256[:12]}... '
                '(stale or foreign ONNX)')
    key = metadata.get(META_MODEL_KEY)
    if key and key != source.key:
        return (f'exported for another architecture or card sizes (model key {key[:12]}..., '
                f'the card gives {source.key[:12]}...)')
    return ''


def beside_weights(source: Any) -> Path | None:
    """``W.onnx`` next to ``W.safetensors`` (None for an in-memory model)."""
    if source.weights_path is None:
        return None
    return Path(source.weights_path).with_suffix('.onnx')


def onnx_ready(source: Any) -> bool:
    """Whether ONNX Runtime can run ``source`` without an export: the ``auto`` engines' test.

    True when an export of these weights already exists (beside them or in the cache; opening
    it checks it), checked first so that torch is not even imported then, or when torch cannot
    be imported (nothing else can run it). Shared by the policy and the domain score.
    """
    from vr_goggles.engines.onnx_engine import onnx_cache_path

    side = beside_weights(source)
    if ((side is not None and side.exists())
            or onnx_cache_path(source.key, source.stem, source.input_size).exists()):
        return True
    return torch_import_error() is not None  # imports torch when it is there


def export_command(source: Any, target: Path) -> str:
    """The ``vr-goggles export`` line that writes ``target`` for ``source``."""
    model = source.weights_path or source.stem
    return f'vr-goggles export --model {model} --onnx {target} --dynamic-batch'


def open_for_source(source: Any, open_file: Callable[[Path], R]) -> R:
    """Open the ONNX file that belongs to ``source`` with ``open_file`` (see the module doc).

    ``open_file(path)`` builds the runner (it must expose ``metadata``) and raises
    :class:`EngineFileError` for an unreadable file.
    """
    from vr_goggles.engines.onnx_engine import onnx_cache_path

    problems: list[str] = []
    side = beside_weights(source)
    if side is not None and side.exists():
        try:
            runner = open_file(side)
        except EngineFileError as e:
            problems.append(str(e))
        else:
            why = refusal(runner.metadata, source)
            if not why:
                return runner
            problems.append(f'{side}: refused: {why}')
    cache = onnx_cache_path(source.key, source.stem, source.input_size)
    if cache.exists():
        try:
            runner = open_file(cache)
        except EngineFileError as e:
            log.warning('ONNX cache %s is unreadable (%s); exporting it again', cache, e.reason)
            cache.unlink(missing_ok=True)
        else:
            # Caches written before the metadata existed are keyed by the model key alone.
            why = refusal(runner.metadata, source) if runner.metadata else ''
            if not why:
                if problems:
                    log.warning('%s; running the cached export %s instead', problems[-1], cache)
                return runner
            log.warning('ONNX cache %s refused: %s; exporting it again', cache, why)
            cache.unlink(missing_ok=True)
    no_torch = torch_import_error()
    if no_torch:
        target = side or cache
        found = '; '.join(problems) if problems else f'{target} not found'
        raise EngineUnavailable('onnxruntime', (
            f'no usable ONNX for {source.weights_path or source.stem}: {found}, and torch, '
            f'needed to export one, cannot be imported ({no_torch}); write it where torch is '
            f'installed with `{export_command(source, target)}`'))
    if problems:
        log.warning('%s; exporting to the ONNX cache %s instead', problems[-1], cache)
    from vr_goggles.engines.onnx_engine import ensure_onnx

    path = ensure_onnx(source.module, source.key, source.stem, source.input_size,
                       in_channels=source.in_channels, metadata=metadata_for(source))
    return open_file(path)
