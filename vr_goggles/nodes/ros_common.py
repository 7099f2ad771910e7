"""rclpy helpers shared by the nodes: QoS by name, declared parameters, diagnostics, main().

This is the only module besides the node modules that imports rclpy.
"""

from __future__ import annotations

from collections.abc import Callable
import signal
import threading
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
import rclpy.logging
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from vr_goggles.nodes.params import EXECUTOR_CHOICES, ParamSpec, specs_by_name


class StopReleaseLifecycleNode(LifecycleNode):
    """The lifecycle transitions both nodes share, in terms of two hooks.

    ``_stop()`` undoes activation (unsubscribe, stop timers and workers, send a final command);
    ``_release()`` undoes configuration: here the lifecycle publisher ``self._pub``, extended
    by subclasses to drop their model. Deactivate stops, cleanup releases, shutdown and error
    do both, so every path out of ``active`` is the same. ``close()`` is what ``main`` calls
    before destroying the node, while the context is still valid.
    """

    _pub = None
    diagnostics = None

    def _stop(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        if self._pub is not None:
            self.destroy_lifecycle_publisher(self._pub)
            self._pub = None

    def close(self) -> None:
        """Stop (sending any final command), then remove the diagnostics timer."""
        self._stop()
        if self.diagnostics is not None:
            self.diagnostics.destroy()

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop (see ``_stop``), then let the base class deactivate the publishers."""
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model and the publisher."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and release everything."""
        self._stop()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop and release, returning to unconfigured."""
        self._stop()
        self._release()
        return TransitionCallbackReturn.SUCCESS


#: Diagnostic levels as in diagnostic_msgs/DiagnosticStatus (OK, WARN, ERROR, STALE).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


def qos_profile(name: str) -> QoSProfile:
    """Named QoS profile.

    ``sensor_data``: best effort, keep last 5 (camera drivers' default; a reliable subscriber
    will not match it). ``reliable``: reliable, keep last 1 (latest frame only, no
    retransmission backlog). ``default``: the ROS default, reliable, keep last 10.
    """
    if name == 'sensor_data':
        return qos_profile_sensor_data
    if name == 'reliable':
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                          reliability=ReliabilityPolicy.RELIABLE)
    if name == 'default':
        return QoSProfile(depth=10)
    raise ValueError(f"qos: expected 'sensor_data', 'reliable' or 'default', got {name!r}")


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    constraints = [spec.constraints] if spec.constraints else []
    if spec.choices:
        constraints.append('one of: ' + ', '.join(spec.choices))
    desc.additional_constraints = '; '.join(constraints)
    if spec.range is not None and isinstance(spec.default, bool):
        raise TypeError(f'{spec.name}: a bool parameter cannot have a range')
    if spec.range is not None and isinstance(spec.default, int):
        desc.integer_range = [IntegerRange(from_value=int(spec.range[0]),
                                           to_value=int(spec.range[1]), step=1)]
    elif spec.range is not None and isinstance(spec.default, float):
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)]
    return desc


def declare_parameters(node: Node, specs: tuple[ParamSpec, ...],
                       on_change: Callable[[dict[str, Any]], None] | None = None
                       ) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` and return their values (overrides applied, checked).

    Invalid start-up values raise ValueError naming the parameter, so a typo in a YAML file
    stops the node at once instead of surfacing later as a confusing engine error. Run-time
    changes go through the same checks (``add_on_set_parameters_callback``); ``on_change``
    then receives the accepted ``{name: value}`` of this node's parameters.
    """
    errors = []
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        except ParameterException as exc:  # an override outside the descriptor's range/type
            errors.append(f'{spec.name}: {exc.args[0] if exc.args else exc}')
    if errors:
        raise ValueError('invalid parameters: ' + '; '.join(errors))
    values = {s.name: node.get_parameter(s.name).value for s in specs}
    errors = [err for s in specs if (err := s.check(values[s.name])) is not None]
    if errors:
        raise ValueError('invalid parameters: ' + '; '.join(errors))
    known = specs_by_name(specs)

    def check(params) -> SetParametersResult:
        for p in params:
            spec = known.get(p.name)
            if spec is not None and (err := spec.check(p.value)) is not None:
                return SetParametersResult(successful=False, reason=err)
        if on_change is not None:
            on_change({p.name: p.value for p in params if p.name in known})
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)
    return values


class Diagnostics:
    """Periodic health report: diagnostic_updater, else DiagnosticArray, else a log line.

    ``report()`` returns ``(level, message, {key: value})``. diagnostic_updater is preferred
    when installed (it is not on PyPI); the ``diagnostic_msgs`` wheel alone is enough for
    ``/diagnostics``; without either a summary is logged every ``max(period, 10)`` s.
    """

    def __init__(self, node: Node, task: str, hardware_id: str,
                 report: Callable[[], tuple[int, str, dict[str, Any]]], period: float) -> None:
        self._node, self._task, self._hw, self._report = node, task, hardware_id, report
        self.backend = 'log'
        self._pub = None
        self._updater = None
        try:
            import diagnostic_updater  # optional: not on PyPI

            self._updater = diagnostic_updater.Updater(node, period)
            self._updater.setHardwareID(hardware_id)
            self._updater.add(task, self._fill_status)
            self.backend = 'diagnostic_updater'
            self._timer = None
            return
        except ImportError:
            pass
        try:
            from diagnostic_msgs.msg import DiagnosticArray
            self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
            self.backend = 'diagnostic_msgs'
        except ImportError:
            period = max(period, 10.0)
        self._timer = node.create_timer(period, self._publish)

    def _fill_status(self, stat):
        level, message, values = self._report()
        stat.summary(bytes([level]), message)  # a `byte` field: bytes of length 1 in rclpy
        for key, value in values.items():
            stat.add(key, str(value))
        return stat

    def _publish(self) -> None:
        level, message, values = self._report()
        if self._pub is None:
            text = ', '.join(f'{k}={v}' for k, v in values.items())
            log = self._node.get_logger()
            (log.warning if level >= WARN else log.info)(f'{message}: {text}')
            return
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        status = DiagnosticStatus(
            level=bytes([level]), name=f'{self._node.get_name()}: {self._task}',
            message=message, hardware_id=self._hw,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)

    def destroy(self) -> None:
        """Stop reporting (the node's destruction also releases everything)."""
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        if self._pub is not None:
            self._node.destroy_publisher(self._pub)
            self._pub = None


def autostart(node) -> bool:
    """Configure then activate a lifecycle node; False (and logged) if a transition failed."""
    from rclpy.lifecycle import TransitionCallbackReturn

    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error('autostart: configure failed; the node stays unconfigured '
                                '(fix the parameters, then configure it via lifecycle)')
        return False
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().error('autostart: activate failed')
        return False
    return True


#: Seconds between checks of the stop flag while spinning (the shutdown latency bound).
SPIN_CHECK_PERIOD = 0.1


def make_executor(kind: str, context=None):
    """The executor ``kind`` names: 'events', 'single_threaded', or 'auto'.

    ``events`` is rclpy's EventsExecutor (``rclpy.experimental``, Jazzy and later): it
    dispatches from an event queue instead of rebuilding a wait set in Python after every
    callback, which on the goggles node's 30 Hz path is the Python work that competes with
    the inference thread for the GIL (bench_node overhead p50 0.85-0.98 ms vs 1.18-1.29 ms
    with the SingleThreadedExecutor, 6 interleaved runs each; docs/ros.md). ``auto`` takes it
    where rclpy has it (not on Humble).
    """
    if kind not in EXECUTOR_CHOICES:
        raise ValueError(f'executor: expected one of {EXECUTOR_CHOICES}, got {kind!r}')
    if kind in ('auto', 'events'):
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            if kind == 'events':
                raise ValueError('executor: events needs rclpy.experimental.EventsExecutor '
                                 '(ROS 2 Jazzy or later); use single_threaded') from None
        else:
            return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def main_loop(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Run one node until Ctrl-C / SIGTERM, then call its ``close()`` with the context alive.

    A node with a true ``autostart`` parameter is configured and activated first; its
    ``executor`` parameter (if declared) picks the executor (:func:`make_executor`).

    rclpy's own signal handlers are disabled so that the context is still valid after
    SIGINT/SIGTERM, which lets a node publish a last message (the policy node's zero
    velocity) before it is destroyed. The handlers only set a flag that the spin loop checks
    between short ``spin_once`` calls: an exception raised from a handler could land inside
    a callback, where an executor may log and swallow it.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        try:
            node = make_node()
            kind = (node.get_parameter('executor').value if node.has_parameter('executor')
                    else 'single_threaded')
            executor = make_executor(kind)
        except (ValueError, ImportError) as exc:  # bad parameters, missing extra: one line
            rclpy.logging.get_logger('vr_goggles').fatal(str(exc))
            return 2
        if node.has_parameter('autostart') and node.get_parameter('autostart').value:
            autostart(node)
        executor.add_node(node)
        # A node with a finite job (sim_bridge with ``episodes``) sets ``finished`` when done.
        while not stop.is_set() and rclpy.ok() and not getattr(node, 'finished', False):
            executor.spin_once(timeout_sec=SPIN_CHECK_PERIOD)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if node is not None:
            try:
                node.close()
            finally:
                node.destroy_node()
        rclpy.try_shutdown()
    return 0
