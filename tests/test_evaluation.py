"""Table 1 statistics on hand-made melodies (answers worked out by hand from
shared/docs/rl_tuner_reference.md section 7), sampling, samples and the
report."""
import csv
import json
import os
import wave

import numpy as np
import pytest

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf import note_rnn
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import report
from rl_tuner_tf.evaluation import samples
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.evaluation import wall_time

# A: C4 then 31 holds. Holds count as repeats of the no-event token: the hold
#    at step t has t-1 holds before it, > 4 from step 6 on -> 26 notes.
A = [14] + [1] * 31
# B: constant C4: step t repeats t times, > 4 from step 5 -> 27 notes;
#    autocorrelation NaN (variance 0).
B = [14] * 32
# C: leap up 14->21, seven small steps, back down 22->14 (a leap after > 6
#    steps: resolved), leap up 14->21 again, 21->28 (doubled), then 26/28.
#    Not in key: G#4 (22) at steps 2, 4, 6, 8 -> 4 notes. Motif windows
#    ending at steps 7..17 hold >= 3 distinct notes -> 11 notes.
C = [14, 21, 22, 23, 22, 23, 22, 23, 22, 14, 21, 28] + [26, 28] * 10
# D: the 8-step figure M four times: every window of 8 holds one whole period
#    (3 distinct notes) -> motif at steps 7..31 = 25 notes; an earlier,
#    non-overlapping copy (in composition[:-7]) exists from step 15 -> 17.
M = [14, 16, 18, 1, 1, 1, 1, 1]
D = M * 4
# E: all rests: note-off with > 1 note-off before it, steps 2..31 -> 30.
E = [0] * 32
# F: C3 D3 alternating: no repeats (the walk stops at the other note).
F = [2, 4] * 16


def test_table1_counts_and_denominators():
  stats = table1.compute_table1(np.array([A, B, C, D, E, F]))
  n, notes = 6, 6 * 32
  assert stats["num_melodies"] == n
  assert stats["notes_excessively_repeated"] == pytest.approx((26 + 27 + 30) / notes)
  assert stats["notes_not_in_key"] == pytest.approx(4 / notes)
  assert stats["melodies_starting_with_tonic"] == pytest.approx(4 / n)  # A-D
  assert stats["notes_in_motif"] == pytest.approx((11 + 25) / notes)
  assert stats["notes_in_repeated_motif"] == pytest.approx(17 / notes)
  assert stats["num_leaps_resolved"] == 1 and stats["num_leaps_doubled"] == 1
  assert stats["leaps_resolved"] == pytest.approx(0.5)
  # Only A has a unique max (its single C4 above the holds) and a unique
  # lowest real note (the same C4).
  assert stats["melodies_with_unique_max_note"] == pytest.approx(1 / n)
  assert stats["melodies_with_unique_min_note"] == pytest.approx(1 / n)


def test_table1_leaps_gradual_versus_doubled():
  # Gradual resolution (14 21 19 16 14) counts as resolved; 14 21 28 doubled.
  gradual = [14, 21, 19, 16, 14] + [1] * 27
  doubled = [14, 21, 28] + [1] * 29
  stats = table1.compute_table1(np.array([gradual, gradual, doubled]))
  assert (stats["num_leaps_resolved"], stats["num_leaps_doubled"]) == (2, 1)
  assert stats["leaps_resolved"] == pytest.approx(2 / 3)
  no_leaps = table1.compute_table1(np.array([A]))
  assert np.isnan(no_leaps["leaps_resolved"])  # 0 / 0: undefined
  assert table1.to_json_ready(no_leaps)["leaps_resolved"] is None


def test_table1_autocorrelation_ignores_nan():
  # A: mean 45/32, d = 31 s for the C4 and -s for each hold (s = 13/32), var
  # 31 s^2; lag k: (-31 s^2 + (31 - k) s^2) / 32 / (31 s^2) = -k / 992.
  # F: d = -1, +1, ...; lag k: (-1)^k (32 - k) / 32. B and E are constant:
  # NaN, left out of the mean.
  stats = table1.compute_table1(np.array([A, B, E, F]))
  for k in (1, 2, 3):
    expected = (-k / 992 + (-1) ** k * (32 - k) / 32) / 2
    assert stats[f"autocorrelation_lag{k}"] == pytest.approx(expected, abs=1e-6)
  constant = table1.compute_table1(np.array([B, E]))
  assert np.isnan(constant["autocorrelation_lag1"])


def test_mean_r_mt_and_log_p():
  # All rests: tonic +3 at beats 30 and 31 (> F+1 = 29, note-off accepted);
  # repetition -100 at steps 2..31; nothing else -> (6 - 3000) / 32.
  stats = table1.compute_table1(np.array([E]), log_p=np.full((1, 32), -0.5))
  assert stats["mean_r_mt"] == pytest.approx(-2994 / 32)
  assert stats["mean_rule_reward"]["repetition"] == pytest.approx(-3000 / 32)
  assert stats["mean_log_p"] == pytest.approx(-0.5)
  assert table1.mean_music_theory_reward(np.array([E])) == pytest.approx(-2994 / 32)


def test_table1_chunking_is_invisible_and_bad_input_fails():
  melodies = np.array([A, B, C, D, E, F])
  whole = table1.compute_table1(melodies)
  chunked = table1.compute_table1(melodies, chunk_size=4)
  for key, value in whole.items():
    if isinstance(value, float):
      assert chunked[key] == pytest.approx(value, nan_ok=True), key
  with pytest.raises(ValueError, match="tokens must lie"):
    table1.compute_table1(np.array([[38] * 32]))
  with pytest.raises(ValueError, match=r"\[N, T\]"):
    table1.compute_table1(np.array(A))


def test_markdown_table_has_paper_beside_ours():
  stats = table1.compute_table1(np.array([A, C]))
  text = table1.markdown_table({"q": stats, "note_rnn": stats, "rl_only": stats})
  header = text.splitlines()[0]
  assert header.index("note_rnn (ours)") < header.index("q (ours)")
  assert "q (paper)" in header and "rl_only (paper)" not in header
  assert "| 63.3 % |" in text  # the paper's Note RNN repetition
  assert "p(a\\|s)" in text  # pipes escaped inside cells


# -- sampling ---------------------------------------------------------------------
def _biased_rnn(favourite, strength):
  """A NoteRNN whose logits are `strength` on one class, 0 elsewhere."""
  model = note_rnn.NoteRNN()
  kernel, bias = model.logits_layer.get_weights()
  bias = np.zeros_like(bias)
  bias[favourite] = strength
  model.logits_layer.set_weights([np.zeros_like(kernel), bias])
  return model


def test_generate_follows_each_policy_and_records_log_p():
  reward_rnn = _biased_rnn(14, 30.0)
  q_network = _biased_rnn(2, 100.0)
  tokens, log_p = generate.generate_melodies("note_rnn", None, reward_rnn, 5, 0,
                                             batch_size=3)
  assert tokens.shape == (5, 32) and tokens.dtype == np.int32
  assert log_p.shape == (5, 32) and log_p.dtype == np.float32
  assert (tokens == 14).all()
  np.testing.assert_allclose(log_p, 0.0, atol=1e-6)
  # Q: softmax(Q) picks class 2; its log p under the Reward RNN is
  # 0 - logsumexp(30, 0 x 37) = -(30 + log(1 + 37 e^-30)) ~= -30.
  tokens, log_p = generate.generate_melodies("q", q_network, reward_rnn, 4, 0)
  assert (tokens == 2).all()
  np.testing.assert_allclose(log_p, -30.0, atol=1e-4)
  # G: log p + G = 0 + 100 on class 2 vs 30 + 0 on class 14 (logits shift):
  # class 2 still wins.
  tokens, _ = generate.generate_melodies("g", q_network, reward_rnn, 4, 0)
  assert (tokens == 2).all()
  with pytest.raises(ValueError, match="unknown model kind"):
    generate.generate_melodies("dqn", q_network, reward_rnn, 4, 0)
  with pytest.raises(ValueError, match="num_melodies"):
    generate.generate_melodies("q", q_network, reward_rnn, 0, 0)


def test_generate_is_seeded():
  tf.random.set_seed(3)
  model = note_rnn.NoteRNN()
  t1, l1 = generate.generate_melodies("psi", model, model, 64, seed=7)
  t2, l2 = generate.generate_melodies("psi", model, model, 64, seed=7)
  t3, _ = generate.generate_melodies("psi", model, model, 64, seed=8)
  np.testing.assert_array_equal(t1, t2)
  np.testing.assert_array_equal(l1, l2)
  assert (t1 != t3).any()
  assert t1.min() >= 0 and t1.max() < 38 and (l1 <= 0).all()


# -- samples, Figure 2, report --------------------------------------------------------
def test_samples_midi_wav_png(tmp_path):
  import note_seq  # pylint: disable=g-import-not-at-top
  melody = [14, 1, 1, 1, 18, 0, 21, 1] + [1] * 24
  written = samples.write_samples(np.array([melody, E]), str(tmp_path), 2)
  assert len(written) == 2
  sequence = note_seq.midi_file_to_note_sequence(written[0]["midi"])
  step = 60.0 / 80.0 / 4  # 16th note at 80 qpm
  got = [(n.pitch, round(n.start_time / step), round(n.end_time / step))
         for n in sequence.notes]
  # C4 held 4 steps, E4 one step then a rest, G4 to the end of the melody.
  assert got == [(60, 0, 4), (64, 4, 5), (67, 6, 32)]
  with wave.open(written[0]["wav"]) as f:
    assert f.getnchannels() == 1 and f.getframerate() == samples.SAMPLE_RATE
    assert f.getnframes() >= int(32 * step * samples.SAMPLE_RATE) - 1
  assert os.path.getsize(written[1]["wav"]) > 44  # all rests: silence
  assert open(written[0]["png"], "rb").read(4) == b"\x89PNG"


def _write_events(path, events):
  """A TensorBoard event file of (wall_time, step, tag or None) events."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for wall, step, tag in events:
      event = tf.compat.v1.Event(wall_time=wall, step=step)
      if tag is None:
        event.file_version = "brain.Event:2"
      else:
        event.summary.value.add(tag=tag, simple_value=-1.0)
      writer.write(event.SerializeToString())


def test_wall_time_sums_sessions_and_figure2_gets_wall_time_plots(tmp_path):
  run = tmp_path / "run" / "q"
  (run / "tensorboard").mkdir(parents=True)
  tag = wall_time.FIGURE2_TAG
  # Session 1: starts at 1000 s, points at steps 0 and 100, ends at 1060.
  _write_events(run / "tensorboard" / "events.out.tfevents.1000.h.1.0.v2",
                [(1000.0, 0, None), (1010.0, 0, tag), (1050.0, 100, tag),
                 (1060.0, 120, "loss")])
  # Stopped for 940 s; session 2 redoes step 100 and reaches 200.
  _write_events(run / "tensorboard" / "events.out.tfevents.2000.h.2.0.v2",
                [(2000.0, 0, None), (2030.0, 100, tag), (2060.0, 200, tag)])
  assert wall_time.seconds_at_steps(str(run)) == {0: 10.0, 100: 90.0,
                                                  200: 120.0}
  assert wall_time.seconds_at_steps(str(tmp_path)) == {}
  with open(run / "figure2.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["step", "mean_log_p", "mean_r_mt"])
    for step in (0, 100, 200):
      w.writerow([step, -1.0 - step / 1e3, step / 1e2])
  (tmp_path / "run" / "g").mkdir()  # no events: on the notes plot only
  (tmp_path / "run" / "g" / "figure2.csv").write_text(
      "step,mean_log_p,mean_r_mt\n0,-1,0\n100,-2,1\n")
  curves = report.figure2_curves(str(tmp_path / "run"))
  assert curves["q"][0]["seconds"] == [10.0, 90.0, 120.0]
  assert curves["g"][0]["seconds"] == [None, None]
  pngs = report.plot_figure2(str(tmp_path / "run"))
  assert [os.path.basename(p) for p in pngs] == [
      "figure2_mean_log_p.png", "figure2_mean_log_p_wall_time.png",
      "figure2_mean_r_mt.png", "figure2_mean_r_mt_wall_time.png"]
  assert all(open(p, "rb").read(4) == b"\x89PNG" for p in pngs)


def test_figure2_and_report(tmp_path):
  run_dir = tmp_path / "run"
  for algorithm, offset in (("q", 0.0), ("rl_only", -1.0)):
    (run_dir / algorithm).mkdir(parents=True)
    with open(run_dir / algorithm / "figure2.csv", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["step", "mean_log_p", "mean_r_mt"])
      for step in (0, 1000, 2000):
        w.writerow([step, -1.0 + offset - step / 1e4, step / 1e3])
  pngs = report.plot_figure2(str(run_dir))
  assert [os.path.basename(p) for p in pngs] == [
      "figure2_mean_log_p.png", "figure2_mean_r_mt.png"]
  eval_dir = run_dir / "evaluation" / "q"
  samples.write_samples(np.array([D]), str(eval_dir / "samples"), 1, prefix="q")
  stats = table1.compute_table1(np.array([A, D]))
  with open(eval_dir / "table1.json", "w") as f:
    json.dump(table1.to_json_ready(stats), f)
  path = report.write_report(str(run_dir))
  page = open(path).read()
  assert page.count("data:image/png;base64,") == 3  # two figures, one roll
  assert page.count("<audio controls src='data:audio/wav;base64,") == 1
  assert "q (paper)" in page and "Notes in motif" in page
  assert "91.1 %" in page  # the paper's Q leaps resolved beside ours
  assert "listening study" not in page
  summary = run_dir / report.LISTENING_SUMMARY
  summary.parent.mkdir(parents=True)
  summary.write_text("<html></html>")
  page = open(report.write_report(str(run_dir))).read()
  assert "href='listening_study/results/summary.html'" in page
  with pytest.raises(FileNotFoundError):
    report.write_report(str(tmp_path / "missing"))
  with open(run_dir / "q" / "figure2.csv", "w") as f:
    f.write("step,mean_log_p\n0,1\n")
  with pytest.raises(ValueError, match="mean_r_mt"):
    report.plot_figure2(str(run_dir))
