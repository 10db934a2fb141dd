"""Note RNN model, loss masking, checkpoints and a short training run."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import encoding
from data_pipeline import tfrecords
from rl_tuner_tf import note_rnn
from rl_tuner_tf import train_note_rnn as tnr


def _synthetic_melodies(rng, count):
  """Learnable melodies: a repeated 8-step motif (note, hold, note, hold ...)."""
  melodies = []
  for _ in range(count):
    start = int(rng.integers(10, 20))
    motif = [start, 1, start + 2, 1, start + 4, 1, 0, 1]
    reps = int(rng.integers(3, 9))
    melodies.append(np.array(motif * reps, np.int64))
  return melodies


@pytest.fixture(scope="module")
def tfrecord_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("tfrecords"))
  rng = np.random.default_rng(0)
  tfrecords.write_shards(directory, "train", _synthetic_melodies(rng, 64), 1)
  tfrecords.write_shards(directory, "validation",
                         _synthetic_melodies(rng, 12), 1)
  with open(os.path.join(directory, "manifest.json"), "w") as f:
    json.dump({"melodies": 76, "splits": {"train": {"melodies": 64},
                                          "validation": {"melodies": 12}}}, f)
  return directory


def _tiny_config(**overrides):
  values = dict(layer_sizes=(16,), batch_size=8, num_steps=60,
                learning_rate=0.01, window_length=16, log_every=20,
                checkpoint_every=20, eval_every=1000, eval_batch_size=8)
  values.update(overrides)
  return tnr.TrainConfig(**values)


# -- model ---------------------------------------------------------------------
@pytest.mark.parametrize("layer_sizes", [(100,), (64, 64)])
def test_shapes(layer_sizes):
  model = note_rnn.NoteRNN(layer_sizes)
  tokens = tf.zeros([3, 7], tf.int32)
  logits, state = model(tokens)
  assert logits.shape == (3, 7, encoding.NUM_CLASSES)
  assert [tuple(s.shape) for s in state] == [
      (3, u) for u in layer_sizes for _ in range(2)]
  step_logits, new_state = model.step(tf.zeros([3], tf.int32),
                                      model.zero_state(3))
  assert step_logits.shape == (3, encoding.NUM_CLASSES)
  assert len(new_state) == 2 * len(layer_sizes)


def test_step_matches_sequence_call():
  model = note_rnn.NoteRNN((12, 10))
  tokens = tf.constant(np.random.default_rng(1).integers(0, 38, [2, 9]),
                       tf.int32)
  seq_logits, seq_state = model(tokens)
  state = model.zero_state(2)
  for t in range(9):
    logits, state = model.step(tokens[:, t], state)
    np.testing.assert_allclose(logits, seq_logits[:, t], atol=1e-5)
  for a, b in zip(state, seq_state):
    np.testing.assert_allclose(a, b, atol=1e-5)


# -- loss masking --------------------------------------------------------------
def test_loss_mask_skips_first_steps_and_padding():
  mask = tnr.loss_mask(tf.constant([12, 5]), 11, 8).numpy()
  # Prediction j is scored against token j+1: needs j >= 8 and j + 1 < length.
  np.testing.assert_array_equal(mask[0], [0] * 8 + [1, 1, 1])
  np.testing.assert_array_equal(mask[1], [0] * 11)


def test_masked_targets_do_not_change_loss():
  rng = np.random.default_rng(2)
  logits = tf.constant(rng.normal(size=[4, 20, 38]), tf.float32)
  targets = rng.integers(0, 38, [4, 20])
  lengths = tf.constant([21, 21, 15, 21])
  mask = tnr.loss_mask(lengths, 20, 8)
  base = [float(x) for x in tnr.masked_sums(logits, targets, mask)]
  changed = targets.copy()
  changed[:, :8] = rng.integers(0, 38, [4, 8])  # the masked first 8 steps
  changed[2, 14:] = rng.integers(0, 38, 6)  # padding of the short melody
  after = [float(x) for x in tnr.masked_sums(logits, changed, mask)]
  np.testing.assert_allclose(after, base, rtol=1e-6)
  # ... while a scored target does change it.
  scored = targets.copy()
  scored[0, 10] = (scored[0, 10] + 1) % 38
  moved = float(tnr.masked_sums(logits, scored, mask)[0])
  assert moved != pytest.approx(base[0])
  assert float(tf.reduce_sum(mask)) == 3 * 12 + (14 - 8)


# -- checkpoints ---------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
  model = note_rnn.NoteRNN((20,))
  tokens = tf.constant([[14, 1, 16, 1, 0, 18]], tf.int32)
  expected, _ = model(tokens)
  note_rnn.save(model, str(tmp_path))
  restored = note_rnn.load(str(tmp_path))
  assert restored.layer_sizes == (20,)
  got, _ = restored(tokens)
  np.testing.assert_allclose(got, expected, atol=1e-6)


def test_loading_other_architecture_names_shapes(tmp_path):
  note_rnn.save(note_rnn.NoteRNN((100,)), str(tmp_path))
  with pytest.raises(note_rnn.CheckpointMismatchError) as info:
    note_rnn.load(str(tmp_path), layer_sizes=(64, 64))
  message = str(info.value)
  assert "[100]" in message and "[64, 64]" in message
  assert "(38, 400)" in message and "(38, 256)" in message  # found / expected


# -- flags ---------------------------------------------------------------------
@pytest.mark.parametrize("field,value,flag", [
    ("batch_size", 0, "--batch_size"),
    ("learning_rate", -1.0, "--learning_rate"),
    ("decay_rate", 1.5, "--decay_rate"),
    ("num_masked_steps", 40, "--num_masked_steps"),
    ("layer_sizes", (0,), "--layer_sizes"),
])
def test_bad_config_names_flag(field, value, flag):
  with pytest.raises(ValueError, match=flag):
    _tiny_config(**{field: value})


def test_parse_layer_sizes():
  assert tnr.parse_layer_sizes("64,64") == (64, 64)
  with pytest.raises(ValueError, match="--layer_sizes"):
    tnr.parse_layer_sizes("64,x")


# -- training ------------------------------------------------------------------
def test_short_training_lowers_loss_and_exports(tfrecord_dir, tmp_path):
  config = _tiny_config()
  trainer = tnr.NoteRNNTrainer(config, str(tmp_path / "probe"))
  before = trainer.evaluate(tnr.eval_dataset(tfrecord_dir, 8))
  out = str(tmp_path / "export")
  provenance = tnr.train(config, tfrecord_dir, str(tmp_path / "run"), out,
                         command="test", log=lambda _: None)
  after = provenance["validation"]
  assert provenance["steps"] == 60
  assert after["log_perplexity"] < before["log_perplexity"] - 0.5
  assert after["accuracy"] > before["accuracy"]
  with open(os.path.join(out, tnr.PROVENANCE_FILENAME)) as f:
    assert json.load(f)["corpus"]["splits"]["train"]["melodies"] == 64
  model = note_rnn.load(out)
  assert model.layer_sizes == (16,)


def test_resume_continues_from_saved_step(tfrecord_dir, tmp_path):
  run_dir = str(tmp_path / "run")
  tnr.train(_tiny_config(num_steps=20), tfrecord_dir, run_dir,
            log=lambda _: None)
  messages = []
  provenance = tnr.train(_tiny_config(num_steps=40), tfrecord_dir, run_dir,
                         log=messages.append)
  assert any("Resumed" in m and "at step 20" in m for m in messages)
  assert any("steps 20 -> 40" in m for m in messages)
  assert provenance["steps"] == 40
  latest = tf.train.latest_checkpoint(os.path.join(run_dir, "ckpt"))
  assert latest.endswith("-40")


def test_resume_with_other_layer_sizes_fails(tfrecord_dir, tmp_path):
  run_dir = str(tmp_path / "run")
  tnr.train(_tiny_config(num_steps=2), tfrecord_dir, run_dir,
            log=lambda _: None)
  with pytest.raises(note_rnn.CheckpointMismatchError, match="layer sizes"):
    tnr.train(_tiny_config(num_steps=40, layer_sizes=(8, 8)), tfrecord_dir,
              run_dir, log=lambda _: None)


def test_nonfinite_loss_stops_with_clear_error(tfrecord_dir, tmp_path):
  config = _tiny_config(num_steps=20, learning_rate=1e30, clip_norm=1e30)
  with pytest.raises(tnr.NonFiniteLossError, match="learning_rate"):
    tnr.train(config, tfrecord_dir, str(tmp_path / "run"),
              str(tmp_path / "out"), log=lambda _: None)
  assert not os.path.exists(str(tmp_path / "out"))


def test_command_line_flags_fail_fast_naming_flag():
  from absl import flags
  fv = flags.FlagValues()
  tnr.define_flags(fv)
  fv(["train_note_rnn", "--layer_sizes=64,64", "--learning_rate=0.01"])
  config = tnr.config_from_flags(fv)
  assert config.layer_sizes == (64, 64) and config.learning_rate == 0.01
  assert config.batch_size == 128 and config.num_steps == 30000
  fv = flags.FlagValues()
  tnr.define_flags(fv)
  fv(["train_note_rnn", "--window_length=0"])
  with pytest.raises(ValueError, match="--window_length"):
    tnr.config_from_flags(fv)


def test_shipped_checkpoint_loads_with_provenance():
  model = note_rnn.load()  # the default: rl_tuner_tf/checkpoints/note_rnn
  assert model.layer_sizes == note_rnn.DEFAULT_LAYER_SIZES
  with open(os.path.join(note_rnn.SHIPPED_CHECKPOINT_DIR,
                         tnr.PROVENANCE_FILENAME)) as f:
    provenance = json.load(f)
  assert provenance["steps"] > 0 and provenance["command"]
  assert provenance["corpus"]["splits"]["validation"]["melodies"] > 0
  validation = provenance["validation"]
  assert 0 < validation["accuracy"] < 1 and validation["log_perplexity"] > 0
  # The shipped weights are trained: a C-major scale in quarter notes is far
  # likelier than under a uniform model (log 38 = 3.64 nats per step).
  scale = [14, 1, 1, 1, 16, 1, 1, 1, 18, 1, 1, 1, 19, 1, 1, 1, 21, 1, 1, 1]
  tokens = tf.constant([scale], tf.int32)
  nll, _ = tnr.sequence_loss(model, tokens, tf.constant([len(scale)]), 8)
  assert float(nll) < 1.5
