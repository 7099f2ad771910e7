"""Does the camera see what the goggles learned? A per-frame domain score and the stop rule.

The goggles translate the look they were trained on; a frame of something else (another
building, a covered lens, a dark corridor, a camera mounted upside down) comes out as a
plausible-looking hallucination, and the policy drives on it. :class:`DomainScore` scores each
camera frame against the goggles' training look (``vr_goggles.models.domain_score_net``: a
self-supervised rotation net and a per-row colour layout, fitted on the translator's own
unlabelled camera frames): about 0 for a typical in-domain frame, lower for less like it; the
card's ``threshold`` is the 1st percentile of held-out in-domain frames. It costs about a tenth
of a translation on a CPU and runs on the camera frame, so it works with any goggles engine.

:class:`DomainGuard` turns the scores into the stop decision of ``policy_node``: stop after
``stop_after`` consecutive frames below the threshold, resume after ``resume_after`` above it.
Both are plain Python, tested without ROS. Measured in ``docs/results/domain_score.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math
import os
from typing import Any

import numpy as np

from vr_goggles.image.preprocess import Preprocessor
from vr_goggles.weights import ModelCard, WeightsError, build_module, resolve

DEFAULT_DOMAIN_SCORE = 'domain_score'
ENGINES = ('torch', 'onnxruntime', 'auto')


class DomainScore:
    """Camera frames -> domain scores (higher = more like the goggles' training look)."""

    def __init__(self, module: Any, card: ModelCard, *, runner: Any = None,
                 name: str = '') -> None:
        self._module = module
        self.runner = runner
        self.card = card
        self.name = name or card.name
        extra = card.extra or {}
        if 'threshold' not in extra:
            raise WeightsError(self.name, 'card extra lacks the calibrated "threshold" of a '
                                          'domain score')
        #: calibrated stop threshold (1st percentile of held-out in-domain scores)
        self.threshold = float(extra['threshold'])
        #: what the weights were fitted on (the goggles' training data)
        self.fitted_on = str(extra.get('fitted_on', ''))
        self.preprocessor = Preprocessor(size=tuple(int(v) for v in card.input_size))

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = DEFAULT_DOMAIN_SCORE, *,
             engine: str = 'auto') -> DomainScore:
        """A shipped score by name or a weights path; ``engine`` as for the policy.

        ``torch``, ``onnxruntime`` (the ONNX export beside the weights; no torch import) or
        ``auto`` (ONNX Runtime when an export of these weights exists, beside them or in the
        cache, or torch is absent, else torch: :func:`vr_goggles.engines.onnx_files.onnx_ready`). A
        missing, corrupt or foreign file raises :class:`WeightsError` naming it.
        """
        from vr_goggles.engines.factory import require_torch, source_from_weights

        if engine not in ENGINES:
            raise ValueError(f'engine: expected one of {", ".join(ENGINES)}, got {engine!r}')
        path = resolve(name_or_path)
        if engine == 'torch':
            require_torch('torch')
            module, card = build_module(path)
            cls._check(card, path)
            return cls(module, card, name=str(path))
        source, card = source_from_weights(path, engine='onnxruntime')
        cls._check(card, path)
        from vr_goggles.engines.onnx_engine import OnnxModel
        from vr_goggles.engines.onnx_files import onnx_ready, open_for_source

        if engine == 'auto' and not onnx_ready(source):
            return cls(source.module, card, name=str(path))

        runner = open_for_source(source, lambda p: OnnxModel(p, threads=1))
        return cls(None, card, runner=runner, name=str(path))

    @staticmethod
    def _check(card: ModelCard, path: Any) -> None:
        if card.architecture != 'DomainScoreNet':
            raise WeightsError(path, f'is a {card.architecture}, not a domain score '
                                     '(DomainScoreNet)')

    @property
    def engine(self) -> str:
        """``torch`` or ``onnxruntime``."""
        return 'onnxruntime' if self.runner is not None else 'torch'

    def scores(self, images: np.ndarray | Sequence[np.ndarray],
               color_order: str = 'rgb') -> np.ndarray:
        """Camera frames (any size, the one preprocessing) -> float scores ``(N,)``."""
        x = self.preprocessor(images, color_order)
        if self.runner is not None:
            return np.asarray(self.runner(x), dtype=np.float64).reshape(len(x))
        import torch

        with torch.inference_mode():
            return self._module(torch.from_numpy(x)).double().numpy().reshape(len(x))

    def __call__(self, image: np.ndarray, color_order: str = 'rgb') -> float:
        """One camera frame -> its score."""
        return float(self.scores([image], color_order)[0])


def is_below(score: float, threshold: float) -> bool:
    """Whether ``score`` is below ``threshold`` as the guard counts it: NaN is below."""
    return not float(score) >= float(threshold)


@dataclass
class GuardState:
    """What :meth:`DomainGuard.update` decided for one frame."""

    stopped: bool   #: hold the robot still
    changed: bool   #: the decision flipped on this frame (log it once)
    reason: str     #: why, for the log line and the diagnostics


class DomainGuard:
    """The stop rule: hold the robot while the camera shows what the goggles do not know.

    Stop after ``stop_after`` consecutive scores below ``threshold``; resume after
    ``resume_after`` consecutive ones at or above it. A NaN score counts as below.
    """

    def __init__(self, threshold: float, stop_after: int = 5, resume_after: int = 8) -> None:
        if stop_after < 1 or resume_after < 1:
            raise ValueError(f'stop_after and resume_after must be >= 1, got {stop_after}, '
                             f'{resume_after}')
        self.threshold = float(threshold)
        self.stop_after = int(stop_after)
        self.resume_after = int(resume_after)
        self.stopped = False
        self.below = 0      # consecutive frames below the threshold
        self.above = 0      # consecutive frames at or above it
        self.stops = 0      # stop events so far
        self.last_score = math.nan

    def reset(self) -> None:
        """Forget the run of frames (a new stream); a stop stays until frames recover."""
        self.below = self.above = 0

    def update(self, score: float) -> GuardState:
        """Count one frame's score and return the decision after it."""
        score = float(score)
        self.last_score = score
        if is_below(score, self.threshold):
            self.below, self.above = self.below + 1, 0
        else:
            self.below, self.above = 0, self.above + 1
        changed = False
        if not self.stopped and self.below >= self.stop_after:
            self.stopped, changed = True, True
            self.stops += 1
        elif self.stopped and self.above >= self.resume_after:
            self.stopped, changed = False, True
        return GuardState(self.stopped, changed, self.reason())

    def retuned(self, threshold: float, stop_after: int, resume_after: int) -> DomainGuard:
        """The guard for these settings: itself when unchanged, else a copy keeping its state.

        The copy keeps the stop, the current runs of frames and the event count, so a change of
        threshold or frame counts at run time never releases a stopped robot by itself: the new
        rule applies from the next score on. A NaN threshold equals itself here (every score is
        below it, a stop), so a stream of them does not restart the count on every message.
        """
        threshold = float(threshold)
        if (self.stop_after, self.resume_after) == (stop_after, resume_after) and (
                self.threshold == threshold
                or (math.isnan(self.threshold) and math.isnan(threshold))):
            return self
        new = DomainGuard(threshold, stop_after=stop_after, resume_after=resume_after)
        new.stopped, new.below, new.above = self.stopped, self.below, self.above
        new.stops, new.last_score = self.stops, self.last_score
        return new

    def reason(self) -> str:
        """One line: why the guard stops, or that it does not."""
        if self.stopped:
            return (f'domain score {self.last_score:.2f} below threshold {self.threshold:.2f} '
                    f'for {max(self.below, self.stop_after)} frames: the goggles do not know '
                    'what the camera sees')
        return f'domain score {self.last_score:.2f} (threshold {self.threshold:.2f})'
