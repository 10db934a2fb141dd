"""Tuning wall time at each Figure 2 point, read from a run's TensorBoard
events (every event carries the time it was written).

A run resumed after a stop has one event file per session; its wall time is
the sum of the sessions' own durations (each measured from its file's first
event, written when the session's tuner starts), so the time a run spent
stopped does not count and work redone after a kill does.
"""
import glob
import os
from typing import Dict

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

TENSORBOARD_DIR = "tensorboard"
FIGURE2_TAG = "figure2/mean_log_p"


def _session_files(run_dir):
  pattern = os.path.join(run_dir, TENSORBOARD_DIR, "events.out.tfevents.*")
  # Names start with the writer's creation time: sessions in order.
  return sorted(glob.glob(pattern),
                key=lambda p: (int(os.path.basename(p).split(".")[3]), p))


def seconds_at_steps(run_dir: str, tag: str = FIGURE2_TAG
                     ) -> Dict[int, float]:
  """{step: tuning seconds when the step's ``tag`` value was written}, over
  all sessions of the run in <run_dir>/tensorboard ({} when there are no
  events). A step written again by a later session keeps the later time."""
  seconds = {}
  offset = 0.0
  for path in _session_files(run_dir):
    start = last = None
    try:
      for record in tf.data.TFRecordDataset(path):
        event = tf.compat.v1.Event.FromString(record.numpy())
        if start is None:
          start = event.wall_time
        last = event.wall_time
        if any(v.tag == tag for v in event.summary.value):
          seconds[int(event.step)] = offset + event.wall_time - start
    except tf.errors.DataLossError:
      pass  # a session killed while writing: keep what was read
    if start is not None:
      offset += last - start
  return seconds
