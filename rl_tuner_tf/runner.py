"""The loop every training job runs: the Note RNN's training and each tuning
run.

    position = job.restore()                      # 0, or where a checkpoint was
    while position < job.total:
      position = job.advance(next period boundary, should_stop)
      for each period that ends here (or at the end): job.at_period(name, position)
      stop early if should_stop(): a signal (when the job asks for it) or the
        job's own reason (e.g. a time limit)
    return job.finish(position, why it stopped)  # "done", "signal 15", ...

A job counts its work in units (notes composed, training steps) and names
its periods in those units (``log``, ``checkpoint``, ``figure2``, ``eval``,
...). ``advance`` does the work up to a boundary (one compiled call, or step
by step) and may return early when ``should_stop()`` turns true; the runner
never splits a job's unit. Everything the job writes is its own: the runner
holds no files, so locks, checkpoints and atomic outputs stay where they are
(run_lock, checkpointing, atomic_files).
"""
import contextlib
import datetime
import math
import signal
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple


class NonFiniteLossError(RuntimeError):
  """The training loss became NaN or infinite; the checkpoints written before
  are kept, nothing later is."""


class PendingLosses:
  """A job's per-step loss tensors since its last check: kept as tensors
  so that no step waits for its loss, read at a check (a log line, a
  checkpoint, the end).  ``mean(failure)`` is their mean, or raises
  NonFiniteLossError with ``failure(mean)`` when it is NaN or infinite."""

  def __init__(self) -> None:
    self._losses: List[Any] = []

  def add(self, loss: Any) -> None:
    self._losses.append(loss)

  def mean(self, failure: Callable[[float], str]) -> Optional[float]:
    """None when no step ran since the last check."""
    if not self._losses:
      return None
    # Summed where they are (one device-to-host read), then averaged.
    mean = float(sum(self._losses)) / len(self._losses)
    self._losses.clear()
    if not math.isfinite(mean):
      raise NonFiniteLossError(failure(mean))
    return mean


def format_seconds(seconds: float) -> str:
  """'0:01:05', '12:00:00': a duration for progress lines."""
  return str(datetime.timedelta(seconds=int(max(0, seconds))))


class Job(Protocol):
  """What the runner drives."""
  total: int                    # units to reach
  periods: Dict[str, int]       # period name -> period in units (> 0)
  stop_on_signals: bool         # SIGTERM / SIGINT stop cleanly (finish runs)

  def restore(self) -> int: ...
  def advance(self, stop: int, should_stop: Callable[[], bool]) -> int: ...
  def at_period(self, name: str, position: int) -> None: ...
  def stop_reason(self) -> Optional[str]: ...
  def finish(self, position: int, reason: str) -> Any: ...


class Runner:
  """Runs a ``Job`` from its restored position to its total or a stop."""

  SIGNALS: Tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, job: Job):
    for name, period in job.periods.items():
      if period <= 0:
        raise ValueError(f"period {name!r} must be > 0 (got {period})")
    self.job = job
    self._signal: Optional[int] = None

  def run(self) -> Any:
    job = self.job
    position = job.restore()
    reason = "done"
    with self._stopping_on_signals(job.stop_on_signals):
      while position < job.total:
        boundary = min([job.total] + [(position // p + 1) * p
                                      for p in job.periods.values()])
        position = job.advance(boundary, self.should_stop)
        for name, period in job.periods.items():
          if position % period == 0 or position >= job.total:
            job.at_period(name, position)
        early = self._early_reason()
        if early is not None and position < job.total:
          reason = early
          break
      return job.finish(position, reason)

  def should_stop(self) -> bool:
    """True once a stop signal arrived or the job has its own reason."""
    return self._signal is not None or self.job.stop_reason() is not None

  def _early_reason(self):
    if self._signal is not None:
      return f"signal {self._signal}"
    return self.job.stop_reason()

  @contextlib.contextmanager
  def _stopping_on_signals(self, enabled):
    previous = {}
    if enabled:
      def on_signal(signum, _):
        self._signal = signum
      for s in self.SIGNALS:
        try:
          previous[s] = signal.signal(s, on_signal)
        except ValueError:  # not the main thread: no signal handling
          pass
    try:
      yield
    finally:
      for s, handler in previous.items():
        signal.signal(s, handler)
