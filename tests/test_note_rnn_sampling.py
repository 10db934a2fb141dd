"""Sampling melodies from the Note RNN (rl_tuner_tf.sample_note_rnn)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf import note_rnn
from rl_tuner_tf import sample_note_rnn as snr

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
  tf.random.set_seed(3)
  return note_rnn.NoteRNN((16, 12))


def test_shapes_range_and_seed(model):
  sampler = snr.NoteRNNSampler(model)
  primers = np.full([5, 1], encoding.TONIC_CLASS)
  a = sampler.sample(primers, 20, temperature=1.0, seed=7)
  assert a.shape == (5, 20) and a.dtype == np.int32
  assert a.min() >= 0 and a.max() < encoding.NUM_CLASSES
  np.testing.assert_array_equal(a, sampler.sample(primers, 20, 1.0, seed=7))
  assert not np.array_equal(a, sampler.sample(primers, 20, 1.0, seed=8))
  assert len({tuple(row) for row in a}) > 1  # rows sampled independently


def test_greedy_matches_manual_steps_after_long_primer(model):
  primer = np.array([[14, 1, 16, 1, 0, 18], [20, 1, 1, 0, 21, 1]], np.int32)
  got = snr.NoteRNNSampler(model).sample(primer, 10, temperature=0.0)
  state = model.zero_state(2)
  for t in range(primer.shape[1]):
    logits, state = model.step(primer[:, t], state)
  expected = []
  for _ in range(10):
    token = tf.argmax(logits, -1, output_type=tf.int32)
    expected.append(token.numpy())
    logits, state = model.step(token, state)
  np.testing.assert_array_equal(got, np.stack(expected, 1))


def test_temperature_sharpens_distribution():
  m = note_rnn.NoteRNN((8,))
  bias = np.zeros(encoding.NUM_CLASSES, np.float32)
  bias[encoding.NO_EVENT] = 2.0  # p(no-event) ~ 0.17 at temperature 1
  m.logits_layer.bias.assign(bias)
  m.logits_layer.kernel.assign(tf.zeros_like(m.logits_layer.kernel))
  sampler = snr.NoteRNNSampler(m)
  primers = np.full([64, 1], encoding.TONIC_CLASS)
  hot = np.mean(sampler.sample(primers, 16, 1.0, seed=1) == encoding.NO_EVENT)
  cold = np.mean(sampler.sample(primers, 16, 0.1, seed=1) == encoding.NO_EVENT)
  assert 0.08 < hot < 0.3 and cold > 0.99


def test_bad_arguments(model):
  sampler = snr.NoteRNNSampler(model)
  with pytest.raises(ValueError, match="temperature"):
    sampler.sample(np.ones([1, 1]), 4, temperature=-1)
  with pytest.raises(ValueError, match="primer classes"):
    sampler.sample(np.full([1, 1], 38), 4)
  with pytest.raises(ValueError, match="--primer_note"):
    snr.note_primer(40)


def test_write_midi_round_trip(tmp_path):
  melody = np.array([14, 1, 1, 1, 16, 1, 0, 1, 18, 1, 1, 1, 14, 1, 1, 1] * 2)
  (path,) = snr.write_midi([melody], str(tmp_path))
  back = snr.midi_primer(path)  # short primers pass (no corpus filters)
  np.testing.assert_array_equal(back[:len(melody) - 1], melody[:-1])
  np.testing.assert_array_equal(snr.midi_primer(path, max_steps=5), melody[:5])


def test_command_line_writes_midi(tmp_path):
  ckpt = str(tmp_path / "ckpt")
  note_rnn.save(note_rnn.NoteRNN((8,)), ckpt)
  out = str(tmp_path / "out")
  result = subprocess.run(
      [sys.executable, "-m", "rl_tuner_tf.sample_note_rnn",
       f"--checkpoint_dir={ckpt}", "--num_melodies=3", "--num_steps=16",
       "--primer_note=67", f"--output_dir={out}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(out)) == [f"note_rnn_{i:02d}.mid" for i in range(3)]
