"""One ``--help`` builder for every training CLI: each config field's documentation shows."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import re

import pytest

from sim_training import (
    bench_translator,
    collect,
    eval_translator,
    select_translator,
    train_segmenter,
    train_translator,
)
from sim_training.config_cli import add_config_flags, field_docs, preset_config
from sim_training.train_segmenter import SegmenterConfig
from sim_training.translator.config import PRESETS, TranslatorConfig


def _squash(text: str) -> str:
    """Help text without whitespace: argparse re-wraps lines (and breaks after hyphens)."""
    return re.sub(r'\s+', '', text)


@dataclass
class _Documented:
    """A config documented every supported way."""

    plain: int = 1                #: trailing comment
    wrapped: str = 'a'            #: a trailing comment that
    #:                                continues below it, 36 % of it

    #: a block above the field it documents (after a blank line: not a continuation)
    above: float = 0.5
    doc: bool = False
    """an attribute docstring"""
    bare: int = 0
    # not a doc comment
    after_plain: int = 2          # plain comment: no help


def test_field_docs_reads_comments_and_docstrings():
    """``#:`` at the end of a line (continued below), ``#:`` above, and docstrings."""
    assert field_docs(_Documented) == {
        'plain': 'trailing comment',
        'wrapped': 'a trailing comment that continues below it, 36 %% of it',
        'above': 'a block above the field it documents (after a blank line: not a '
                 'continuation)',
        'doc': 'an attribute docstring'}


def test_add_config_flags_plain_and_with_presets():
    """Without presets the dataclass defaults parse; with them None marks what was not given."""
    p = argparse.ArgumentParser()
    add_config_flags(p, _Documented)
    assert _Documented(**vars(p.parse_args(['--no-doc', '--plain', '3']))) == _Documented(
        plain=3)
    presets = {'one': {'plain': 7}, 'two': {'wrapped': 'b'}}
    p = argparse.ArgumentParser()
    add_config_flags(p, _Documented, presets=presets, exclude=('bare',),
                     choices={'wrapped': ['a', 'b', 'c']})
    ns = p.parse_args(['--above', '2'])
    assert ns.plain is None and ns.doc is None and not hasattr(ns, 'bare')
    text = _squash(p.format_help())
    assert _squash('trailing comment (default 1; preset one: 7)') in text
    assert _squash("(default 'a'; preset two: 'b')") in text and '36%ofit' in text
    with pytest.raises(SystemExit):
        p.parse_args(['--wrapped', 'z'])


def test_preset_config_lays_the_given_flags_over_the_preset():
    """Preset values, then the flags given; the preset field's own default picks one."""
    p = argparse.ArgumentParser()
    add_config_flags(p, TranslatorConfig, presets=PRESETS, exclude=('extra',))
    cfg = preset_config(TranslatorConfig, p.parse_args(['--preset', 'vr_goggles',
                                                        '--lambda-shift', '1']), PRESETS)
    assert cfg.lambda_shift == 1.0 and cfg.lambda_sem_real == 1.0 and cfg.antialias
    default = preset_config(TranslatorConfig, p.parse_args([]), PRESETS)
    assert default.preset == 'cyclegan' and default.lambda_sem_sim == 0.0


@pytest.mark.parametrize('module,cls', [(train_translator, TranslatorConfig),
                                        (train_segmenter, SegmenterConfig)])
def test_training_help_shows_every_field_doc(module, cls):
    """Every field of a training config is documented, and --help shows that text."""
    docs = field_docs(cls)
    flags = {f.name for f in dataclasses.fields(cls)} - {'extra'}
    assert flags <= set(docs), f'undocumented: {sorted(flags - set(docs))}'
    text = _squash(module.build_parser().format_help())
    for name in flags:
        assert '--' + name.replace('_', '-') in text
        assert _squash(docs[name].replace('%%', '%')) in text, name


@pytest.mark.parametrize('module', [bench_translator, eval_translator, select_translator,
                                    collect, train_translator, train_segmenter])
def test_every_training_flag_has_help(module):
    """Scripts with hand-written parsers document each flag too."""
    parser = module.build_parser()
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, f'{module.__name__}: {action.option_strings or action.dest}'


def test_translator_help_names_the_presets_and_drops_removed_experiments():
    """The preset values show in --help; the removed experiments' flags are gone."""
    text = _squash(train_translator.build_parser().format_help())
    assert _squash('(default 0.0; preset vr_goggles: 3.0)') in text
    for gone in ('--lambda-paired', '--paired', '--lambda-class-color', '--ema-decay',
                 '--ema-start-step', '--input-skip', '--pseudo-ignore', '--lambda-task',
                 '--task-policy', '--shift-both', '--export-sim2real', '--blur-first'):
        assert gone not in text
        with pytest.raises(SystemExit):
            train_translator.build_parser().parse_args([gone, '1'])
