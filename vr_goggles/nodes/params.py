"""Parameter definitions and pure helpers of the ROS nodes (no rclpy import).

Each node declares its parameters from these specs (with ``ParameterDescriptor`` ranges and
read-only flags), ``config/*.yaml`` and the docs are checked against them by ROS-free tests,
and the value checks run both at declaration and in the set-parameters callback.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

from vr_goggles.goggles.domain_score import DEFAULT_DOMAIN_SCORE
from vr_goggles.goggles.facade import parse_output_size
from vr_goggles.policy.actions import CONTROL_PERIOD
from vr_goggles.policy.policy import POLICY_ENGINES

QOS_CHOICES = ('sensor_data', 'reliable', 'default')
ENGINE_CHOICES = ('auto', 'tensorrt', 'torch', 'onnxruntime')
PRECISION_CHOICES = ('fp32', 'fp16', 'bf16')
DOMAIN_CHOICES = ('real', 'sim', 'randomized')
SPLIT_CHOICES = ('train', 'eval')
EXECUTOR_CHOICES = ('auto', 'events', 'single_threaded')
DOMAIN_SCORE_ENGINE_CHOICES = ('auto', 'torch', 'onnxruntime')
#: The score topic's name beside ``image_sim`` (``<image_sim>/domain_score``).
DOMAIN_SCORE_TOPIC = 'domain_score'


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: default (which also fixes its type), docs and constraints."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    #: Inclusive (min, max) for int/float parameters, mapped to Integer/FloatingPointRange.
    range: tuple[float, float] | None = None
    #: Allowed values for string parameters.
    choices: tuple[str, ...] | None = None
    #: Free-text constraint shown by ``ros2 param describe``.
    constraints: str = ''

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is invalid for this parameter, or None if it is fine."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return (f'{self.name}: expected {kind.__name__}, got {type(value).__name__} '
                    f'{value!r}')
        if self.range is not None:
            lo, hi = self.range
            if isinstance(value, float) and not math.isfinite(value):
                return f'{self.name}: expected a finite number, got {value}'
            if not lo <= value <= hi:
                return f'{self.name}: {value} outside [{lo}, {hi}]'
        if self.choices is not None and value not in self.choices:
            return f'{self.name}: {value!r} not one of {", ".join(self.choices)}'
        if self.name == 'output_size':
            try:
                parse_output_size(value)
            except ValueError as exc:
                return str(exc)
        return None


def specs_by_name(specs: tuple[ParamSpec, ...]) -> dict[str, ParamSpec]:
    """Index a node's specs by parameter name."""
    return {s.name: s for s in specs}


def validate(specs: tuple[ParamSpec, ...], values: dict[str, Any]) -> list[str]:
    """Errors for ``values`` (unknown names included), empty when all are valid."""
    known = specs_by_name(specs)
    errors = []
    for name, value in values.items():
        spec = known.get(name)
        if spec is None:
            errors.append(f'{name}: unknown parameter (known: {", ".join(sorted(known))})')
        elif (err := spec.check(value)) is not None:
            errors.append(err)
    return errors


_QOS = f'QoS profile: {" | ".join(QOS_CHOICES)}'
_EXECUTOR = ParamSpec('executor', 'auto', "Callback executor: 'events' (rclpy's "
                      'EventsExecutor, Jazzy and later: less latency per message), '
                      "'single_threaded', or 'auto' (events where rclpy has it).",
                      read_only=True, choices=EXECUTOR_CHOICES)

GOGGLES_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('model', 'goggles_vr_goggles',
              'Generator weights: a shipped name (goggles_vr_goggles, goggles_cycada, '
              'goggles_cyclegan) or a path to NAME.safetensors with its NAME.json card.',
              read_only=True),
    ParamSpec('engine', 'auto', 'Inference engine; auto picks the fastest one available '
              'for the device (see docs/engines.md).', read_only=True,
              choices=ENGINE_CHOICES),
    ParamSpec('engine_file_path', '', 'Where the compiled engine is cached (empty: next to '
              'the weights / the default cache).', read_only=True),
    ParamSpec('force_engine_update', False, 'Rebuild the cached engine even if it matches '
              'the weights.', read_only=True),
    ParamSpec('precision', 'fp32', 'Inference precision (support depends on engine and '
              'device).', read_only=True, choices=PRECISION_CHOICES),
    ParamSpec('device', 'cpu', "Torch-style device: 'cpu', 'cuda', 'cuda:N', or 'auto' "
              '(CUDA when present).', read_only=True),
    ParamSpec('input_qos', 'sensor_data', f'Input {_QOS}.', read_only=True,
              choices=QOS_CHOICES),
    ParamSpec('output_qos', 'sensor_data', f'Output {_QOS}.', read_only=True,
              choices=QOS_CHOICES),
    ParamSpec('compressed_input', False, 'Subscribe to sensor_msgs/CompressedImage on '
              '<image>/compressed (image_transport naming) instead of Image on image.',
              read_only=True),
    ParamSpec('max_age', 0.0, 'Skip frames whose header stamp is older than this many '
              'seconds by the node clock (honours use_sim_time); 0 disables.',
              range=(0.0, 3600.0)),
    ParamSpec('output_size', 'model', "Size of image_sim: 'model' (the generator's input "
              "size), 'input' (resized back to the camera size) or 'WxH', e.g. '128x96'.",
              constraints="'model' | 'input' | 'WxH'"),
    ParamSpec('diagnostics_period', 1.0, 'Seconds between /diagnostics updates (and the '
              'summary log line when diagnostic_msgs is missing).', range=(0.1, 3600.0)),
    ParamSpec('autostart', True, 'Configure and activate at start-up so plain ros2 run '
              'works; false leaves the node unconfigured for a lifecycle manager.',
              read_only=True),
    ParamSpec('floor_prior', False, 'Repaint the floor of image_sim with the sim floor seen '
              'from the odometry pose (nav_msgs/Odometry on odom; '
              'vr_goggles.goggles.floor_prior).',
              read_only=True),
    ParamSpec('floor_segmenter', 'segmenter_dr', 'Segmenter that finds the floor in the '
              'camera frame for floor_prior: a shipped name or a weights path.',
              read_only=True),
    ParamSpec('floor_paint', '', 'floor_prior: comma-separated classes also painted in their '
              "flat sim colour where floor_segmenter finds them ('chair,wall,ceiling,object' "
              "with segmenter_real: the semantic goggles, distractors hidden in the wall "
              "colour; '' none).",
              read_only=True),
    ParamSpec('camera_height', 0.9, 'floor_prior: optical centre above the floor, metres.',
              read_only=True, range=(0.01, 10.0)),
    ParamSpec('camera_pitch', -8.0, 'floor_prior: camera pitch in degrees (negative looks '
              'down).', read_only=True, range=(-89.0, 89.0)),
    ParamSpec('camera_fov_y', 60.0, 'floor_prior: vertical field of view in degrees.',
              read_only=True, range=(1.0, 179.0)),
    ParamSpec('domain_score', DEFAULT_DOMAIN_SCORE, 'Per-frame domain score of the camera '
              'frame against the goggles\' training look, published on '
              '<image_sim>/domain_score (geometry_msgs/Vector3Stamped: x score, y threshold, '
              "z 1.0 when below) for policy_node's stop: a shipped name or a weights path; "
              "'' turns it off.", read_only=True),
    ParamSpec('domain_score_engine', 'auto', 'What runs the domain score: onnxruntime (its '
              'ONNX export beside the weights; about 0.5 ms on a CPU), torch, or auto '
              '(onnxruntime when the export exists or torch is missing).', read_only=True,
              choices=DOMAIN_SCORE_ENGINE_CHOICES),
    ParamSpec('domain_error_frames', 5, '/diagnostics ERROR after this many consecutive '
              'frames below the domain score threshold (WARN for fewer).', range=(1, 100)),
    _EXECUTOR,
)

POLICY_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('model', 'policy_sim', 'Policy weights: a shipped name (policy_sim, '
              'policy_randomized) or a path to NAME.safetensors.', read_only=True),
    ParamSpec('engine', 'auto', 'What runs the actor: onnxruntime (its ONNX export beside '
              'the weights or cached; no torch needed), torch, or auto (onnxruntime when an '
              'export exists or torch is missing, else torch; see docs/engines.md).',
              read_only=True, choices=POLICY_ENGINES),
    ParamSpec('rate', 10.0, 'cmd_vel publishing rate in Hz.', read_only=True,
              range=(0.1, 1000.0)),
    ParamSpec('max_linear', 0.5, 'Clamp |linear.x| to this (m/s).', range=(0.0, 10.0)),
    ParamSpec('max_angular', 1.0, 'Clamp |angular.z| to this (rad/s).', range=(0.0, 20.0)),
    ParamSpec('stale_timeout', 0.5, 'Publish zero velocity when no image_sim arrived for '
              'this many seconds (node clock).', range=(0.01, 60.0)),
    ParamSpec('stamped', False, 'Publish geometry_msgs/TwistStamped (Jazzy-style '
              'controllers) instead of Twist.', read_only=True),
    ParamSpec('frame_id', 'base_link', 'header.frame_id of TwistStamped commands.',
              read_only=True),
    ParamSpec('input_qos', 'sensor_data', f'image_sim {_QOS}.', read_only=True,
              choices=QOS_CHOICES),
    ParamSpec('output_qos', 'reliable', f'cmd_vel {_QOS}.', read_only=True,
              choices=QOS_CHOICES),
    ParamSpec('autostart', True, 'Configure and activate at start-up.', read_only=True),
    ParamSpec('stop_on_domain_score', True, 'Hold the robot still (zero velocity) while '
              '<image_sim>/domain_score says the goggles do not know what the camera sees; '
              'false ignores the score (for users who gate elsewhere).'),
    ParamSpec('domain_stop_frames', 5, 'Stop after this many consecutive domain scores below '
              'the threshold.', range=(1, 100)),
    ParamSpec('domain_resume_frames', 8, 'Drive again after this many consecutive domain '
              'scores at or above the threshold.', range=(1, 1000)),
    ParamSpec('domain_threshold_shift', 0.0, 'Added to the threshold carried by each score '
              'message (negative: more permissive, stops later).', range=(-20.0, 20.0)),
    _EXECUTOR,
)

SIM_BRIDGE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('domain', 'real', "Rendering domain: 'real' (the stand-in for the real "
              "robot's camera), 'sim' or 'randomized'.", read_only=True,
              choices=DOMAIN_CHOICES),
    ParamSpec('split', 'eval', 'Layout split: eval (held-out layouts) or train.',
              read_only=True, choices=SPLIT_CHOICES),
    ParamSpec('seed', 0, 'First layout seed offset within the split; episode k uses the '
              "split's seed range start + seed + k.", read_only=True, range=(0, 1_000_000)),
    ParamSpec('obs_size', 64, 'Rendered camera size (pixels, square).', read_only=True,
              range=(16, 1024)),
    ParamSpec('rate', 10.0, 'Camera publishing rate in Hz (a frame is also published right '
              'after every step).', read_only=True, range=(0.1, 1000.0)),
    ParamSpec('step_period', CONTROL_PERIOD, 'Seconds of node clock per simulator step; '
              f'{CONTROL_PERIOD} matches the velocity map, smaller runs faster than real '
              'time.', read_only=True, range=(0.001, 60.0)),
    ParamSpec('max_episode_steps', 0, 'Simulator step limit per episode (0: the '
              "environment's default).", read_only=True, range=(0, 100_000)),
    ParamSpec('max_periods', 0, 'End an episode as a timeout after this many control '
              'periods even without steps, e.g. when cmd_vel is zero (0: 4x the step '
              'limit).', read_only=True, range=(0, 1_000_000)),
    ParamSpec('episodes', 0, 'Run this many episodes, then exit (0: run forever).',
              read_only=True, range=(0, 1_000_000)),
    ParamSpec('cmd_timeout', 1.0, 'Ignore cmd_vel older than this many seconds.',
              range=(0.01, 60.0)),
    ParamSpec('stamped', False, 'Subscribe to TwistStamped instead of Twist.',
              read_only=True),
    ParamSpec('frame_id', 'camera', 'header.frame_id of the camera images.', read_only=True),
    _EXECUTOR,
)


def clamp_velocity(linear: float, angular: float, max_linear: float,
                   max_angular: float) -> tuple[float, float]:
    """Clamp both components symmetrically; non-finite commands become 0 (fail safe)."""
    def clamp(x: float, limit: float) -> float:
        if not math.isfinite(x):
            return 0.0
        return max(-limit, min(limit, x))
    return clamp(float(linear), max_linear), clamp(float(angular), max_angular)


def stamp_ns(msg: Any) -> int:
    """A message's ``header.stamp`` in integer nanoseconds (0 for an unstamped message)."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def frame_age(now_ns: int, stamp_ns: int) -> float:
    """Seconds between a header stamp and now (negative for stamps in the future)."""
    return (now_ns - stamp_ns) * 1e-9


def too_old(now_ns: int, stamp_ns: int, max_age: float) -> bool:
    """Whether a frame stamped ``stamp_ns`` is older than ``max_age`` s (0 disables)."""
    return max_age > 0 and frame_age(now_ns, stamp_ns) > max_age


def beside(node: Any, base: str, leaf: str) -> str:
    """``<base>/<leaf>`` where ``base`` is resolved and remapped as ``node`` would resolve it.

    A sub-topic (``image/compressed``, ``image_sim/domain_score``) then follows a remapped
    ``base``, as image_transport's do. rclpy before Iron has no ``resolve_topic_name``: there
    the relative name is returned and the namespace applies as usual.
    """
    resolve = getattr(node, 'resolve_topic_name', None)
    root = resolve(base) if resolve is not None else base
    return f'{root.rstrip("/")}/{leaf}'
