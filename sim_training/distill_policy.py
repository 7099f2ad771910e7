"""Self-expert cloning: a goggles-robust copy of the sim policy, trained in the simulator only.

Why: ``policy_sim`` drives 95 % in sim but is fragile to what translated frames carry (98 % on
clean sim frames vs 69 % with a Gaussian blur of sigma 1.5 and 84 % behind the shipped
VR-Goggles generator applied to the sim frames themselves;
docs/results/policy_camera_augment.json).
PPO with a corrupted camera traded the sim score for that robustness (93-94 % in sim). SECANT
(Fan et al., ICML 2021) splits the two jobs: the expert keeps the clean frames, and a student of
the same architecture imitates it on corrupted views of the *same* states, by DAgger on its own
rollouts (Ross et al., AISTATS 2011). Here the expert is the exported sim policy and the
corruptions are sim-side only, drawn per episode:

- ``clean``: the sim frame;
- ``camera``: the policy-training camera (``CameraModel`` profile ``'augment'``: defocus, noise,
  mild colour errors);
- ``camera_dr``: the domain-randomised camera (profile ``'randomized'``: also vignetting,
  tone curves, JPEG);
- ``goggles``: a shipped generator applied to the sim frame (its blur and colour shifts);
- ``camera_goggles``: a generator applied to the sim frame seen through the domain-randomised
  camera (profile ``'randomized'``), the way the goggles see a degraded camera;
- ``fake_real_goggles``: a generator applied to a *fake-real* frame, the sim frame through a
  sim->real generator (``--fake-real``: the cycle partner F of another translator run,
  ``train_translator --export-sim2real``), so the goggles see real-like input of a known state.

Every shipped preset is drawn equally, so the student is tied to none of them. No real-proxy
frame and no evaluation layout is used; the training layouts that model selection drives on
(``sim_training.evaluate_policy.eval_seeds(..., split='train')``, the first
:data:`SELECTION_LAYOUTS`) are left out too.

The student starts as a copy of the expert. Every state is labelled by the expert's action
distribution on the clean frame stack, and the student is fitted with the soft cross-entropy on
its corrupted stack plus ``clean_weight`` times the same on the clean stack, which keeps its sim
behaviour. Rounds checkpoint atomically (student, optimizer, random state, the round's samples)
and a rerun with the same ``--out`` resumes after the last finished round.

Measured (docs/results/policy_distill.json; 60-72k labelled states, 11-20 min on one core): the
students keep the sim score (96-98.5 % on 200 training layouts vs 97.5 %) but camera-only mixes
drive 35-40 % behind VR-Goggles vs the expert's 36 %, and mixes with goggles frames 8-17 %:
they learn that goggles artefacts are not chairs and search in place where the expert drives
on. The shipped policy is not distilled; the tool stays for the next sim look.

``python -m sim_training.distill_policy --out runs/distill --export runs/distill/policy`` then
``python -m sim_training.evaluate_policy --policy runs/distill/policy --split train`` and
``python -m sim_training.select_translator goggles_vr_goggles --policy runs/distill/policy``.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import asdict, dataclass
import io
import json
import math
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

from sim_training.dagger import frames_from_uint8, to_uint8

#: Modes of corruption, in the order ``--mix`` weights are reported.
MODES: tuple[str, ...] = ('clean', 'camera', 'camera_dr', 'goggles', 'camera_goggles',
                          'fake_real_goggles')
#: Training layouts kept out of the collection: the first this many of the seed-0 training
#: permutation, which ``select_translator`` and ``evaluate_policy --split train`` drive on.
SELECTION_LAYOUTS = 1000


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (recorded in the card)."""

    teacher: str = 'policy_sim'
    """the expert: a shipped policy name or an exported policy path (NavActor, frame stack)"""
    out: str = 'runs/distill'
    """run folder: checkpoint, round samples, exported student (out/policy)"""
    export: str = ''
    """also write the student here (e.g. vr_goggles/weights/policy_sim)"""
    goggles: str = 'goggles_cyclegan,goggles_cycada,goggles_vr_goggles'
    """generators of the goggles modes, drawn equally per episode (names or paths)"""
    mix: str = 'clean=0.3,camera=0.35,camera_dr=0.35'
    """per-episode probabilities of the corruption modes (the goggles modes drove worse)"""
    fake_real: str = ''
    """sim->real generator of the fake_real_goggles mode (train_translator --export-sim2real)"""
    envs: int = 8
    """simulators stepped together (one batch through the networks)"""
    rounds: int = 4
    """collect-then-fit rounds; round 0 is driven by the expert alone"""
    steps_per_round: int = 15_000
    """labelled states collected per round"""
    beta_decay: float = 0.5
    """round k takes the expert's action with probability beta_decay ** k"""
    epochs: int = 2
    """passes over all samples so far after each round"""
    batch_size: int = 256
    lr: float = 3e-4
    """Adam learning rate of the student"""
    clean_weight: float = 1.0
    """weight of the soft cross-entropy on the clean stacks (keeps the sim behaviour)"""
    temperature: float = 1.0
    """softmax temperature of the expert's labels"""
    max_grad_norm: float = 1.0
    seed: int = 0
    threads: int = 2
    """torch intra-op threads"""
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ('envs', 'rounds', 'steps_per_round', 'epochs', 'batch_size', 'threads'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name}: expected >= 1, got {getattr(self, name)!r}')
        if not 0.0 <= self.beta_decay <= 1.0:
            raise ValueError(f'beta_decay: expected a value in [0, 1], got {self.beta_decay!r}')
        for name in ('lr', 'temperature', 'max_grad_norm'):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f'{name}: expected > 0, got {getattr(self, name)!r}')
        if self.clean_weight < 0:
            raise ValueError(f'clean_weight: expected >= 0, got {self.clean_weight!r}')
        p = dict(zip(MODES, parse_mix(self.mix)))
        if any(p[m] for m in MODES if 'goggles' in m) and not self.goggle_models():
            raise ValueError('goggles: a goggles mode needs at least one generator')
        if p['fake_real_goggles'] and not self.fake_real:
            raise ValueError('fake_real: the fake_real_goggles mode needs a sim->real generator')

    def goggle_models(self) -> list[str]:
        """The generator names/paths of ``goggles``."""
        return [g.strip() for g in self.goggles.split(',') if g.strip()]


def parse_mix(text: str) -> np.ndarray:
    """``'clean=0.2,camera=0.8'`` -> probabilities over :data:`MODES` (normalised to sum 1)."""
    p = np.zeros(len(MODES))
    for part in filter(None, (s.strip() for s in text.split(','))):
        name, sep, value = part.partition('=')
        if not sep or name.strip() not in MODES:
            raise ValueError(f'mix: expected mode=weight with a mode of {MODES}, got {part!r}')
        try:
            w = float(value)
        except ValueError:
            raise ValueError(f'mix: weight of {name.strip()!r} is not a number: '
                             f'{value!r}') from None
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f'mix: weight of {name.strip()!r} must be >= 0, got {w}')
        p[MODES.index(name.strip())] = w
    if p.sum() <= 0:
        raise ValueError(f'mix: no positive weight in {text!r}')
    return p / p.sum()


def soft_cross_entropy(logits: Any, target_probs: Any) -> Any:
    """Mean ``-sum p * log softmax(logits)``: the KL to the expert up to its entropy."""
    import torch

    return -(target_probs * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def collection_layouts(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` training-split layout seeds, none of the model-selection layouts."""
    from sim_training.envs.chair_nav import TRAIN_SEEDS
    from sim_training.evaluate_policy import eval_seeds

    held = np.array(eval_seeds(SELECTION_LAYOUTS, 0, 'train'), np.int64)
    out = np.empty(0, np.int64)
    while out.size < n:
        draw = rng.integers(TRAIN_SEEDS.start, TRAIN_SEEDS.stop, size=2 * n)
        out = np.concatenate([out, draw[~np.isin(draw, held)]])
    return out[:n]


class Lane:
    """One simulator with its episode's corruption, frame histories and turn memory."""

    def __init__(self, env: Any, card_extra: dict[str, Any], rng: np.random.Generator):
        from vr_goggles.policy.frame_stack import FrameStack
        from vr_goggles.policy.turn_memory import TurnMemory

        k = int(card_extra.get('frame_stack', 1))
        offsets = card_extra.get('frame_offsets')
        limit = int(card_extra.get('turn_memory', 0))
        self.env = env
        self.rng = rng
        self.clean_stack = FrameStack(k, offsets=offsets)
        self.view_stack = FrameStack(k, offsets=offsets)
        self.turns = (TurnMemory(limit, window=int(card_extra.get('turn_window', 0)))
                      if limit else None)
        self.mode = 'clean'
        self.generator = -1
        self.camera: Any = None
        self.obs: np.ndarray | None = None

    def reset(self, layout: int, mode_p: np.ndarray, n_generators: int) -> None:
        """New episode in ``layout`` with a freshly drawn corruption."""
        from sim_training.envs.real_proxy import CameraModel

        self.obs, _ = self.env.reset(seed=int(layout))
        self.clean_stack.reset()
        self.view_stack.reset()
        if self.turns is not None:
            self.turns.reset()
        self.mode = MODES[int(self.rng.choice(len(MODES), p=mode_p))]
        self.generator = (int(self.rng.integers(n_generators))
                          if 'goggles' in self.mode else -1)
        profile = {'camera': 'augment', 'camera_dr': 'randomized',
                   'camera_goggles': 'randomized'}.get(self.mode)
        self.camera = CameraModel.sample(self.rng, profile) if profile else None

    def camera_view(self) -> np.ndarray:
        """The frame through this episode's camera (before any generator)."""
        return self.obs if self.camera is None else self.camera.apply(self.obs, self.rng)

    def planes(self, size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, ...]]:
        """Turn-memory planes of this step (none without a memory) and their values."""
        if self.turns is None:
            return np.zeros((0, *size), np.float32), ()
        values = self.turns.observe()
        return self.turns.planes(size, values), values


def from_uint8(frames: np.ndarray, planes: np.ndarray) -> Any:
    """uint8 frame stacks ``(N, 3k, H, W)`` + plane values ``(N, P)`` -> float input tensor."""
    import torch

    x = frames_from_uint8(frames)
    if planes.shape[1]:
        n, _, h, w = x.shape
        p = torch.from_numpy(planes.astype(np.float32))[:, :, None, None].expand(
            n, planes.shape[1], h, w)
        x = torch.cat([x, p], dim=1)
    return x


def translate_lanes(model: Any, views: list[np.ndarray], idx: list[int]) -> None:
    """Replace ``views[j]`` for ``j`` in ``idx`` by ``model``'s translation, in one batch."""
    if idx:
        for j, img in zip(idx, model.translate_batch([views[j] for j in idx])):
            views[j] = img


def collect(lanes: list[Lane], teacher: Any, student: Any, goggles: list[Any],
            preprocess: Any, n_steps: int, beta: float, cfg: DistillConfig,
            layouts: Any, mode_p: np.ndarray, rng: np.random.Generator,
            progress: Any = None, fake_real: Any = None
            ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Drive the expert/student mix for ``n_steps`` states; label each with the expert."""
    import torch

    per_lane = math.ceil(n_steps / len(lanes))
    n = per_lane * len(lanes)
    size = tuple(preprocess.size)
    k = 3 * lanes[0].clean_stack.k
    n_planes = lanes[0].turns.n_planes if lanes[0].turns is not None else 0
    clean_buf = np.empty((n, k, *size), np.uint8)
    view_buf = np.empty((n, k, *size), np.uint8)
    plane_buf = np.empty((n, n_planes), np.float32)
    probs_buf = np.empty((n, teacher.action_net.out_features), np.float32)
    modes_buf = np.empty(n, np.int8)
    ended = succeeded = agree = 0
    ended_by_mode = np.zeros(len(MODES), np.int64)
    success_by_mode = np.zeros(len(MODES), np.int64)
    i = 0
    for _ in range(per_lane):
        views = [lane.camera_view() for lane in lanes]
        # fake-real first (sim -> real), then each lane's goggles (real -> sim) on top
        translate_lanes(fake_real, views,
                        [j for j, lane in enumerate(lanes) if lane.mode == 'fake_real_goggles'])
        for g, model in enumerate(goggles):
            translate_lanes(model, views,
                            [j for j, lane in enumerate(lanes) if lane.generator == g])
        clean_x, view_x, plane_vals = [], [], []
        clean_frames = preprocess([lane.obs for lane in lanes])
        view_frames = preprocess(views)
        for lane, clean_frame, view_frame in zip(lanes, clean_frames, view_frames):
            clean = lane.clean_stack.push(clean_frame)
            seen = lane.view_stack.push(view_frame)
            planes, values = lane.planes(size)
            clean_x.append(np.concatenate([clean, planes]))
            view_x.append(np.concatenate([seen, planes]))
            plane_vals.append(values)
        with torch.inference_mode():
            t_logits = teacher(torch.from_numpy(np.stack(clean_x)))
            s_logits = student(torch.from_numpy(np.stack(view_x)))
        expert = t_logits.argmax(dim=1).numpy()
        learner = s_logits.argmax(dim=1).numpy()
        agree += int((expert == learner).sum())
        probs = torch.softmax(t_logits / cfg.temperature, dim=1).numpy()
        actions = np.where(rng.random(len(lanes)) < beta, expert, learner)
        sl = slice(i, i + len(lanes))
        clean_buf[sl] = to_uint8(np.stack([x[:k] for x in clean_x]))
        view_buf[sl] = to_uint8(np.stack([x[:k] for x in view_x]))
        plane_buf[sl] = np.asarray(plane_vals, np.float32).reshape(len(lanes), -1)
        probs_buf[sl] = probs
        modes_buf[sl] = [MODES.index(lane.mode) for lane in lanes]
        i += len(lanes)
        for lane, action in zip(lanes, actions):
            if lane.turns is not None:
                lane.turns.record(int(action))
            lane.obs, _, terminated, truncated, info = lane.env.step(int(action))
            if terminated or truncated:
                m = MODES.index(lane.mode)
                ended += 1
                ended_by_mode[m] += 1
                ok = bool(info.get('success', False))
                succeeded += ok
                success_by_mode[m] += ok
                lane.reset(next(layouts), mode_p, len(goggles))
        if progress is not None:
            progress.update(len(lanes))
    samples = {'clean': clean_buf, 'view': view_buf, 'planes': plane_buf, 'probs': probs_buf,
               'modes': modes_buf}
    figures: dict[str, float] = {
        'episodes': ended, 'success_rate': round(succeeded / max(ended, 1), 4),
        'student_agrees': round(agree / n, 4)}
    for m, name in enumerate(MODES):
        if ended_by_mode[m]:
            figures[f'success_{name}'] = round(success_by_mode[m] / ended_by_mode[m], 4)
    return samples, figures


class Samples:
    """The rounds' samples, kept as they were collected (no concatenated copy of GBs)."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, np.ndarray]] = []
        self.ends = np.zeros(0, np.int64)

    def add(self, samples: dict[str, np.ndarray]) -> None:
        """Append one round's samples (:func:`collect`'s dict)."""
        self.rounds.append(samples)
        self.ends = np.cumsum([len(r['probs']) for r in self.rounds])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def take(self, key: str, idx: np.ndarray) -> np.ndarray:
        """``key`` at sorted global indices ``idx``."""
        parts, lo = [], 0
        for r, hi in zip(self.rounds, self.ends):
            a, b = np.searchsorted(idx, [lo, hi])
            if b > a:
                parts.append(r[key][idx[a:b] - lo])
            lo = hi
        return np.concatenate(parts)


def fit(student: Any, data: Samples, cfg: DistillConfig, optimizer: Any,
        rng: np.random.Generator) -> dict[str, float]:
    """``cfg.epochs`` passes of the soft cross-entropy over all samples so far."""
    import torch

    student.train()
    n = len(data)
    sums = {'ce_view': 0.0, 'ce_clean': 0.0, 'agree_view': 0.0, 'agree_clean': 0.0}
    seen = 0
    for _ in range(cfg.epochs):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            idx = np.sort(order[start:start + cfg.batch_size])
            planes = data.take('planes', idx)
            target = torch.from_numpy(data.take('probs', idx))
            view_logits = student(from_uint8(data.take('view', idx), planes))
            ce_view = soft_cross_entropy(view_logits, target)
            loss = ce_view
            if cfg.clean_weight > 0:
                clean_logits = student(from_uint8(data.take('clean', idx), planes))
                ce_clean = soft_cross_entropy(clean_logits, target)
                loss = loss + cfg.clean_weight * ce_clean
                sums['ce_clean'] += float(ce_clean.detach()) * len(idx)
                sums['agree_clean'] += float(
                    (clean_logits.argmax(1) == target.argmax(1)).float().sum())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
            optimizer.step()
            sums['ce_view'] += float(ce_view.detach()) * len(idx)
            sums['agree_view'] += float((view_logits.argmax(1) == target.argmax(1)).float().sum())
            seen += len(idx)
    student.eval()
    out = {k: round(v / seen, 4) for k, v in sums.items()}
    if cfg.clean_weight <= 0:
        out.pop('ce_clean'), out.pop('agree_clean')
    return out


def _save_round(path: Path, samples: dict[str, np.ndarray]) -> None:
    from vr_goggles.weights import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **samples)
    atomic_write_bytes(path, buf.getvalue())


def _load_round(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in ('clean', 'view', 'planes', 'probs', 'modes')}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f'{path}: unreadable round samples ({e}); delete it and the '
                         f'checkpoint to collect again') from None


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    from vr_goggles.weights import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def export_student(student: Any, teacher_card: Any, path: str | os.PathLike,
                   cfg: DistillConfig, command: str, history: list[dict[str, Any]]) -> Path:
    """Write the student with the expert's card (same input contract), its own provenance."""
    from vr_goggles.weights import save

    card = copy.deepcopy(teacher_card)
    card.name = Path(path).name
    card.training_command = command
    card.metrics = {'distillation': history}
    card.extra = {**card.extra, 'distilled_from': cfg.teacher,
                  'distillation_config': asdict(cfg)}
    card.sha256 = ''
    return save(path, student.state_dict(), card)


def distill(cfg: DistillConfig, command: str = '') -> dict[str, Any]:
    """Run (or resume) the distillation; returns the per-round figures."""
    import torch
    from tqdm import tqdm

    from sim_training.evaluate_policy import make_chair_env
    from vr_goggles.goggles import Goggles
    from vr_goggles.image.preprocess import Preprocessor
    from vr_goggles.weights import build_module

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher, card = build_module(cfg.teacher)
    if card.architecture != 'NavActor':
        raise ValueError(f'teacher {cfg.teacher}: expected a NavActor policy, card says '
                         f'{card.architecture!r}')
    teacher.eval()
    student = copy.deepcopy(teacher)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, Any]] = []
    data = Samples()
    ckpt = out / 'checkpoint.pt'
    start = 0
    if ckpt.exists():
        try:
            state = torch.load(ckpt, map_location='cpu', weights_only=False)
            student.load_state_dict(state['student'])
            optimizer.load_state_dict(state['optimizer'])
            rng.bit_generator.state = state['rng']
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is refused by name
            raise ValueError(f'{ckpt}: unreadable checkpoint ({e})') from None
        if state.get('config', {}).get('teacher') != cfg.teacher:
            raise ValueError(f'{ckpt}: was trained from {state.get("config", {}).get("teacher")}'
                             f', not {cfg.teacher}; use another --out')
        history, start = state['history'], int(state['round']) + 1
        for k in range(start):
            data.add(_load_round(out / f'round_{k}.npz'))
        print(f'resumed {out} after round {start - 1} ({len(data)} samples)')
    student.eval()
    preprocess = Preprocessor(size=tuple(card.input_size),
                              keep_aspect=bool(card.extra.get('preprocessing', {})
                                               .get('keep_aspect', True)))
    goggles = [Goggles.from_model(g, engine='torch') for g in cfg.goggle_models()]
    fake_real = Goggles.from_model(cfg.fake_real, engine='torch') if cfg.fake_real else None
    mode_p = parse_mix(cfg.mix)
    layouts = iter(collection_layouts(rng, 10 * cfg.rounds * cfg.steps_per_round))
    lanes = [Lane(make_chair_env(domain='sim', split='train', obs_size=int(card.input_size[0])),
                  card.extra, np.random.default_rng([cfg.seed, i]))
             for i in range(cfg.envs)]
    t0 = time.perf_counter()
    try:
        for lane in lanes:
            lane.reset(next(layouts), mode_p, len(goggles))
        for k in range(start, cfg.rounds):
            beta = cfg.beta_decay ** k
            bar = tqdm(total=cfg.steps_per_round, unit='step', unit_scale=True,
                       desc=f'round {k}', disable=not cfg.progress, dynamic_ncols=True)
            with bar:
                samples, figures = collect(lanes, teacher, student, goggles, preprocess,
                                           cfg.steps_per_round, beta, cfg, layouts, mode_p,
                                           rng, bar, fake_real)
            _save_round(out / f'round_{k}.npz', samples)
            data.add(samples)
            fitted = fit(student, data, cfg, optimizer, rng)
            history.append({'round': k, 'beta': round(beta, 4), 'samples': len(data),
                            **figures, **fitted,
                            'wall_s': round(time.perf_counter() - t0, 1)})
            print(json.dumps(history[-1]), flush=True)
            _save_checkpoint(ckpt, {'round': k, 'student': student.state_dict(),
                                    'optimizer': optimizer.state_dict(),
                                    'rng': rng.bit_generator.state, 'history': history,
                                    'config': asdict(cfg)})
    finally:
        for lane in lanes:
            lane.env.close()
    for path in filter(None, (str(out / 'policy'), cfg.export)):
        export_student(student, card, path, cfg, command, history)
    return {'rounds': history, 'out': str(out)}


def parse_args(argv: list[str] | None = None) -> DistillConfig:
    """CLI flags from :class:`DistillConfig`'s fields, their docstrings as ``--help``."""
    from sim_training.config_cli import add_config_flags

    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_flags(p, DistillConfig)
    try:
        return DistillConfig(**vars(p.parse_args(argv)))
    except ValueError as e:
        p.error(str(e))
        raise  # unreachable: p.error exits


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: distill, export, return the exit status."""
    os.environ.setdefault('PYGLET_HEADLESS', '1')
    cfg = parse_args(argv)
    command = 'python -m sim_training.distill_policy ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    distill(cfg, command)
    return 0


if __name__ == '__main__':
    sys.exit(main())
