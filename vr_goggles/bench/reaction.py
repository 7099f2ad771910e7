"""How soon the domain-score stop holds the robot: camera frames turn black, ``cmd_vel`` zero.

    python -m vr_goggles.bench.reaction [--frames DIR] [--switches 5] [--rate 15]

``goggles_node`` and ``policy_node`` (shipped models, default parameters) run in this process
on one executor thread (``SingleThreadedExecutor``, as the tests run them: rclpy's experimental
``EventsExecutor`` spun at full CPU without delivering anything in-process beside a second
executor here), over real DDS on loopback in a private ``ROS_DOMAIN_ID``; a tester node with
its own executor thread publishes camera frames on ``image`` at ``--rate`` Hz:
``--good`` seconds of in-domain frames, then ``--bad`` seconds of black frames, ``--switches``
times. In-domain frames are the images in ``--frames`` (PNG/JPEG, cycled), or else drawn rooms
in the look of the shipped goggles' training frames (:func:`room_frame`; the shipped score
rates them in-domain). Per switch it measures the *stop* time, from the first black frame's
publication to the first zero Twist on ``cmd_vel``, and the *resume* time, from the first good
frame's publication after the black ones to the first command from the policy again
(``policy_sim``'s every action moves, so any non-zero command is the policy's). It also gives
the first black frame's score arrival (the goggles' share of the delay). A figure, not a
test: ``docs/ros.md`` quotes it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import random
import statistics
import sys
import threading
import time

import numpy as np

from vr_goggles.nodes.params import EXECUTOR_CHOICES

#: A camera frame the goggles have never seen: every score of it is far below the threshold.
BLACK = np.zeros((64, 64, 3), np.uint8)


def room_frame(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A stand-in in-domain camera frame: a pink tiled wall over a dark red floor.

    The real-proxy rooms the shipped goggles learned from look like this (a wall of darker
    tiles, a light skirting line at a slant, a dark floor), so the bench needs no simulator
    and no data set; ``--frames`` takes real ones instead. uint8 RGB ``(size, size, 3)``.
    """
    import cv2

    s = 64
    img = np.empty((s, s, 3), np.float32)
    horizon = int(rng.integers(38, 52))
    wall = np.array([110.0, 72.0, 66.0]) * rng.uniform(0.85, 1.15)
    img[:horizon] = wall
    tile = int(rng.integers(6, 11))
    oy, ox = (int(v) for v in rng.integers(0, tile, 2))
    for y in range(oy - tile, horizon, tile):
        for x in range(ox - tile, s, tile):
            y0, y1 = max(y + 1, 0), min(y + tile // 2 + 1, horizon)
            x0, x1 = max(x + 1, 0), min(x + tile // 2 + 1, s)
            if rng.random() < 0.5 and y1 > y0 and x1 > x0:
                img[y0:y1, x0:x1] = 0.6 * wall
    img[horizon:] = np.array([60.0, 20.0, 18.0]) * rng.uniform(0.8, 1.2)
    slope = rng.uniform(-0.3, 0.3)
    for x in range(s):
        y = int(horizon + slope * (x - s / 2))
        if 0 <= y < s - 1:
            img[y:y + 2, x] = (170.0, 120.0, 110.0)
    img += rng.normal(0.0, 6.0, img.shape)
    img = np.clip(cv2.GaussianBlur(img, (3, 3), 0.8), 0, 255).astype(np.uint8)
    if size != s:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return img


def load_frames(folder: Path | None, size: int = 64, n: int = 60,
                seed: int = 0) -> list[np.ndarray]:
    """The in-domain frames: every image in ``folder`` (sorted), else ``n`` drawn rooms."""
    if folder is None:
        rng = np.random.default_rng(seed)
        return [room_frame(rng, size) for _ in range(n)]
    import cv2

    paths = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in ('.png', '.jpg', '.jpeg'))
    frames = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            frames.append(np.ascontiguousarray(img[:, :, ::-1]))
    if not frames:
        raise ValueError(f'--frames {folder}: no readable PNG or JPEG image')
    return frames


@dataclass
class Record:
    """What the tester saw, on one clock (``time.perf_counter``)."""

    commands: list[tuple[float, float, float]] = field(default_factory=list)  # t, lin, ang
    scores: list[tuple[float, float, float]] = field(default_factory=list)  # t, score, below
    bad_starts: list[float] = field(default_factory=list)  # first black frame published
    good_starts: list[float] = field(default_factory=list)  # first good frame after black


def first_after(events: list[tuple[float, ...]], t0: float, pred) -> float | None:
    """Seconds from ``t0`` to the first event after it that ``pred`` accepts (None: never)."""
    for ev in events:
        if ev[0] > t0 and pred(ev):
            return ev[0] - t0
    return None


def last_before(events: list[tuple[float, ...]], t0: float):
    """The last event at or before ``t0`` (None if none)."""
    prior = [ev for ev in events if ev[0] <= t0]
    return prior[-1] if prior else None


def analyse(rec: Record) -> list[dict[str, float | None]]:
    """Per switch: stop and resume seconds, the black frame's score delay, validity."""
    def moving(ev):
        return ev[1] != 0.0 or ev[2] != 0.0

    def still(ev):
        return not moving(ev)

    rows = []
    for i, tb in enumerate(rec.bad_starts):
        before = last_before(rec.commands, tb)
        row: dict[str, float | None] = {
            'was_driving': bool(before is not None and moving(before)),
            'stop_s': first_after(rec.commands, tb, still),
            'first_low_score_s': first_after(rec.scores, tb, lambda ev: ev[2] > 0.5),
            'resume_s': None}
        if i < len(rec.good_starts):
            tg = rec.good_starts[i]
            held = last_before(rec.commands, tg)
            row['was_held'] = bool(held is not None and still(held))
            row['resume_s'] = first_after(rec.commands, tg, moving)
        rows.append(row)
    return rows


def run(frames: list[np.ndarray], *, switches: int, rate: float, good_s: float, bad_s: float,
        warmup_s: float, goggles: str, policy: str, stop_frames: int,
        resume_frames: int, executor: str = 'single_threaded') -> tuple[Record, dict[str, str]]:
    """Start both nodes, play the frames, return what the tester saw and the nodes' setup."""
    domain = random.randint(100, 200)
    os.environ.update({'ROS_DOMAIN_ID': str(domain),
                       'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'})
    from geometry_msgs.msg import Twist, Vector3Stamped
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from vr_goggles.image.codec import numpy_to_image
    from vr_goggles.nodes.goggles_node import GogglesNode
    from vr_goggles.nodes.policy_node import PolicyNode
    from vr_goggles.nodes.ros_common import autostart, make_executor, qos_profile

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    ns = f'/reaction{os.getpid()}'
    rec = Record()
    nodes, executors, threads = [], [], []
    try:
        gog = GogglesNode(namespace=ns, context=context, parameter_overrides=[
            Parameter('model', value=goggles), Parameter('autostart', value=False)])
        pol = PolicyNode(namespace=ns, context=context, parameter_overrides=[
            Parameter('model', value=policy), Parameter('autostart', value=False),
            Parameter('domain_stop_frames', value=stop_frames),
            Parameter('domain_resume_frames', value=resume_frames)])
        nodes += [gog, pol]
        for node in nodes:
            if not autostart(node):
                raise RuntimeError(f'{node.get_name()} did not start (see its log)')
        setup = {'goggles': f'{goggles} on {gog.goggles.engine.name}',
                 'domain_score': f'{gog.params["domain_score"]} on {gog.domain_score.engine}',
                 'policy': f'{policy} on {pol.policy.engine}', 'policy_rate_hz':
                 str(pol.params['rate'])}
        tester = rclpy.create_node('reaction_tester', namespace=ns, context=context)
        nodes.append(tester)
        tester.create_subscription(
            Twist, 'cmd_vel', lambda m: rec.commands.append(
                (time.perf_counter(), m.linear.x, m.angular.z)), qos_profile('reliable'))
        tester.create_subscription(
            Vector3Stamped, 'image_sim/domain_score', lambda m: rec.scores.append(
                (time.perf_counter(), m.vector.x, m.vector.z)), qos_profile('sensor_data'))
        pub = tester.create_publisher(Image, 'image', qos_profile('sensor_data'))
        # The two nodes share one executor, as in one process; the tester has its own so that
        # its arrival times do not wait for the nodes' callbacks.
        for group, ex in (([gog, pol], make_executor(executor, context)),
                          ([tester], SingleThreadedExecutor(context=context))):
            for node in group:
                ex.add_node(node)
            executors.append(ex)
            threads.append(threading.Thread(target=ex.spin, daemon=True))
            threads[-1].start()
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() < 1 or not tester.count_publishers(
                f'{ns}/cmd_vel'):
            if time.monotonic() > deadline:
                raise RuntimeError('goggles_node / policy_node not discovered in 30 s')
            time.sleep(0.05)
        period, k = 1.0 / rate, 0
        t_next = time.perf_counter()
        phases = [('good', warmup_s)] + [('bad', bad_s), ('good', good_s)] * switches
        for p, (kind, seconds) in enumerate(phases):
            for i in range(max(1, round(seconds * rate))):
                time.sleep(max(0.0, t_next - time.perf_counter()))
                t_next += period
                img = frames[k % len(frames)] if kind == 'good' else BLACK
                k += kind == 'good'
                header = Header(frame_id='camera')
                header.stamp = tester.get_clock().now().to_msg()
                msg = numpy_to_image(img, 'rgb8', header=header, msg_cls=Image)
                t = time.perf_counter()
                pub.publish(msg)
                if i == 0 and p > 0:
                    (rec.bad_starts if kind == 'bad' else rec.good_starts).append(t)
        time.sleep(0.5)
        return rec, setup
    finally:
        for ex in executors:
            ex.shutdown(timeout_sec=2)
        for th in threads:
            th.join(timeout=5)
        for node in nodes:
            if hasattr(node, 'close'):
                node.close()
            node.destroy_node()
        context.try_shutdown()


def _stats(values: list[float | None]) -> dict[str, float | int | None]:
    got = [v for v in values if v is not None]
    if not got:
        return {'n': 0, 'median_s': None, 'min_s': None, 'max_s': None}
    return {'n': len(got), 'median_s': round(statistics.median(got), 3),
            'min_s': round(min(got), 3), 'max_s': round(max(got), 3)}


def main(argv: list[str] | None = None) -> int:
    """Play the switches, print per-switch times and their medians (and ``--json``)."""
    ap = argparse.ArgumentParser(prog='python -m vr_goggles.bench.reaction',
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--frames', type=Path, help='folder of in-domain camera frames (PNG/JPEG; '
                    'default: drawn rooms in the shipped goggles\' training look)')
    ap.add_argument('--size', type=int, default=64, help='size of the drawn rooms (square)')
    ap.add_argument('--switches', type=int, default=5, help='good -> black -> good cycles')
    ap.add_argument('--rate', type=float, default=15.0, help='camera rate (Hz)')
    ap.add_argument('--good', type=float, default=3.0, help='seconds of good frames')
    ap.add_argument('--bad', type=float, default=1.5, help='seconds of black frames')
    ap.add_argument('--warmup', type=float, default=3.0,
                    help='seconds of good frames before the first switch')
    ap.add_argument('--goggles', default='goggles_vr_goggles', help="goggles_node's model")
    ap.add_argument('--policy', default='policy_sim', help="policy_node's model")
    ap.add_argument('--stop-frames', type=int, default=5, help='domain_stop_frames')
    ap.add_argument('--resume-frames', type=int, default=8, help='domain_resume_frames')
    ap.add_argument('--executor', default='single_threaded', choices=EXECUTOR_CHOICES,
                    help="the nodes' executor (see above)")
    ap.add_argument('--json', type=Path, help='also write the results here')
    args = ap.parse_args(argv)
    if args.switches < 1 or args.rate <= 0:
        ap.error('--switches must be >= 1 and --rate > 0')
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ.setdefault(var, '1')
    frames = load_frames(args.frames, args.size)
    rec, setup = run(frames, switches=args.switches, rate=args.rate, good_s=args.good,
                     bad_s=args.bad, warmup_s=args.warmup, goggles=args.goggles,
                     policy=args.policy, stop_frames=args.stop_frames,
                     resume_frames=args.resume_frames, executor=args.executor)
    rows = analyse(rec)
    valid = [r for r in rows if r['was_driving']]
    resumed = [r for r in rows if r.get('was_held')]
    out = {'setup': {**setup, 'executor': args.executor, 'camera_rate_hz': args.rate,
                     'stop_frames': args.stop_frames, 'resume_frames': args.resume_frames,
                     'frames': str(args.frames or f'drawn rooms {args.size}x{args.size}')},
           'switches': rows, 'stop': _stats([r['stop_s'] for r in valid]),
           'resume': _stats([r['resume_s'] for r in resumed]),
           'first_low_score': _stats([r['first_low_score_s'] for r in valid])}
    print(', '.join(f'{k} {v}' for k, v in out['setup'].items()))
    print(f'{"switch":>6} {"driving":>8} {"low score s":>12} {"stop s":>8} {"resume s":>9}')
    for i, r in enumerate(rows):
        def fmt(v):
            return '-' if v is None else f'{v:.3f}'
        print(f'{i:>6} {str(r["was_driving"]):>8} {fmt(r["first_low_score_s"]):>12} '
              f'{fmt(r["stop_s"]):>8} {fmt(r["resume_s"]):>9}')
    for name in ('stop', 'resume', 'first_low_score'):
        s = out[name]
        if s['n']:
            print(f'{name}: median {s["median_s"]:.3f} s (range {s["min_s"]:.3f}-'
                  f'{s["max_s"]:.3f}, {s["n"]} switches)')
        else:
            print(f'{name}: not observed')
    print(f'(the camera alone: black frame {args.stop_frames}, the one that stops, leaves '
          f'{(args.stop_frames - 1) / args.rate:.3f} s after the first at {args.rate:g} Hz)')
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + '\n')
    return 0 if valid and out['stop']['n'] == len(valid) else 1


if __name__ == '__main__':
    sys.exit(main())
