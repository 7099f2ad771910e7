"""End-to-end latency of ``goggles_node`` over DDS beside the bare engine, in the same run.

    python -m vr_goggles.bench.node [--model NAME|PATH] [--engine auto] [--size 128]

``goggles_node`` runs as its own process (as deployed). For every ``--size`` x ``--size``
frame this process first times the bare engine, ``Goggles(image)`` (what ``vr-goggles bench``
measures), then publishes the frame as rgb8 and times it until its translation arrives
(matched by stamp); one frame at a time, at most ``--rate`` Hz, so nothing is dropped and
both measurements see the same machine load.

The overhead (per-frame difference) is two DDS hops on loopback, message (de)serialisation,
the rgb8 decode/encode and the hand-off to the inference thread; a relay process that just
republishes each frame (same sizes in, same process layout) measures the DDS part alone,
interleaved in the same way. Needs
rclpy (a ROS 2 install or the PyPI wheels). Without ``--model`` it uses the shipped default
generator, or a randomly initialised one of the same architecture when that is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from vr_goggles.nodes.params import EXECUTOR_CHOICES
from vr_goggles.nodes.rate_stats import percentile


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [1e3 * s for s in seconds]
    return {'n': len(ms), 'p50_ms': round(percentile(ms, 50), 3),
            'p90_ms': round(percentile(ms, 90), 3), 'p99_ms': round(percentile(ms, 99), 3),
            'mean_ms': round(sum(ms) / max(len(ms), 1), 3)}


def _model_path(model: str | None, model_size: int, tmp: Path) -> str:
    """The weights to benchmark: ``model``, the shipped default, or a random-init stand-in."""
    from vr_goggles import weights

    if model:
        return model
    try:
        weights.resolve('goggles_vr_goggles')
        if model_size == 64:
            return 'goggles_vr_goggles'
    except Exception:  # noqa: BLE001 (not shipped in this install)
        pass
    import torch

    from vr_goggles import models

    torch.manual_seed(0)
    gen = models.build('ResnetGenerator')  # the default (shipped) architecture
    path = tmp / 'random_generator'
    weights.save(path, gen.state_dict(), weights.ModelCard(
        name='random_generator', architecture='ResnetGenerator', kwargs={},
        input_size=[model_size, model_size], task='benchmark stand-in (random weights)'))
    return str(path)


def relay(namespace: str) -> None:
    """Republish ``image`` unchanged on ``image_sim``: the DDS-only baseline (``--relay``)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('relay', namespace=namespace)
    pub = node.create_publisher(Image, 'image_sim', qos_profile_sensor_data)
    node.create_subscription(Image, 'image', pub.publish, qos_profile_sensor_data)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, Exception):  # noqa: BLE001 (SIGTERM/shutdown end the relay)
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


class _RoundTrip:
    """Publish to ``<ns>/image`` and wait for the message with the same stamp on image_sim."""

    def __init__(self, node, ns: str):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.node, self.ns = node, ns
        self.arrived = threading.Event()
        self.stamp: tuple[int, int] | None = None
        self.t_arrival = 0.0
        node.create_subscription(Image, f'{ns}/image_sim', self._on_out, qos_profile_sensor_data)
        self.pub = node.create_publisher(Image, f'{ns}/image', qos_profile_sensor_data)

    def _on_out(self, msg) -> None:
        if (msg.header.stamp.sec, msg.header.stamp.nanosec) == self.stamp:
            self.t_arrival = time.perf_counter()
            self.arrived.set()

    def ready(self) -> bool:
        """Whether discovery matched both directions."""
        return (self.pub.get_subscription_count() >= 1
                and self.node.count_publishers(f'{self.ns}/image_sim') >= 1)

    def __call__(self, msg, timeout: float = 1.0) -> float | None:
        """Seconds from publish to arrival of the answer, None if lost."""
        self.arrived.clear()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        t0 = time.perf_counter()
        self.pub.publish(msg)
        if not self.arrived.wait(timeout):
            return None
        return self.t_arrival - t0


def bench(model: str, engine: str, device: str, frames: list[np.ndarray], rate: float,
          warmup: int, threads: int, node_executor: str = 'auto') -> dict:
    """Per frame: the bare engine here, the node round trip, and a DDS-only relay round trip.

    The three are interleaved frame by frame (never concurrent), so they see the same machine
    load and the per-frame differences give a fair overhead even on a busy machine.
    """
    from vr_goggles.goggles import Goggles

    goggles = Goggles.from_model(model=model, engine=engine, device=device)
    engine = goggles.engine.name
    domain = random.randint(100, 200)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(domain),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'OMP_NUM_THREADS': str(threads)}
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from vr_goggles.image.codec import numpy_to_image

    ns = f'/bench{os.getpid()}'
    procs = [
        subprocess.Popen([sys.executable, '-m', 'vr_goggles.nodes.goggles_node', '--ros-args',
                          '-r', f'__ns:={ns}/node', '-p', f'model:={model}',
                          '-p', f'engine:={engine}', '-p', f'device:={device}',
                          '-p', 'diagnostics_period:=0.5', '-p', f'executor:={node_executor}',
                          '--log-level', 'warn'], env=env),
        subprocess.Popen([sys.executable, '-m', 'vr_goggles.bench.node', '--relay',
                          f'{ns}/relay'], env=env),
    ]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('bench', context=context)
    via_node, via_relay = _RoundTrip(node, f'{ns}/node'), _RoundTrip(node, f'{ns}/relay')
    diag: dict[str, str] = {}
    try:
        from diagnostic_msgs.msg import DiagnosticArray

        def on_diag(arr):
            for st in arr.status:
                if st.name.startswith('goggles_node'):
                    diag.update({kv.key: kv.value for kv in st.values})

        node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    except ImportError:
        pass
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 120
        while not (via_node.ready() and via_relay.ready()):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError('goggles_node or the relay did not come up')
            time.sleep(0.05)
        msgs = [numpy_to_image(img, 'rgb8', header=Header(frame_id='camera'), msg_cls=Image)
                for img in frames]
        # The first translation may include an engine build: wait for it.
        while via_node(msgs[0], 0.5) is None and time.monotonic() < deadline:
            pass
        period = 1.0 / rate
        res: dict[str, list[float]] = {k: [] for k in ('bare', 'node', 'relay', 'overhead',
                                                       'beyond_relay')}
        lost = 0
        for i, (img, msg) in enumerate(zip(frames, msgs)):
            t_next = time.perf_counter() + period
            t0 = time.perf_counter()
            goggles(img)
            t_bare = time.perf_counter() - t0
            t_node = via_node(msg)
            t_relay = via_relay(msg)
            if t_node is None or t_relay is None:
                lost += 1
            elif i >= warmup:
                for k, v in (('bare', t_bare), ('node', t_node), ('relay', t_relay),
                             ('overhead', t_node - t_bare),
                             ('beyond_relay', t_node - t_bare - t_relay)):
                    res[k].append(v)
            time.sleep(max(0.0, t_next - time.perf_counter()))
        time.sleep(1.0)
        result = {'engine': engine, 'executor': node_executor,
                  'bare_engine': _summary(res['bare']),
                  'node_end_to_end': _summary(res['node']),
                  'dds_relay': _summary(res['relay']), 'overhead': _summary(res['overhead']),
                  'overhead_beyond_dds': _summary(res['beyond_relay']), 'lost': lost}
        if diag:  # the node's own view (its /diagnostics window, warm-up included)
            result['in_node'] = {k: float(diag[k]) for k in (
                'latency_p50_ms', 'latency_p99_ms', 'engine_p50_ms', 'engine_p99_ms')}
            # The engine may run slower in the node's process than here (other threads,
            # scheduling): subtract the node's own engine time for its overhead.
            result['overhead_vs_node_engine_p50_ms'] = round(
                result['node_end_to_end']['p50_ms'] - result['in_node']['engine_p50_ms'], 3)
        return result
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        context.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them (and ``--json``)."""
    ap = argparse.ArgumentParser(prog='python -m vr_goggles.bench.node', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', help='weights name or path (default: shipped default)')
    ap.add_argument('--model-size', type=int, default=64,
                    help='input size of the random stand-in model when none is shipped')
    ap.add_argument('--engine', default='auto', help='auto | torch | onnxruntime | tensorrt')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--size', type=int, default=128, help='camera frame size (square)')
    ap.add_argument('--frames', type=int, default=230, help='frames, warm-up included')
    ap.add_argument('--warmup', type=int, default=30)
    ap.add_argument('--rate', type=float, default=30.0, help='maximum frame rate (Hz)')
    ap.add_argument('--threads', type=int, default=1, help='torch/OpenMP threads, both sides')
    ap.add_argument('--executor', default='auto', choices=EXECUTOR_CHOICES,
                    help="the node's executor parameter")
    ap.add_argument('--json', type=Path, help='also write the results here')
    ap.add_argument('--relay', metavar='NS', help=argparse.SUPPRESS)  # the baseline process
    args = ap.parse_args(argv)
    if args.relay:
        relay(args.relay)
        return 0
    if args.frames <= args.warmup:
        ap.error('--frames must exceed --warmup')
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
              for _ in range(args.frames)]
    with tempfile.TemporaryDirectory() as tmp:
        model = _model_path(args.model, args.model_size, Path(tmp))
        res = bench(model, args.engine, args.device, frames, args.rate, args.warmup,
                    args.threads, args.executor)
    out = {'model': args.model or Path(model).name, 'device': args.device,
           'frame_size': args.size, **res}
    print(f'{"":22s}{"p50 ms":>9s}{"p90 ms":>9s}{"p99 ms":>9s}{"n":>6s}')
    for name, key in (('bare engine', 'bare_engine'), ('node over DDS', 'node_end_to_end'),
                      ('DDS relay only', 'dds_relay'), ('node - engine', 'overhead'),
                      ('node - engine - relay', 'overhead_beyond_dds')):
        r = res[key]
        print(f'{name:22s}{r["p50_ms"]:9.2f}{r["p90_ms"]:9.2f}{r["p99_ms"]:9.2f}{r["n"]:6d}')
    if 'in_node' in res:
        n = res['in_node']
        print(f'{"in node: recv->publish":22s}{n["latency_p50_ms"]:9.2f}{"":9s}'
              f'{n["latency_p99_ms"]:9.2f}  (its /diagnostics)')
        print(f'{"in node: engine call":22s}{n["engine_p50_ms"]:9.2f}{"":9s}'
              f'{n["engine_p99_ms"]:9.2f}')
        print(f'node overhead p50 (end to end - engine time in the node): '
              f'{res["overhead_vs_node_engine_p50_ms"]:.2f} ms')
    print(f'node overhead p50 (per frame, end to end - engine here): '
          f'{res["overhead"]["p50_ms"]:.2f} ms; DDS relay alone {res["dds_relay"]["p50_ms"]:.2f}'
          f' ms ({res["engine"]} on {args.device}, executor {args.executor}, '
          f'{args.size}x{args.size} rgb8 frames, '
          f'{res["lost"]} lost)')
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
