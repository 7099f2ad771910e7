"""Weights I/O: safetensors tensors plus a JSON model card; never unpickles.

A model is two files side by side: ``NAME.safetensors`` (tensors only) and ``NAME.json`` (the
card: architecture and its keyword sizes, input size, normalisation, training command, metrics,
optionally how to reproduce it, and the SHA-256 of the tensors file). Every failure is a
:class:`WeightsError` naming the file and what is wrong, so a robot operator sees *which* file
to replace and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import hashlib
import json
import os
from pathlib import Path
import re
import shlex
import tempfile
from typing import Any

import numpy as np

from vr_goggles.image.preprocess import NORMALIZATION

#: Where the shipped weights live (installed as package data).
SHIPPED_DIR = Path(__file__).resolve().parent / 'weights'
CARD_VERSION = 1

#: The ``reproduce`` section of a card (optional; ``{}`` = not recorded): field -> type.
#: ``trained_at`` is the commit whose code trained the weights (``trained_at_basis`` says how
#: that is known), ``shipped_in`` the commit that shipped the file as it is now; ``data``,
#: ``train`` and ``select`` are the commands of each step, run in that order from one working
#: folder (``vr-goggles reproduce``); ``output`` is where they leave the weights in it.
REPRODUCE_FIELDS: dict[str, type] = {
    'trained_at': str, 'trained_at_basis': str, 'shipped_in': str, 'first_shipped_in': str,
    'data': list, 'train': list, 'select': list, 'output': str, 'note': str,
}
#: The steps of a ``reproduce`` section, in the order they run.
REPRODUCE_STEPS = ('data', 'train', 'select')
_COMMIT = re.compile(r'[0-9a-f]{40}')
#: Shell syntax a reproduce command cannot use: each one runs as an argument list, no shell.
_SHELL_TOKENS = frozenset({'&&', '||', '|', ';', '&', '>', '>>', '<', '2>', '2>&1'})


class WeightsError(ValueError):
    """A weights or card file is missing, truncated, corrupt or does not match the model."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f'{self.path}: {reason}')


@dataclass
class ModelCard:
    """What a robot needs to know to run a weights file correctly."""

    name: str
    architecture: str
    kwargs: dict[str, Any]
    input_size: list[int]
    task: str = ''
    normalization: dict[str, Any] = field(default_factory=lambda: dict(NORMALIZATION))
    training_command: str = ''
    reproduce: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str = ''
    card_version: int = CARD_VERSION

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | os.PathLike = '<card>') -> ModelCard:
        """Build a card from parsed JSON, naming the file if a field is missing or wrong."""
        if not isinstance(d, dict):
            raise WeightsError(path, f'card is a JSON {type(d).__name__}, expected an object')
        required = ('name', 'architecture', 'kwargs', 'input_size')
        missing = [k for k in required if k not in d]
        if missing:
            raise WeightsError(path, f'card lacks required field(s) {missing}')
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise WeightsError(path, f'card has unknown field(s) {unknown}')
        types = {'name': str, 'architecture': str, 'task': str, 'training_command': str,
                 'sha256': str, 'normalization': dict, 'metrics': dict, 'extra': dict,
                 'reproduce': dict, 'card_version': int}
        wrong = [f'{k}={d[k]!r} (expected {t.__name__})' for k, t in types.items()
                 if k in d and (not isinstance(d[k], t) or isinstance(d[k], bool))]
        if wrong:
            raise WeightsError(path, f'card field(s) of the wrong type: {", ".join(wrong)}')
        size = d['input_size']
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)):
            raise WeightsError(path, f'input_size must be [height, width], got {size!r}')
        if not isinstance(d['kwargs'], dict):
            raise WeightsError(path, f'kwargs must be an object, got {d["kwargs"]!r}')
        if d.get('reproduce'):
            problems = reproduce_problems(d['reproduce'])
            if problems:
                raise WeightsError(path, f'card field reproduce: {"; ".join(problems)}')
        return cls(**d)


def reproduce_problems(r: dict[str, Any]) -> list[str]:
    """What is wrong with a card's non-empty ``reproduce`` section (``[]``: nothing).

    Checked on load so that ``vr-goggles reproduce`` never starts a chain of hour-long steps
    that a malformed command would stop halfway: commits are full 40-hex SHAs, every step is a
    list of commands that split into arguments and use no shell syntax, and there is at least
    one training command.
    """
    problems = []
    unknown = sorted(set(r) - set(REPRODUCE_FIELDS))
    if unknown:
        problems.append(f'unknown field(s) {unknown}')
    wrong = [k for k, t in REPRODUCE_FIELDS.items() if k in r and not isinstance(r[k], t)]
    if wrong:
        problems.append(f'field(s) of the wrong type {wrong}')
    for k in ('trained_at', 'shipped_in', 'first_shipped_in'):
        if isinstance(r.get(k), str) and not _COMMIT.fullmatch(r[k]):
            problems.append(f'{k} must be a full 40-hex commit, got {r[k]!r}')
    if 'trained_at' not in r:
        problems.append('trained_at is missing')
    if not (isinstance(r.get('train'), list) and r['train']):
        problems.append('train needs at least one command')
    for step in REPRODUCE_STEPS:
        cmds = r.get(step, [])
        for i, cmd in enumerate(cmds if isinstance(cmds, list) else []):
            problem = _command_problem(cmd)
            if problem:
                problems.append(f'{step}[{i}] {problem}')
    return problems


def _command_problem(cmd: Any) -> str:
    """Why ``cmd`` cannot run as one argument list without a shell ('' if it can)."""
    if not isinstance(cmd, str) or not cmd.strip():
        return f'must be a non-empty command string, got {cmd!r}'
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        return f'does not split into arguments ({e}): {cmd!r}'
    shell = sorted(set(argv) & _SHELL_TOKENS)
    if shell:
        return f'uses shell syntax {shell} (one command per entry, no shell): {cmd!r}'
    return ''


def paths_for(path: str | os.PathLike) -> tuple[Path, Path]:
    """``x``, ``x.json`` or ``x.safetensors`` -> (tensors path, card path)."""
    p = Path(path)
    if p.suffix in ('.safetensors', '.json'):
        p = p.with_suffix('')
    return p.with_name(p.name + '.safetensors'), p.with_name(p.name + '.json')


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A shipped model name (e.g. ``goggles_vr_goggles``) or a path -> the tensors path."""
    s = str(name_or_path)
    tensors, _ = paths_for(s)
    if tensors.exists() or os.sep in s or s.endswith(('.safetensors', '.json')):
        return tensors
    shipped, _ = paths_for(SHIPPED_DIR / s)
    if shipped.exists():
        return shipped
    available = sorted(p.stem for p in SHIPPED_DIR.glob('*.safetensors'))
    raise WeightsError(s, f'no such file and no shipped model of that name '
                          f'(shipped: {", ".join(available) or "none"})')


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.' + path.name, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide shipped files from others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path: str | os.PathLike, state_dict: dict[str, Any], card: ModelCard) -> Path:
    """Save tensors (torch or numpy) and the card atomically; returns the tensors path."""
    from safetensors.numpy import save as np_save

    tensors, card_path = paths_for(path)
    arrays = {}
    for k, v in state_dict.items():
        if hasattr(v, 'detach'):
            v = v.detach().cpu().contiguous().numpy()
        arrays[k] = np.require(v, requirements='C')  # keeps 0-d tensors 0-d
    atomic_write_bytes(tensors, np_save(arrays))
    card.sha256 = sha256_file(tensors)
    atomic_write_bytes(card_path, (json.dumps(asdict(card), indent=2) + '\n').encode())
    return tensors


def load_card(path: str | os.PathLike) -> ModelCard:
    """Read and validate the JSON card that belongs to ``path``."""
    _, card_path = paths_for(path)
    if not card_path.exists():
        raise WeightsError(card_path, 'model card not found (every weights file needs its '
                                      '.json card beside it)')
    try:
        d = json.loads(card_path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(card_path, f'card is not valid JSON: {e}') from None
    return ModelCard.from_dict(d, card_path)


def load(path: str | os.PathLike, *, verify_hash: bool = True
         ) -> tuple[dict[str, np.ndarray], ModelCard]:
    """Load tensors as numpy arrays plus the card; never unpickles.

    Raises :class:`WeightsError` for a missing, truncated or corrupt file, or one whose hash does
    not match its card.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as np_load

    tensors = resolve(path)
    if not tensors.exists() and not paths_for(tensors)[1].exists():
        raise WeightsError(tensors, 'weights not found (neither this file nor its .json card '
                                    'exists)')
    card = load_card(tensors)
    if not tensors.exists():
        raise WeightsError(tensors, 'weights file not found')
    data = tensors.read_bytes()
    if len(data) < 8:
        raise WeightsError(tensors, f'truncated: {len(data)} bytes, not even a header')
    header_len = int.from_bytes(data[:8], 'little')
    if 8 + header_len > len(data):
        raise WeightsError(tensors, f'truncated: header says {header_len} bytes but the file '
                                    f'has {len(data) - 8} after the length field')
    if verify_hash and card.sha256:
        digest = hashlib.sha256(data).hexdigest()
        if digest != card.sha256:
            raise WeightsError(tensors, f'SHA-256 {digest[:12]}... does not match the card '
                                        f'({card.sha256[:12]}...): file corrupt or replaced')
    try:
        arrays = np_load(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise WeightsError(tensors, f'not a valid safetensors file: {e}') from None
    return arrays, card


def build_module(path: str | os.PathLike, *, verify_hash: bool = True):
    """Load weights + card and build the torch module the card names, in eval mode.

    A state dict that does not fit the architecture (missing/unexpected keys, wrong shapes) is a
    :class:`WeightsError` naming the file and the first mismatches.
    """
    import torch

    from vr_goggles.models import build

    arrays, card = load(path, verify_hash=verify_hash)
    tensors = resolve(path)
    try:
        module = build(card.architecture, **card.kwargs)
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(tensors, f'card architecture {card.architecture!r} with kwargs '
                                    f'{card.kwargs} cannot be built: {e}') from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    if missing or unexpected:
        raise WeightsError(tensors, f'state dict does not match {card.architecture}: '
                                    f'missing {missing[:5]}, unexpected {unexpected[:5]}')
    bad = [(k, tuple(arrays[k].shape), tuple(v.shape)) for k, v in expected.items()
           if tuple(arrays[k].shape) != tuple(v.shape)]
    if bad:
        k, got, want = bad[0]
        raise WeightsError(tensors, f'tensor {k!r} has shape {got}, {card.architecture} '
                                    f'expects {want} ({len(bad)} mismatched)')
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    module.eval()
    return module, card
