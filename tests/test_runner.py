"""The training loop shared by the Note RNN's training and tuning: periods,
the end, early stops (the job's reason, a signal), restore."""
import os
import signal

import pytest

from rl_tuner_tf import runner


class CountingJob:
  """Counts to ``total`` by ``chunk`` units per advance; records what the
  runner asked."""

  def __init__(self, total, periods, start=0, chunk=1, stop_at=None,
               signal_at=None, stop_on_signals=False):
    self.total, self.periods = total, periods
    self.position, self.chunk = start, chunk
    self.stop_at, self.signal_at = stop_at, signal_at
    self.stop_on_signals = stop_on_signals
    self.calls, self.finished = [], None

  def restore(self):
    return self.position

  def advance(self, stop, should_stop):
    while self.position < stop:
      self.position = min(stop, self.position + self.chunk)
      if self.position == self.signal_at:
        os.kill(os.getpid(), signal.SIGTERM)
      if should_stop():
        break
    return self.position

  def at_period(self, name, position):
    self.calls.append((name, position))

  def stop_reason(self):
    if self.stop_at is not None and self.position >= self.stop_at:
      return f"stopped at {self.position}"
    return None

  def finish(self, position, reason):
    self.finished = (position, reason)
    return "result"


def test_periods_fire_at_their_boundaries_and_all_at_the_end():
  job = CountingJob(10, {"log": 3, "checkpoint": 4})
  assert runner.Runner(job).run() == "result"
  assert job.calls == [("log", 3), ("checkpoint", 4), ("log", 6),
                       ("checkpoint", 8), ("log", 9), ("log", 10),
                       ("checkpoint", 10)]
  assert job.finished == (10, "done")


def test_a_restored_job_goes_on_from_its_position():
  job = CountingJob(10, {"log": 5}, start=5, chunk=5)
  runner.Runner(job).run()
  assert job.calls == [("log", 10)] and job.finished == (10, "done")
  done = CountingJob(10, {"log": 5}, start=10)
  runner.Runner(done).run()
  assert done.calls == [] and done.finished == (10, "done")


def test_the_jobs_own_reason_stops_it_between_boundaries():
  job = CountingJob(100, {"log": 10}, stop_at=23)
  runner.Runner(job).run()
  assert job.calls == [("log", 10), ("log", 20)]
  assert job.finished == (23, "stopped at 23")


def test_a_signal_stops_a_job_that_asks_for_it_and_handlers_come_back():
  before = signal.getsignal(signal.SIGTERM)
  job = CountingJob(100, {"log": 10}, signal_at=17, stop_on_signals=True)
  runner.Runner(job).run()
  assert job.finished == (17, f"signal {int(signal.SIGTERM)}")
  assert signal.getsignal(signal.SIGTERM) == before


def test_periods_must_be_positive():
  with pytest.raises(ValueError, match="'log'"):
    runner.Runner(CountingJob(10, {"log": 0}))


def test_format_seconds():
  assert runner.format_seconds(65.9) == "0:01:05"
  assert runner.format_seconds(-3) == "0:00:00"
  assert runner.format_seconds(43200) == "12:00:00"


def test_pending_losses_are_read_at_a_check_and_refuse_non_finite_ones():
  pending = runner.PendingLosses()
  assert pending.mean(str) is None
  for loss in (1.0, 2.0, 6.0):
    pending.add(loss)
  assert pending.mean(str) == 3.0
  assert pending.mean(str) is None  # read once
  pending.add(1.0)
  pending.add(float("nan"))
  with pytest.raises(runner.NonFiniteLossError, match="loss was nan here"):
    pending.mean(lambda mean: f"loss was {mean} here")
