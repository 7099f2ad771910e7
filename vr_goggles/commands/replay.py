"""``vr-goggles replay``: translate the camera topic of a recorded bag, offline.

Reads ROS 2 bags (.db3 / .mcap, directory or file) and ROS 1 .bag files with ``rosbags`` (no ROS
install), runs the same goggles core as the ROS node on every frame of the camera topic
(sensor_msgs/Image or CompressedImage; picked automatically when the bag has exactly one) and
writes a ROS 2 MCAP bag holding every original message plus ``<topic>_sim`` (translated rgb8
images, original stamps) and, with ``--policy``, the policy's ``cmd_vel`` for each frame:
``ros2 bag play OUT`` then drives RViz/Foxglove directly. The input bag is never modified; an
existing OUT is replaced only with ``--overwrite``. Every translated frame is scored with the
domain score (``--domain-score``), and the metrics and report say where in the recording
policy_node's stop rule would have held the robot because the goggles do not know the view.

Exit status: 0 when every frame was processed, 3 when the bag is corrupt or truncated part-way
(the output and metrics hold what was done, with ``complete: false``), 1 for unusable input.
"""

from __future__ import annotations

import argparse
import sys

from vr_goggles.engines.cli_support import add_engine_args, add_model_arg
from vr_goggles.replay.config import ReplayConfig

EXIT_INCOMPLETE = 3


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``replay``."""
    p = subparsers.add_parser('replay', help='translate the camera topic of a bag (offline)',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('bag', metavar='BAG', help='ROS 2 bag (directory, .db3 or .mcap) or ROS 1 '
                                              '.bag')
    p.add_argument('--out', required=True, help='output ROS 2 bag directory (MCAP)')
    p.add_argument('--topic', default=None,
                   help='camera topic (default: the only Image/CompressedImage topic)')
    add_model_arg(p)
    add_engine_args(p)
    p.add_argument('--policy', default=None,
                   help='also run this policy (shipped name or path) on the translated frames '
                        'and record its cmd_vel')
    p.add_argument('--cmd-vel-topic', default='/cmd_vel',
                   help='topic for the policy commands (default: %(default)s; "_policy" is '
                        'appended if the bag already records it)')
    ds = p.add_mutually_exclusive_group()
    ds.add_argument('--domain-score', default='domain_score', metavar='NAME_OR_PATH',
                    help='score every camera frame with this domain score (shipped name or '
                         'weights path; default: %(default)s) and replay policy_node\'s stop '
                         'rule over the scores; "" turns it off')
    ds.add_argument('--no-domain-score', dest='domain_score', action='store_const', const='',
                    help='do not score the frames')
    p.add_argument('--report', default=None, metavar='HTML',
                   help='write a self-contained HTML report')
    p.add_argument('--metrics', default=None, metavar='JSON', help='write metrics as JSON')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --out bag')
    p.add_argument('--max-frames', type=int, default=None, metavar='N',
                   help='stop after N camera frames (the output ends there)')
    p.add_argument('--batch-size', type=int, default=1,
                   help='frames per engine call (default: %(default)s, as the ROS node)')
    p.add_argument('--decode-threads', type=int, default=None,
                   help='threads decoding camera frames in parallel (default: 2 for '
                        'CompressedImage, 1 for raw Image)')
    p.add_argument('--torch-threads', type=int, default=None,
                   help='torch threads during the replay (default: one core fewer than the '
                        'machine has, leaving it to bag I/O; 0: do not change)')
    p.add_argument('--max-shift', type=int, default=4,
                   help='shift-error range, 2**(stride-2 layers) (default: %(default)s)')
    p.add_argument('--bench', action='store_true',
                   help='also time the engine alone on the same frames and print the ratio '
                        'replay/engine throughput')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> ReplayConfig:
    """CLI namespace -> :class:`vr_goggles.replay.ReplayConfig`."""
    return ReplayConfig(
        bag=args.bag, out=args.out, topic=args.topic, model=args.model, engine=args.engine,
        device=args.device, precision=args.precision, compile=args.compile,
        engine_file_path=args.engine_file_path, force_engine_update=args.force_engine_update,
        policy=args.policy, cmd_vel_topic=args.cmd_vel_topic, domain_score=args.domain_score,
        report=args.report,
        metrics=args.metrics, overwrite=args.overwrite, max_frames=args.max_frames,
        batch_size=args.batch_size, decode_threads=args.decode_threads,
        torch_threads=args.torch_threads, max_shift=args.max_shift, bench=args.bench,
        progress=not args.no_progress,
        command=getattr(args, 'command_line', '') or 'vr-goggles replay')


def run(args: argparse.Namespace) -> int:
    """Replay the bag; print a summary; 0 complete, 3 incomplete."""
    # Lazy: the pipeline pulls in rosbags, OpenCV and the engines, which `vr-goggles --help`
    # and the other verbs (every verb module is imported to build the parser) must not pay for.
    from vr_goggles.replay import format_summary, replay

    metrics = replay(config_from_args(args))
    print(format_summary(metrics))
    if not metrics['complete']:
        print(f'vr-goggles replay: error: {metrics["error"]}', file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
