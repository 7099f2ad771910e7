"""vr_goggles.weights: round trip, and every way a weights file can be bad is a WeightsError."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from vr_goggles import weights  # noqa: E402
from vr_goggles.models import build  # noqa: E402
from vr_goggles.weights import (  # noqa: E402
    ModelCard,
    WeightsError,
    build_module,
    load,
    load_card,
    paths_for,
    resolve,
    save,
    sha256_file,
)

KWARGS = {'ngf': 4, 'n_blocks': 1}


def make_card(**overrides):
    """A small but complete generator card."""
    fields = dict(name='gen_test', architecture='ResnetGenerator', kwargs=dict(KWARGS),
                  input_size=[16, 16], task='real->sim', metrics={'fid': 1.5})
    return ModelCard(**{**fields, **overrides})


@pytest.fixture
def saved(tmp_path):
    """A random ResnetGenerator saved with its card; returns (tensors path, module)."""
    torch.manual_seed(0)
    gen = build('ResnetGenerator', **KWARGS).eval()
    return save(tmp_path / 'gen_test', gen.state_dict(), make_card()), gen


def rewrite_card(path, edit):
    """Apply ``edit`` to the parsed card JSON of ``path`` and write it back."""
    card_path = paths_for(path)[1]
    d = json.loads(card_path.read_text())
    d = edit(d)
    card_path.write_text(json.dumps(d))
    return card_path


# ------------------------------------------------------------------------------------------
# Happy path


def test_save_writes_two_files_and_hash(saved):
    """save() writes X.safetensors + X.json with the file's SHA-256, and no temp files."""
    path, _ = saved
    tensors, card_path = paths_for(path)
    assert tensors.name == 'gen_test.safetensors' and card_path.name == 'gen_test.json'
    assert sorted(p.name for p in path.parent.iterdir()) == ['gen_test.json',
                                                             'gen_test.safetensors']
    d = json.loads(card_path.read_text())
    assert d['sha256'] == sha256_file(tensors) and len(d['sha256']) == 64
    assert d['architecture'] == 'ResnetGenerator' and d['kwargs'] == KWARGS
    assert d['card_version'] == weights.CARD_VERSION


def test_load_round_trip(saved):
    """load() gives back every tensor exactly, as numpy, plus the card."""
    path, gen = saved
    arrays, card = load(path)
    expected = gen.state_dict()
    assert set(arrays) == set(expected)
    for k, v in expected.items():
        assert isinstance(arrays[k], np.ndarray)
        np.testing.assert_array_equal(arrays[k], v.numpy())
    assert card.name == 'gen_test' and card.metrics == {'fid': 1.5}
    assert card.input_size == [16, 16]


@pytest.mark.parametrize('form', ['stem', 'tensors', 'card', 'str'])
def test_paths_in_any_form(saved, form):
    """The stem, either file name, or a string all name the same model."""
    path, _ = saved
    stem = path.with_suffix('')
    arg = {'stem': stem, 'tensors': path, 'card': stem.with_suffix('.json'),
           'str': str(stem)}[form]
    assert resolve(arg) == path
    assert load(arg)[1].name == 'gen_test'


def test_build_module_identical_outputs(saved):
    """The rebuilt module is in eval mode and computes exactly what the saved one did."""
    path, gen = saved
    module, card = build_module(path)
    assert not module.training and card.architecture == 'ResnetGenerator'
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(module(x), gen(x))


def test_save_accepts_numpy_and_load_card(tmp_path):
    """Plain numpy state dicts save too; load_card reads only the card."""
    arrays = {'a': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.ones(2, np.int64)}
    path = save(tmp_path / 'np', arrays, make_card(name='np'))
    got, _ = load(path)
    np.testing.assert_array_equal(got['a'], arrays['a'])
    assert got['b'].dtype == np.int64
    assert load_card(path).name == 'np'


def test_atomic_write_replaces_and_creates_dirs(tmp_path):
    """atomic_write_bytes creates parents and replaces content without leftovers."""
    target = tmp_path / 'deep' / 'dir' / 'ckpt.bin'
    weights.atomic_write_bytes(target, b'one')
    weights.atomic_write_bytes(target, b'two')
    assert target.read_bytes() == b'two'
    assert os.listdir(target.parent) == ['ckpt.bin']


# ------------------------------------------------------------------------------------------
# Missing and corrupt files


def test_missing_tensors_file(saved):
    """Card present, tensors gone: the error names the .safetensors file."""
    path, _ = saved
    path.unlink()
    with pytest.raises(WeightsError, match='weights file not found') as e:
        load(path)
    assert e.value.path == str(path)


def test_missing_card(saved):
    """Tensors present, card gone: the error names the .json file."""
    path, _ = saved
    card_path = paths_for(path)[1]
    card_path.unlink()
    with pytest.raises(WeightsError, match='model card not found') as e:
        load(path)
    assert e.value.path == str(card_path)
    assert str(card_path) in str(e.value)


def _cuts(data):
    header_len = int.from_bytes(data[:8], 'little')
    return sorted({0, 1, 7, 8, 9, 8 + header_len // 2, 8 + header_len - 1, 8 + header_len,
                   8 + header_len + 1, (8 + header_len + len(data)) // 2, len(data) - 1})


@pytest.mark.parametrize('verify_hash', [True, False])
def test_truncated_at_every_kind_of_point(saved, verify_hash):
    """Cutting the file anywhere (length field, header, tensor data) is a WeightsError."""
    path, _ = saved
    data = path.read_bytes()
    for cut in _cuts(data):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError) as e:
            load(path, verify_hash=verify_hash)
        assert e.value.path == str(path), cut
        with pytest.raises(WeightsError):
            build_module(path, verify_hash=verify_hash)
    path.write_bytes(data)
    load(path)  # restored file loads again


def test_flipped_byte_is_hash_mismatch(saved):
    """One flipped bit in the tensor data is caught by the card's SHA-256."""
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match='SHA-256 .* does not match the card') as e:
        load(path)
    assert e.value.path == str(path)
    load(path, verify_hash=False)  # the file still parses: only the hash knows


def test_garbage_header_is_refused(saved):
    """A header that is not safetensors JSON is a WeightsError, not a parser crash."""
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[8] = ord('!')
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match='not a valid safetensors file'):
        load(path, verify_hash=False)


class _Boom:
    """Unpickling this writes a marker file: proof that something unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('writer', ['pickle', 'torch'])
def test_pickle_renamed_safetensors_is_refused(tmp_path, monkeypatch, writer):
    """A pickle or torch.save zip named .safetensors, even with a matching hash, is refused.

    Nothing is ever unpickled: the marker a malicious pickle would create never appears.
    """
    marker = tmp_path / 'UNPICKLED'
    path = tmp_path / 'evil.safetensors'
    if writer == 'pickle':
        path.write_bytes(pickle.dumps({'w': _Boom(str(marker))}, protocol=2))
    else:
        torch.save({'w': torch.zeros(2)}, path)
    card = make_card(name='evil', sha256=sha256_file(path))
    paths_for(path)[1].write_text(json.dumps(card.__dict__))

    def forbidden(*args, **kwargs):
        raise AssertionError('weights loading must never unpickle')

    monkeypatch.setattr(pickle, 'load', forbidden)
    monkeypatch.setattr(pickle, 'loads', forbidden)
    monkeypatch.setattr(torch, 'load', forbidden)
    for verify_hash in (True, False):
        with pytest.raises(WeightsError) as e:
            load(path, verify_hash=verify_hash)
        assert e.value.path == str(path)
        with pytest.raises(WeightsError):
            build_module(path, verify_hash=verify_hash)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------
# Bad cards


@pytest.mark.parametrize('text, match', [
    ('{"name": "x", ', 'card is not valid JSON'),
    ('', 'card is not valid JSON'),
    ('[1, 2]', 'card is a JSON list, expected an object'),
])
def test_card_invalid_json(saved, text, match):
    """Unparseable or non-object cards name the card file."""
    path, _ = saved
    card_path = paths_for(path)[1]
    card_path.write_text(text)
    with pytest.raises(WeightsError, match=match) as e:
        load(path)
    assert e.value.path == str(card_path)


def test_card_not_utf8(saved):
    """Binary junk in place of the card is a WeightsError too."""
    path, _ = saved
    card_path = paths_for(path)[1]
    card_path.write_bytes(b'\xff\xfe\x00garbage')
    with pytest.raises(WeightsError, match='not valid JSON'):
        load(path)


@pytest.mark.parametrize('edit, match', [
    (lambda d: {k: v for k, v in d.items() if k != 'architecture'},
     r"lacks required field\(s\) \['architecture'\]"),
    (lambda d: {k: v for k, v in d.items() if k not in ('kwargs', 'input_size')},
     r"lacks required field\(s\) \['kwargs', 'input_size'\]"),
    (lambda d: {**d, 'colour': 'blue'}, r"unknown field\(s\) \['colour'\]"),
    (lambda d: {**d, 'input_size': [16]}, r'input_size must be \[height, width\], got \[16\]'),
    (lambda d: {**d, 'input_size': [16, 0]}, 'input_size'),
    (lambda d: {**d, 'input_size': '16x16'}, 'input_size'),
    (lambda d: {**d, 'kwargs': [4, 1]}, 'kwargs must be an object'),
])
def test_card_bad_fields(saved, edit, match):
    """Missing, unknown or malformed card fields name the card file and the field."""
    path, _ = saved
    card_path = rewrite_card(path, edit)
    with pytest.raises(WeightsError, match=match) as e:
        load(path)
    assert e.value.path == str(card_path)


@pytest.mark.parametrize('field, value', [('sha256', 123), ('name', None), ('metrics', []),
                                          ('architecture', 5), ('card_version', 'one')])
def test_card_wrong_field_types(saved, field, value):
    """Fields of the wrong JSON type are a WeightsError, not a TypeError later on."""
    path, _ = saved
    card_path = rewrite_card(path, lambda d: {**d, field: value})
    with pytest.raises(WeightsError, match=field) as e:
        build_module(path)
    assert e.value.path == str(card_path)


def test_wrong_architecture_name(saved):
    """An architecture missing from the registry names the file and the known ones."""
    path, _ = saved
    rewrite_card(path, lambda d: {**d, 'architecture': 'NoSuchNet'})
    with pytest.raises(WeightsError, match="'NoSuchNet'.*cannot be built.*ResnetGenerator") as e:
        build_module(path)
    assert e.value.path == str(path)


@pytest.mark.parametrize('kwargs, match', [
    ({'ngf': 4, 'n_blocks': 1, 'bogus': 1}, 'cannot be built'),
    ({'ngf': 0, 'n_blocks': 1}, 'cannot be built'),
])
def test_unbuildable_kwargs(saved, kwargs, match):
    """Kwargs the class rejects (unknown or invalid values) name the file."""
    path, _ = saved
    rewrite_card(path, lambda d: {**d, 'kwargs': kwargs})
    with pytest.raises(WeightsError, match=match) as e:
        build_module(path)
    assert e.value.path == str(path)


def test_state_dict_key_mismatch(saved):
    """A card claiming more blocks than were saved: missing keys are listed."""
    path, _ = saved
    rewrite_card(path, lambda d: {**d, 'kwargs': {'ngf': 4, 'n_blocks': 2}})
    with pytest.raises(WeightsError, match=r'state dict does not match ResnetGenerator: '
                                           r"missing \['net\.") as e:
        build_module(path)
    assert e.value.path == str(path)


def test_state_dict_unexpected_keys(saved):
    """A card claiming fewer blocks than were saved: unexpected keys are listed."""
    path, _ = saved
    rewrite_card(path, lambda d: {**d, 'kwargs': {'ngf': 4, 'n_blocks': 0}})
    with pytest.raises(WeightsError, match=r"missing \[.*\], unexpected \['net\."):
        build_module(path)


def test_state_dict_shape_mismatch(saved):
    """Same keys, different widths: the first mismatched tensor and both shapes are named."""
    path, _ = saved
    rewrite_card(path, lambda d: {**d, 'kwargs': {'ngf': 8, 'n_blocks': 1}})
    with pytest.raises(WeightsError, match=r"tensor 'net\.1\.weight' has shape \(4, 3, 7, 7\), "
                                           r'ResnetGenerator expects \(8, 3, 7, 7\)') as e:
        build_module(path)
    assert e.value.path == str(path)


# ------------------------------------------------------------------------------------------
# Shipped names


def test_resolve_shipped_names(tmp_path, monkeypatch):
    """Bare names resolve in the shipped dir; unknown ones list what is shipped."""
    for name in ('goggles_b', 'goggles_a'):
        (tmp_path / f'{name}.safetensors').write_bytes(b'')
        (tmp_path / f'{name}.json').write_text('{}')
    monkeypatch.setattr(weights, 'SHIPPED_DIR', tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    assert resolve('goggles_a') == tmp_path / 'goggles_a.safetensors'
    with pytest.raises(WeightsError, match=r'no shipped model of that name '
                                           r'\(shipped: goggles_a, goggles_b\)') as e:
        resolve('goggles_c')
    assert e.value.path == 'goggles_c'
    with pytest.raises(WeightsError, match='no shipped model'):
        load('goggles_c')


def test_resolve_nothing_shipped(tmp_path, monkeypatch):
    """With no shipped weights the message says so instead of listing nothing."""
    monkeypatch.setattr(weights, 'SHIPPED_DIR', tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match=r'\(shipped: none\)'):
        resolve('goggles_vr_goggles')


def test_real_shipped_weights_load_if_present():
    """Whatever is in vr_goggles/weights/ must load and build cleanly (skipped when empty)."""
    shipped = sorted(weights.SHIPPED_DIR.glob('*.safetensors'))
    if not shipped:
        pytest.skip('no shipped weights yet')
    for path in shipped:
        module, card = build_module(path.stem)
        assert card.name == path.stem and not module.training


def test_zero_dim_tensors_round_trip_and_files_are_readable(tmp_path):
    """0-d buffers (BatchNorm's counter) stay 0-d; saved files get the umask's permissions."""
    import os

    import numpy as np

    from vr_goggles import weights

    card = weights.ModelCard(name='t', architecture='ResnetGenerator', kwargs={},
                             input_size=[8, 8])
    weights.save(tmp_path / 't', {'a': np.array(3, np.int64), 'b': np.ones((2, 2))}, card)
    arrays, _ = weights.load(tmp_path / 't')
    assert arrays['a'].shape == () and int(arrays['a']) == 3
    umask = os.umask(0)
    os.umask(umask)
    for suffix in ('.safetensors', '.json'):
        mode = os.stat(tmp_path / f't{suffix}').st_mode & 0o777
        assert mode == 0o666 & ~umask


# ------------------------------------------------------------------------------------------
# The reproduce section and the shipped files

SHA = 'a' * 40
REPRODUCE = {'trained_at': SHA, 'shipped_in': SHA, 'data': ['python -m x --n 1'],
             'train': ['python -m y --out "runs/a b"'], 'select': [], 'output': 'runs/a.bin',
             'note': 'n'}


def test_card_without_reproduce_still_loads(saved):
    """Cards written before the field existed (no ``reproduce`` key) load; it reads as {}."""
    path, _ = saved
    rewrite_card(path, lambda d: {k: v for k, v in d.items() if k != 'reproduce'})
    assert load_card(path).reproduce == {}
    assert load(path)[1].reproduce == {}


def test_reproduce_round_trip(tmp_path):
    """A reproduce section is saved with the card and read back unchanged."""
    path = save(tmp_path / 'r', {'a': np.zeros(2, np.float32)},
                make_card(name='r', reproduce=dict(REPRODUCE)))
    assert load_card(path).reproduce == REPRODUCE


@pytest.mark.parametrize('edit, match', [
    (lambda r: {**r, 'trained_at': 'abc123'}, 'trained_at must be a full 40-hex commit'),
    (lambda r: {**r, 'shipped_in': SHA.upper()}, 'shipped_in must be a full 40-hex commit'),
    (lambda r: {k: v for k, v in r.items() if k != 'trained_at'}, 'trained_at is missing'),
    (lambda r: {**r, 'train': []}, 'train needs at least one command'),
    (lambda r: {**r, 'data': 'python -m x'}, r"wrong type \['data'\]"),
    (lambda r: {**r, 'colour': 'blue'}, r"unknown field\(s\) \['colour'\]"),
    (lambda r: {**r, 'train': ['python -m a && python -m b']}, r"train\[0\] uses shell syntax"),
    (lambda r: {**r, 'select': ['python -c "unclosed']}, r'select\[0\] does not split'),
    (lambda r: {**r, 'data': ['']}, r'data\[0\] must be a non-empty command'),
])
def test_reproduce_section_is_validated(saved, edit, match):
    """A malformed reproduce section names the card and what is wrong, before anything runs."""
    path, _ = saved
    card_path = rewrite_card(path, lambda d: {**d, 'reproduce': edit(dict(REPRODUCE))})
    with pytest.raises(WeightsError, match=match) as e:
        load_card(path)
    assert e.value.path == str(card_path)


SHIPPED = ('goggles_cyclegan', 'goggles_cycada', 'goggles_vr_goggles', 'segmenter',
           'segmenter_dr', 'segmenter_dr2', 'segmenter_real', 'policy_sim', 'policy_randomized',
           'domain_score', 'segmenter_fda')


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_tensors_match_their_cards(name):
    """Every shipped .safetensors is, bit for bit, the file its card's SHA-256 names."""
    tensors, card_path = paths_for(weights.SHIPPED_DIR / name)
    card = load_card(card_path)
    assert card.name == name and len(card.sha256) == 64
    assert sha256_file(tensors) == card.sha256
