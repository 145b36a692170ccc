"""Scheduling the experiment's tasks: up to ``jobs`` at once, each in its own (spawned) process with
``torch.set_num_threads(max(1, cores // jobs))``, a task only once every task it depends on has finished.

Before a task starts, its dependencies' outputs are read (:func:`~lofi.train.experiment.tasks.resolve`) and it is
checked for reuse: a task whose every stage finished under the same identity is reused as it is, without a process
(``reused`` on its progress line). A task that fails is reported by name with its message (its traceback is in
its ``log.txt``); the tasks that need it are not run, the others go on. One line per task when it starts and one
when it ends (seconds, and a cell's average mAP).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Callable, Sequence

from lofi.errors import UserError
from lofi.runtime.run_identity import RunMismatchError
from lofi.train.experiment.cells import Task
from lofi.train.experiment.layout import LOG_FILE
from lofi.train.experiment.records import read_record
from lofi.train.experiment.tasks import ExperimentSpec, ResolvedTask, execute, resolve, reused_record

Echo = Callable[[str], None]
#: The most characters of a failed task's message sent back to the scheduler.
_MESSAGE_CHARS = 4000


@dataclass
class TaskOutcome:
    """How a task ended: ``status`` ``ok``, ``reused``, ``skipped`` (with ``message``), ``failed`` (``message``)
    or ``blocked`` (a task it needs failed); its record when it has one."""

    task: Task
    status: str
    record: dict[str, Any] | None = None
    message: str | None = None
    seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in ("ok", "reused")


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // jobs)


@dataclass
class _Running:
    """A task's process, the end of the pipe it reports on, and when it started."""

    resolved: ResolvedTask
    process: BaseProcess
    conn: Connection
    started: float


def run_tasks(spec: ExperimentSpec, tasks: Sequence[Task], *, jobs: int, echo: Echo = print) -> dict[str, TaskOutcome]:
    """Run ``tasks`` (in dependency order, as :func:`~lofi.train.experiment.cells.plan_tasks` lists them); the
    outcome of each, by key."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    threads = threads_per_job(jobs)
    outcomes: dict[str, TaskOutcome] = {}
    pending = list(tasks)
    running: dict[str, _Running] = {}
    context = multiprocessing.get_context("spawn")
    try:
        while pending or running:
            changed = False
            for task in list(pending):
                if len(running) >= jobs:
                    break
                failed = [d for d in task.deps if d in outcomes and not outcomes[d].finished]
                if not failed and not all(d in outcomes for d in task.deps):
                    continue  # waits for a task that has not ended yet
                pending.remove(task)
                changed = True
                if failed:
                    outcomes[task.key] = TaskOutcome(task, "blocked", message=f"needs {failed[0]}, which did not "
                                                                              f"finish")
                    echo(f"{task.label}: not run: it needs {failed[0]}, which did not finish")
                    continue
                started = _start(spec, task, context, threads=threads, echo=echo, outcomes=outcomes)
                if started is not None:
                    running[task.key] = started
            if running:
                _collect(running, outcomes, echo=echo)
            elif pending and not changed:
                raise RuntimeError(f"task {pending[0].key} waits for {', '.join(pending[0].deps)}, which is not "
                                   f"among the tasks")
    except BaseException:
        for job in running.values():  # interrupted: stop the tasks (each resumes from its last checkpoint)
            job.process.terminate()
        for job in running.values():
            job.process.join()
        raise
    return outcomes


def _start(spec: ExperimentSpec, task: Task, context: Any, *, threads: int, echo: Echo,
           outcomes: dict[str, TaskOutcome]) -> _Running | None:
    """Resolve ``task`` and reuse it, skip it, or start its process."""
    try:
        resolved = resolve(spec, task)
        if resolved.skipped is not None:
            outcomes[task.key] = TaskOutcome(task, "skipped", message=resolved.skipped, info=resolved.info)
            echo(f"{task.label}: skipped: {resolved.skipped}")
            return None
        record = reused_record(spec, resolved)
    except Exception as exc:  # a user's mistake found before the task could start (a folder of other settings)
        outcomes[task.key] = TaskOutcome(task, "failed", message=_message(exc))
        echo(f"{task.label}: FAILED before it started: {_message(exc)}")
        return None
    if record is not None:
        outcomes[task.key] = TaskOutcome(task, "reused", record=record, seconds=record.get("seconds"),
                                         info=resolved.info)
        echo(f"{task.label}: reused{_summary(record, reused=True)}")
        return None
    resolved.folder.mkdir(parents=True, exist_ok=True)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec, resolved, send, threads), name=f"lofi {task.key}")
    process.start()
    send.close()
    echo(f"{task.label}: start ({threads} thread{'s' if threads > 1 else ''}; log {resolved.folder / LOG_FILE})")
    return _Running(resolved, process, receive, time.perf_counter())


def _collect(running: dict[str, _Running], outcomes: dict[str, TaskOutcome], *, echo: Echo) -> None:
    """Wait for a running task to end and record how each that has ended did."""
    wait([job.process.sentinel for job in running.values()])
    for key, job in list(running.items()):
        if job.process.is_alive():
            continue
        job.process.join()
        message = job.conn.recv() if job.conn.poll() else ("error", f"its process ended with exit code "
                                                                      f"{job.process.exitcode} before reporting")
        job.conn.close()
        del running[key]
        task, seconds = job.resolved.task, time.perf_counter() - job.started
        log = job.resolved.folder / LOG_FILE
        if message[0] == "ok":
            record = read_record(job.resolved.folder)
            status = "reused" if message[1] else "ok"
            outcomes[key] = TaskOutcome(task, status, record=record, seconds=seconds, info=job.resolved.info)
            echo(f"{task.label}: {'reused' if message[1] else f'done in {seconds:.1f} s'}"
                 f"{_summary(record, reused=message[1])}")
        else:
            outcomes[key] = TaskOutcome(task, "failed", message=message[1], seconds=seconds, info=job.resolved.info)
            text = message[1].replace("\n", "\n    ")
            echo(f"{task.label}: FAILED after {seconds:.1f} s: {text}\n    (its log: {log})")


def _summary(record: dict[str, Any] | None, *, reused: bool = False) -> str:
    """`` (42.0 s when it ran, average mAP 12.34%)``: what a progress line adds about a finished task."""
    if not record:
        return ""
    parts = []
    if reused and record.get("seconds"):
        parts.append(f"{record['seconds']:.1f} s when it ran")
    metrics = record.get("metrics")
    if metrics:
        parts.append(f"average mAP {100 * metrics['average_mAP']:.2f}%")
    return f" ({', '.join(parts)})" if parts else ""


def _message(exc: BaseException, folder: Path | None = None) -> str:
    """A failed task's message: the user's mistake as it is (a refused folder with what to do here: this command
    has no --no-resume), anything else with its type (a bug: its traceback is in the task's log)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, RunMismatchError) and folder is not None:
        text += (f"\nin lofi experiment: run it under another name (-o name=NEW), or remove {folder} to compute "
                 f"this task again")
    if isinstance(exc, (UserError, ValueError, OSError)):
        return text[:_MESSAGE_CHARS]
    return f"{type(exc).__name__}: {text}"[:_MESSAGE_CHARS]


def _child(spec: ExperimentSpec, resolved: ResolvedTask, conn: Connection, threads: int) -> None:
    """A task's process: its output (every stage's messages, warnings, tracebacks) goes to the task's log."""
    import torch

    log = open(resolved.folder / LOG_FILE, "a", encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    print(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {resolved.task.key}, {threads} thread(s)", flush=True)
    torch.set_num_threads(threads)
    try:
        record = execute(spec, resolved, workers=threads)
        conn.send(("ok", bool(record.get("reused"))))
    except BaseException as exc:  # reported to the scheduler, which goes on with the other tasks
        traceback.print_exc()
        conn.send(("error", _message(exc, resolved.folder)))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()
