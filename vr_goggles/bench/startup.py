"""Start-up time and resident memory of ``goggles_node`` and ``policy_node`` per engine.

    python -m vr_goggles.bench.startup [--nodes goggles,policy] [--engines torch,onnxruntime,auto]
                                       [--frames 300] [--runs 3] [--json FILE]

Each node runs as its own process (``python -m vr_goggles.nodes.NODE``, as ``ros2 run`` starts
it) in a private ``ROS_DOMAIN_ID`` with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, over real
DDS. This process already publishes its input at ``--rate`` Hz before the node starts (camera
frames on ``image`` for the goggles, 64x64 sim-style frames on ``image_sim`` for the policy),
so the node's start-up is measured from its process start to the first image it publishes on
``image_sim``, or the first command on ``cmd_vel`` that comes from the policy (non-zero: the
stale-input zero command comes before any decision). Resident memory (``VmRSS`` of
``/proc/PID/status``) is read at that moment and again after ``--frames`` more outputs, with
the peak (``VmHWM``) and whether ``libtorch`` is mapped into the process at all.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

NODES = ('goggles', 'policy')
ENGINES = ('torch', 'onnxruntime', 'auto')


def proc_memory(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in MB (1e6 bytes), from ``/proc/PID/status``."""
    out = {}
    with open(f'/proc/{pid}/status', encoding='ascii', errors='replace') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(rest.split()[0]) * 1024 / 1e6  # the kernel reports kB (KiB)
    return out


def maps_torch(pid: int) -> bool:
    """Whether ``libtorch`` is mapped into ``pid``: torch was imported there."""
    try:
        with open(f'/proc/{pid}/maps', encoding='ascii', errors='replace') as f:
            return any('libtorch' in line for line in f)
    except OSError:
        return False


class _Feed:
    """Publishes the node's input at ``rate`` Hz and timestamps the node's outputs."""

    def __init__(self, node, ns: str, kind: str, rate: float, size: int):
        from geometry_msgs.msg import Twist
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        from vr_goggles.image.codec import numpy_to_image

        self.node, self.kind, self.period = node, kind, 1.0 / rate
        rng = np.random.default_rng(0)
        hw = (size, size) if kind == 'goggles' else (64, 64)
        self.msgs = [numpy_to_image(rng.integers(0, 256, (*hw, 3), dtype=np.uint8), 'rgb8',
                                    header=Header(frame_id='camera'), msg_cls=Image)
                     for _ in range(8)]
        topic_in, topic_out = (('image', 'image_sim') if kind == 'goggles'
                               else ('image_sim', 'cmd_vel'))
        self.pub = node.create_publisher(Image, f'{ns}/{topic_in}', qos_profile_sensor_data)
        self.outputs: list[float] = []
        self.lock = threading.Lock()
        if kind == 'goggles':
            node.create_subscription(Image, f'{ns}/{topic_out}', self._on_out,
                                     qos_profile_sensor_data)
        else:
            node.create_subscription(Twist, f'{ns}/{topic_out}', self._on_cmd, 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _on_out(self, msg) -> None:
        with self.lock:
            self.outputs.append(time.perf_counter())

    def _on_cmd(self, msg) -> None:
        if msg.linear.x != 0.0 or msg.angular.z != 0.0 or self.outputs:
            self._on_out(msg)

    def _publish(self) -> None:
        i = 0
        while not self._stop.is_set():
            msg = self.msgs[i % len(self.msgs)]
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.pub.publish(msg)
            i += 1
            self._stop.wait(self.period)

    def count(self) -> int:
        """Outputs so far."""
        with self.lock:
            return len(self.outputs)

    def first(self) -> float | None:
        """perf_counter time of the first output."""
        with self.lock:
            return self.outputs[0] if self.outputs else None

    def stop(self) -> None:
        """Stop publishing."""
        self._stop.set()
        self._thread.join(timeout=2)


def measure(kind: str, engine: str, *, frames: int, rate: float, size: int, threads: int,
            context, node, timeout: float = 120.0) -> dict:
    """One start of ``kind``_node with ``engine``: start-up seconds and memory."""
    ns = f'/startup{os.getpid()}_{random.randint(0, 1 << 30)}'
    feed = _Feed(node, ns, kind, rate, size)
    extra = ['-p', 'device:=cpu'] if kind == 'goggles' else ['-p', f'rate:={rate}']
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, '-m', f'vr_goggles.nodes.{kind}_node',
                             '--ros-args', '-r', f'__ns:={ns}', '-p', f'engine:={engine}',
                             *extra, '--log-level', 'warn'], env=env)
    try:
        deadline = t0 + timeout
        while feed.first() is None:
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f'{kind}_node (engine {engine}) published nothing '
                                   f'(exit code {proc.poll()})')
            time.sleep(0.002)
        startup = feed.first() - t0
        at_start = proc_memory(proc.pid)
        n0 = feed.count()
        while feed.count() < n0 + frames:
            if proc.poll() is not None or time.perf_counter() > deadline + frames / rate:
                raise RuntimeError(f'{kind}_node (engine {engine}) stopped publishing')
            time.sleep(0.01)
        after = proc_memory(proc.pid)
        return {'node': f'{kind}_node', 'engine': engine, 'startup_s': round(startup, 3),
                'rss_start_mb': round(at_start['VmRSS'], 1),
                'rss_after_mb': round(after['VmRSS'], 1),
                'peak_mb': round(after['VmHWM'], 1), 'frames': frames,
                'torch_loaded': maps_torch(proc.pid)}
    finally:
        feed.stop()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(nodes: list[str], engines: list[str], *, frames: int, rate: float, size: int,
        threads: int, runs: int) -> list[dict]:
    """Every node x engine, ``runs`` times interleaved; the median of each figure."""
    domain = random.randint(100, 200)
    os.environ.update({'ROS_DOMAIN_ID': str(domain),
                       'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'})
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('startup_bench', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    samples: dict[tuple[str, str], list[dict]] = {}
    try:
        for _ in range(runs):
            for kind in nodes:
                for engine in engines:
                    r = measure(kind, engine, frames=frames, rate=rate, size=size,
                                threads=threads, context=context, node=node)
                    samples.setdefault((kind, engine), []).append(r)
    finally:
        executor.shutdown(timeout_sec=1)
        spinner.join(timeout=2)
        node.destroy_node()
        context.try_shutdown()
    rows = []
    for rs in samples.values():
        row = dict(rs[0])
        for k in ('startup_s', 'rss_start_mb', 'rss_after_mb', 'peak_mb'):
            row[k] = round(statistics.median(r[k] for r in rs), 3 if k == 'startup_s' else 1)
        row['startup_s_all'] = [r['startup_s'] for r in rs]
        row['runs'] = len(rs)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table (and ``--json``)."""
    ap = argparse.ArgumentParser(prog='python -m vr_goggles.bench.startup', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nodes', default=','.join(NODES), help='goggles,policy')
    ap.add_argument('--engines', default=','.join(ENGINES),
                    help='engine parameter values to compare (default: %(default)s)')
    ap.add_argument('--frames', type=int, default=300, help='outputs before the second RSS')
    ap.add_argument('--rate', type=float, default=30.0, help='input rate (Hz)')
    ap.add_argument('--size', type=int, default=128, help='camera frame size for the goggles')
    ap.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of the nodes')
    ap.add_argument('--runs', type=int, default=3, help='starts per node and engine')
    ap.add_argument('--json', type=Path, help='also write the results here')
    args = ap.parse_args(argv)
    nodes = [n.strip() for n in args.nodes.split(',') if n.strip()]
    engines = [e.strip() for e in args.engines.split(',') if e.strip()]
    bad = sorted(set(nodes) - set(NODES))
    if bad:
        ap.error(f'--nodes: unknown {bad} (expected {", ".join(NODES)})')
    rows = run(nodes, engines, frames=args.frames, rate=args.rate, size=args.size,
               threads=args.threads, runs=args.runs)
    print(f'{"node":14s}{"engine":13s}{"start-up s":>11s}{"RSS start MB":>14s}'
          f'{"RSS after MB":>14s}{"peak MB":>9s}  torch loaded')
    for r in rows:
        torch = 'yes' if r['torch_loaded'] else 'no'
        print(f'{r["node"]:14s}{r["engine"]:13s}{r["startup_s"]:11.2f}{r["rss_start_mb"]:14.1f}'
              f'{r["rss_after_mb"]:14.1f}{r["peak_mb"]:9.1f}  {torch}')
    print(f'median of {args.runs} start(s) each; RSS after {args.frames} outputs at '
          f'{args.rate:g} Hz input; process start -> first image_sim / first policy cmd_vel; '
          f'{os.cpu_count()} CPUs, OMP_NUM_THREADS={args.threads}')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'rows': rows, 'frames': args.frames, 'rate': args.rate,
                                         'threads': args.threads, 'runs': args.runs},
                                        indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
