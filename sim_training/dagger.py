"""DAgger from the privileged Oracle: a supervised warm start for the PPO policy.

PPO learns the chair-navigation policy from reward alone and, on the 2-core budget, stays at
~91 % in sim (docs/policy_*.json): it rarely finds its way round an obstacle that hides the
chair. The Oracle (:mod:`sim_training.envs.oracle`) plans with true positions and always gets
there. DAgger (Ross et al., AISTATS 2011) turns it into a teacher: roll out a mix of expert and
learner (iteration ``k`` takes the expert's action with probability ``beta_decay ** k``), label
every visited state with the expert's action, aggregate, and fit the learner to all labels so
far. The learner is the very SB3 ``ActorCriticPolicy`` that PPO then fine-tunes
(``train_policy --dagger-steps``): its action head is fitted with cross-entropy, its value head
with the discounted training returns of the episodes collected, so PPO starts from a policy
that already drives and a critic that roughly knows it. The images are the learner's own
observations (sim look, frame stack): the expert's privileged knowledge enters only through
the labels. Measured
(docs/results/policy_dagger.json): 160k labels in 17 min fit 72% of the expert's
actions (a hidden chair makes its turns unpredictable from the images), and PPO from there did
not beat PPO alone on the detour layouts, so the shipped recipe does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import time
from typing import Any

import numpy as np
import torch

#: ``(x + 1) * 127.5`` maps a ``vr_goggles.image.preprocess.normalize`` frame back to its uint8
# values
#: exactly, so the aggregated dataset is kept as uint8 (a quarter of the memory of float32).
_SCALE = 127.5


@dataclass
class DaggerConfig:
    """Sizes of the DAgger stage (``train_policy``'s ``dagger_*`` fields)."""

    steps: int = 120_000
    """expert-labelled environment steps in total, over all iterations"""
    iterations: int = 4
    """collect-then-fit rounds (the first is driven by the expert alone)"""
    beta_decay: float = 0.5
    """round k takes the expert's action with probability beta_decay ** k, else the learner's"""
    epochs: int = 2
    """passes over the aggregated dataset after each round"""
    batch_size: int = 256
    """minibatch size of the fit"""
    learning_rate: float = 1e-3
    """Adam learning rate of the fit"""
    value_coef: float = 0.5
    """weight of the value head's squared error to the discounted returns"""
    gamma: float = 0.99
    """discount of those returns (PPO's)"""
    max_grad_norm: float = 0.5
    """gradient clipping of the fit"""
    seed: int = 0
    """seed of the expert/learner mixing and the minibatch order"""


def discounted_returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> tuple[
        np.ndarray, np.ndarray]:
    """Per-step discounted returns of one env's reward stream, and which of them are complete.

    ``dones[t]`` ends the episode at step ``t``. Steps of the trailing, unfinished episode have
    no return yet (``valid`` False), since their future is unknown.
    """
    rewards = np.asarray(rewards, np.float64)
    dones = np.asarray(dones, bool)
    out = np.zeros(len(rewards), np.float64)
    valid = np.zeros(len(rewards), bool)
    running, finished = 0.0, False
    for t in range(len(rewards) - 1, -1, -1):
        if dones[t]:
            running, finished = 0.0, True
        running = rewards[t] + gamma * running
        out[t], valid[t] = running, finished
    return out.astype(np.float32), valid


def to_uint8(obs: np.ndarray) -> np.ndarray:
    """Normalised float observations back to their uint8 values (exact for normalize's output)."""
    return np.rint((np.asarray(obs, np.float32) + 1.0) * _SCALE).astype(np.uint8)


def frames_from_uint8(obs: np.ndarray) -> torch.Tensor:
    """The inverse of :func:`to_uint8`: uint8 values -> normalised float tensor (= normalize)."""
    return torch.from_numpy(obs).float().mul_(1.0 / _SCALE).sub_(1.0)


class Dataset:
    """Aggregated expert labels: uint8 observations, expert actions, returns (NaN = none)."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...]):
        self.obs = np.empty((capacity, *obs_shape), np.uint8)
        self.actions = np.empty(capacity, np.int64)
        self.returns = np.empty(capacity, np.float32)
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> None:
        """Append observations ``(n, C, H, W)`` (:func:`to_uint8`) with their labels."""
        n = len(obs)
        if self.size + n > len(self.obs):
            raise ValueError(f'dataset full: {self.size} + {n} > {len(self.obs)}')
        if obs.dtype != np.uint8:
            raise ValueError(f'obs: expected uint8 (to_uint8), got {obs.dtype}')
        sl = slice(self.size, self.size + n)
        self.obs[sl] = obs
        self.actions[sl] = actions
        self.returns[sl] = returns
        self.size += n

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Observations (float, normalised), actions and returns at ``idx``."""
        obs = frames_from_uint8(self.obs[idx])
        return obs, torch.from_numpy(self.actions[idx]), torch.from_numpy(self.returns[idx])


def heads(policy: Any, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Action logits ``(N, n_actions)`` and values ``(N,)`` of an SB3 ``ActorCriticPolicy``.

    The same path as its ``evaluate_actions`` (shared features extractor, ``mlp_extractor``,
    ``action_net``/``value_net``), with the logits kept for the cross-entropy and the accuracy.
    """
    latent_pi, latent_vf = policy.mlp_extractor(policy.extract_features(obs))
    return policy.action_net(latent_pi), policy.value_net(latent_vf).flatten()


def collect(venv: Any, policy: Any, oracles: list[Any], n_steps: int, beta: float,
            rng: np.random.Generator, gamma: float, obs: np.ndarray, progress: Any = None
            ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Roll out the expert/learner mix for ``n_steps`` env steps in total; label every state.

    ``obs`` is the vec env's current observation. Returns the labelled samples (observations as
    :func:`to_uint8`), the vec env's observation afterwards and figures of the episodes that
    ended. The learner acts by argmax, as the exported policy does.
    """
    n_envs = venv.num_envs
    per_env = math.ceil(n_steps / n_envs)
    shape = obs.shape[1:]
    obs_buf = np.empty((per_env, n_envs, *shape), np.uint8)
    expert_buf = np.empty((per_env, n_envs), np.int64)
    rew_buf = np.empty((per_env, n_envs), np.float32)
    done_buf = np.empty((per_env, n_envs), bool)
    successes, ended, agree = 0, 0, 0
    for t in range(per_env):
        expert = np.array([o.act() for o in oracles], np.int64)
        with torch.no_grad():
            learner = heads(policy, torch.as_tensor(obs))[0].argmax(dim=1).numpy()
        agree += int((learner == expert).sum())
        use_expert = rng.random(n_envs) < beta
        actions = np.where(use_expert, expert, learner)
        obs_buf[t], expert_buf[t] = to_uint8(obs), expert
        obs, rewards, dones, infos = venv.step(actions)
        rew_buf[t], done_buf[t] = rewards, dones
        for i in np.flatnonzero(dones):
            ended += 1
            successes += bool(infos[i].get('success', False))
        if progress is not None:
            progress.update(n_envs)
    returns = np.empty((per_env, n_envs), np.float32)
    valid = np.empty((per_env, n_envs), bool)
    for i in range(n_envs):
        returns[:, i], valid[:, i] = discounted_returns(rew_buf[:, i], done_buf[:, i], gamma)
    returns[~valid] = np.nan
    samples = {'obs': obs_buf.reshape(-1, *shape), 'actions': expert_buf.reshape(-1),
               'returns': returns.reshape(-1)}
    figures = {'episodes': ended, 'success_rate': successes / max(ended, 1),
               'learner_agrees': agree / (per_env * n_envs)}
    return samples, obs, figures


def fit(policy: Any, data: Dataset, cfg: DaggerConfig, optimizer: torch.optim.Optimizer,
        rng: np.random.Generator) -> dict[str, float]:
    """``cfg.epochs`` passes of cross-entropy to the expert (+ value regression) over ``data``."""
    policy.set_training_mode(True)
    ce_sum = acc_sum = v_sum = 0.0
    seen = 0
    for _ in range(cfg.epochs):
        order = rng.permutation(data.size)
        for start in range(0, data.size, cfg.batch_size):
            idx = np.sort(order[start:start + cfg.batch_size])
            obs, actions, returns = data.batch(idx)
            logits, values = heads(policy, obs)
            ce = torch.nn.functional.cross_entropy(logits, actions)
            has = ~torch.isnan(returns)
            v_loss = (torch.nn.functional.mse_loss(values[has], returns[has])
                      if bool(has.any()) else values.sum() * 0.0)
            loss = ce + cfg.value_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            n = len(idx)
            ce_sum += float(ce.detach()) * n
            v_sum += float(v_loss.detach()) * n
            acc_sum += float((logits.argmax(dim=1) == actions).float().sum())
            seen += n
    policy.set_training_mode(False)
    return {'cross_entropy': ce_sum / seen, 'value_mse': v_sum / seen,
            'accuracy': acc_sum / seen}


def pretrain(model: Any, venv: Any, cfg: DaggerConfig, progress: bool = True) -> dict[str, Any]:
    """Run DAgger on ``model.policy`` in ``venv`` (a ``DummyVecEnv`` of ChairNav envs).

    Returns per-round figures and the stage's wall time; ``model.policy`` holds the result.
    """
    from tqdm import tqdm

    from sim_training.envs.oracle import Oracle

    envs = getattr(venv, 'envs', None)
    if envs is None:
        raise ValueError('DAgger needs the envs in this process (--vec-env dummy): the expert '
                         'reads true positions from them')
    if cfg.iterations < 1 or cfg.steps < cfg.iterations * venv.num_envs:
        raise ValueError(f'dagger: {cfg.steps} steps cannot fill {cfg.iterations} rounds of '
                         f'{venv.num_envs} envs')
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    oracles = [Oracle(env) for env in envs]
    per_round = math.ceil(cfg.steps / cfg.iterations / venv.num_envs) * venv.num_envs
    obs = venv.reset()
    data = Dataset(per_round * cfg.iterations, obs.shape[1:])
    policy = model.policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    rounds = []
    bar = tqdm(total=per_round * cfg.iterations, unit='step', unit_scale=True,
               desc='dagger', disable=not progress, dynamic_ncols=True)
    try:
        for k in range(cfg.iterations):
            beta = cfg.beta_decay ** k
            samples, obs, figures = collect(venv, policy, oracles, per_round, beta, rng,
                                            cfg.gamma, obs, bar)
            data.add(samples['obs'], samples['actions'], samples['returns'])
            fitted = fit(policy, data, cfg, optimizer, rng)
            rounds.append({'round': k, 'beta': beta, 'dataset': data.size, **figures,
                           **fitted, 'wall_s': round(time.perf_counter() - t0, 1)})
            bar.write(f'dagger round {k}: beta {beta:.3f}, {data.size} labels, episodes '
                      f'{figures["episodes"]} success {figures["success_rate"]:.3f}, learner '
                      f'agrees {figures["learner_agrees"]:.3f}, CE {fitted["cross_entropy"]:.3f}'
                      f', value MSE {fitted["value_mse"]:.3f}')
    finally:
        bar.close()
    return {'rounds': rounds, 'steps': data.size,
            'wall_s': round(time.perf_counter() - t0, 1)}
