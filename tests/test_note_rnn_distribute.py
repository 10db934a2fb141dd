"""The Note RNN trainer under tf.distribute (train_note_rnn --distribute).

The two-replica test runs in a subprocess: two logical CPU devices must be
configured before TensorFlow initialises its devices, which the rest of the
suite has already done in this process.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from rl_tuner_tf import train_note_rnn as tnr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(**overrides):
  values = dict(layer_sizes=(16,), batch_size=8, num_steps=4,
                learning_rate=0.01, window_length=16, log_every=2,
                checkpoint_every=2, eval_every=1000, eval_batch_size=8)
  values.update(overrides)
  return tnr.TrainConfig(**values)


def _batches(steps, batch_size, window, seed=0):
  rng = np.random.default_rng(seed)
  return [(tf.constant(rng.integers(0, 38, [batch_size, window + 1]), tf.int32),
           tf.constant(rng.integers(5, window + 2, [batch_size]), tf.int32))
          for _ in range(steps)]


def test_one_device_strategies_and_flag_errors():
  # This process has one CPU device and no GPU.
  assert tnr.make_strategy("auto") is tf.distribute.get_strategy()
  assert tnr.make_strategy("none").num_replicas_in_sync == 1
  with pytest.raises(ValueError, match="--distribute=mirrored needs two or more"):
    tnr.make_strategy("mirrored")
  with pytest.raises(ValueError, match="--distribute"):
    _tiny(distribute="gpus")


def test_default_strategy_step_is_todays_step(tmp_path):
  """One device: the distributed step is exactly the single-device step
  (sequence_loss + L2, clip, Adam) of the code before tf.distribute."""
  config = _tiny(l2_weight=1e-3)  # large enough to matter in 4 steps
  trainer = tnr.NoteRNNTrainer(config, str(tmp_path / "a"))
  model = trainer.model.__class__(config.layer_sizes)
  model(tf.zeros([1, 2], tf.int32))
  for src, dst in zip(trainer.model.weights, model.weights):
    dst.assign(src)
  optimizer = tf.keras.optimizers.Adam(trainer.schedule)
  optimizer.build(model.trainable_variables)

  @tf.function
  def reference_step(tokens, lengths):
    with tf.GradientTape() as tape:
      nll, _ = tnr.sequence_loss(model, tokens, lengths,
                                 config.num_masked_steps, training=True)
      loss = nll + tnr.l2_penalty(model, config.l2_weight)
    grads = tape.gradient(loss, model.trainable_variables)
    grads, _ = tf.clip_by_global_norm(grads, config.clip_norm)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return nll

  for tokens, lengths in _batches(4, config.batch_size, config.window_length):
    assert float(trainer._train_step(tokens, lengths)) == float(  # pylint: disable=protected-access
        reference_step(tokens, lengths))
  for got, want in zip(trainer.model.weights, model.weights):
    np.testing.assert_array_equal(got.numpy(), want.numpy())


_TWO_REPLICAS = textwrap.dedent(r"""
    import json, os, sys
    import numpy as np
    from data_pipeline import keras_setup  # noqa: F401
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_note_rnn_distribute import _batches, _tiny
    from test_note_rnn_training import _synthetic_melodies
    from data_pipeline import tfrecords
    from rl_tuner_tf import note_rnn, train_note_rnn as tnr

    out = {}
    mirrored = tnr.make_strategy("auto", 8)
    out["auto_replicas"] = mirrored.num_replicas_in_sync
    out["auto_kind"] = type(mirrored).__name__
    try:
      tnr.make_strategy("mirrored", 7)
    except ValueError as e:
      out["odd_batch_error"] = str(e)

    # Same initial weights and global batches on one device and on 2 replicas.
    config = _tiny(l2_weight=1e-3)
    one = tnr.NoteRNNTrainer(config, os.path.join(TMP, "one"),
                             tf.distribute.get_strategy())
    two = tnr.NoteRNNTrainer(config, os.path.join(TMP, "two"), mirrored)
    for src, dst in zip(one.model.weights, two.model.weights):
      dst.assign(src.numpy())
    batches = _batches(5, config.batch_size, config.window_length)
    tokens = tf.concat([t for t, _ in batches], 0)
    lengths = tf.concat([l for _, l in batches], 0)
    dist = iter(two.distribute(tf.data.Dataset.from_tensor_slices(
        (tokens, lengths)).batch(config.batch_size, drop_remainder=True)))
    losses = []
    for t, l in batches:
      dt, dl = next(dist)
      losses.append((float(one._train_step(t, l)),
                     float(two._train_step(dt, dl))))
    out["per_replica_rows"] = [int(v.shape[0]) for v in dt.values]
    out["losses"] = losses
    out["max_weight_diff"] = max(
        float(np.abs(a.numpy() - b.numpy()).max())
        for a, b in zip(one.model.weights, two.model.weights))
    out["max_weight"] = max(float(np.abs(a.numpy()).max())
                            for a in one.model.weights)
    out["steps"] = [int(one.step.numpy()), int(two.step.numpy())]

    # The whole train() path on 2 replicas: checkpoints, validation, export.
    data = os.path.join(TMP, "data")
    os.makedirs(data)
    rng = np.random.default_rng(0)
    tfrecords.write_shards(data, "train", _synthetic_melodies(rng, 32), 1)
    tfrecords.write_shards(data, "validation", _synthetic_melodies(rng, 6), 1)
    prov = tnr.train(_tiny(distribute="mirrored"), data,
                     os.path.join(TMP, "run"), os.path.join(TMP, "export"),
                     command="test", log=lambda _: None)
    out["train_steps"] = prov["steps"]
    out["train_replicas"] = prov["replicas"]
    out["export_layers"] = list(note_rnn.load(
        os.path.join(TMP, "export")).layer_sizes)
    print("RESULT " + json.dumps(out))
""")


def test_two_replicas_match_one_device(tmp_path):
  """MirroredStrategy over 2 logical CPUs trains to the one-device weights.

  Tolerance: the replicas sum their halves of the NLL and the gradients
  before the clip, so the float32 sums run in another order than on one
  device; after 5 Adam steps (lr 0.01) the weights differ by rounding only
  (measured 3.7e-8 of weights up to 1.0), far below one step's size (~1e-2). 1e-5
  catches any change of the loss's meaning (e.g. a per-replica mean, or L2
  counted twice), which moves weights by ~1e-3 or more.
  """
  script = f"ROOT = {ROOT!r}\nTMP = {str(tmp_path)!r}\n" + _TWO_REPLICAS
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  out = json.loads(lines[-1][len("RESULT "):])
  assert out["auto_kind"] == "MirroredStrategy" and out["auto_replicas"] == 2
  assert "--batch_size" in out["odd_batch_error"]
  assert out["per_replica_rows"] == [4, 4]
  assert out["steps"] == [5, 5]
  for one, two in out["losses"]:
    assert two == pytest.approx(one, rel=1e-5)
  assert out["max_weight_diff"] < 1e-5, out
  assert out["train_steps"] == 4 and out["train_replicas"] == 2
  assert out["export_layers"] == [16]
