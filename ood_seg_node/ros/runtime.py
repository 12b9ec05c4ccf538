# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Running a node of this package as a process: Fast DDS profile, signals, one-line start-up errors.

Shared by ``ood_seg_node`` and ``ood_seg_evaluator``; imports neither torch nor the pipeline, so the
evaluator starts without them.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ood_seg_node.ros import dds


def one_line(error: BaseException) -> str:
    """An exception's message folded onto one line (its type name when it has no message)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


class _Stop(BaseException):
    """Raised by the first SIGINT/SIGTERM while a node is being built (model loading can take seconds)."""


class _ShutdownSignals:
    """SIGINT and SIGTERM, whoever sends them, ask for one clean stop; later ones are ignored.

    A shell's Ctrl-C reaches every process of the group and launch forwards its own SIGINT too, so a
    node typically gets two or more. Once the first has arrived both signals are ignored for the rest
    of the process's life: a later one can neither interrupt ``destroy_node`` nor kill the interpreter
    while it exits (which launch reported as ``exit code -2``). rclpy's own handlers are not installed:
    they re-raise the signal as KeyboardInterrupt in whatever code is running.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.interrupt = True  # while building: abort the build; once spinning: just set the flag

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        sys.unraisablehook = self._unraisable

    @staticmethod
    def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
        # Two signals caught together: the first handler ignores the second before Python runs it, and
        # CPython reports that as "Signal N ignored due to race condition". Ignoring it is the intent.
        if isinstance(unraisable.exc_value, OSError) and "ignored due to race condition" in str(unraisable.exc_value):
            return
        sys.__unraisablehook__(unraisable)

    def ignore(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum: int, frame: object) -> None:
        self.ignore()
        self.requested.set()
        if self.interrupt:
            raise _Stop


def spin_node(name: str, factory: Callable[[], Node], startup_errors: tuple[type[BaseException], ...],
              args: list[str] | None = None) -> int:
    """Run a node until SIGINT / SIGTERM / shutdown; returns the process's exit code.

    Stopped by a signal or an external shutdown: 0, with the node's ``close()`` (if any) and
    ``destroy_node`` run uninterrupted. A node stops itself by setting its ``finished`` attribute, and
    sets ``exit_code`` (if it has one) to what the process returns. A start-up error (``startup_errors``,
    a mistyped parameter override, malformed ``--ros-args``) prints one line and returns 1. The Fast DDS
    large-image profile is applied first (Fast DDS reads it at participant creation).
    """
    profile_note = dds.apply_default_profile()
    signals = _ShutdownSignals()
    signals.install()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = factory()
        signals.interrupt = False
    except BaseException as error:
        signals.ignore()
        rclpy.try_shutdown()
        if isinstance(error, _Stop):
            return 0
        if isinstance(error, (*startup_errors, ParameterException)):
            print(f"{name}: error: {one_line(error)}", file=sys.stderr)
        elif isinstance(error, Exception):  # malformed --ros-args (rclpy raises RCLError) and the like
            print(f"{name}: error: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        else:
            raise
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        node.get_logger().info(profile_note)
        while not (signals.requested.is_set() or getattr(node, "finished", False)) and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        signals.ignore()  # however the node stopped, cleanup and exit run to the end
        if hasattr(node, "close"):
            node.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return int(getattr(node, "exit_code", 0))
