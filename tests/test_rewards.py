"""Music-theory rules on hand-made melodies; expected values worked out by
hand from shared/docs/rl_tuner_reference.md section 6 (written below)."""
import numpy as np
import pytest

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf import rewards

T = 32
PAD = 1  # steps after a hand-made prefix are never looked at


def replay(*melodies, weights=None):
  """Per-step, per-rule values [N, 32] of the prefixes padded to 32 steps."""
  tokens = np.full((len(melodies), T), PAD, np.int32)
  for i, m in enumerate(melodies):
    tokens[i, :len(m)] = m
  result = rewards.replay_melodies(tokens, weights)
  per_rule = {k: v.numpy() for k, v in result.per_rule.items()}
  return per_rule, result.total.numpy(), {k: v.numpy() for k, v in result.events.items()}


def at(values, i, step):
  return float(values[i, step])


# -- interface -------------------------------------------------------------------
def test_initial_state_and_step_interface():
  state = rewards.initial_state(3, num_notes=32)
  assert state.notes.shape == (3, 32) and state.notes.dtype == tf.int32
  assert int(state.beat) == 0
  np.testing.assert_array_equal(state.leap_direction, [0, 0, 0])
  np.testing.assert_array_equal(state.steps_since_leap, [0, 0, 0])
  total, per_rule, state = rewards.music_theory_reward(
      state, tf.constant([14, 15, 2]))
  assert set(rewards.BUILTIN_RULES) <= set(per_rule)
  assert set(rewards.DEFAULT_WEIGHTS) == set(rewards.BUILTIN_RULES)
  # beat 0: tonic +3 for C4 (class 14); C#4 is out of key (-1); C3 gets nothing.
  np.testing.assert_allclose(total, [3.0, -1.0, 0.0])
  assert int(state.beat) == 1
  np.testing.assert_array_equal(state.notes[:, 0], [14, 15, 2])


def test_loop_in_tf_function():
  @tf.function
  def compose(melody):
    state = rewards.initial_state(2, num_notes=8)
    total = tf.zeros([2])
    for t in tf.range(8):
      r, _, state = rewards.music_theory_reward(state, melody[:, t])
      total += r
    return total, state

  melody = tf.constant([[14, 1, 1, 1, 1, 1, 1, 1],
                        [14, 21, 28, 1, 1, 1, 1, 1]])
  total, state = compose(melody)
  assert int(state.beat) == 8
  np.testing.assert_array_equal(state.notes, melody)
  # Second melody: 14 -> 21 leaps up, 21 -> 28 leaps up again: doubled,
  # the pending leap stays (direction up, from 14), steps reset then +5 holds.
  np.testing.assert_array_equal(state.leap_direction, [0, 1])
  np.testing.assert_array_equal(state.leapt_from, [-1, 14])
  np.testing.assert_array_equal(state.steps_since_leap, [7, 5])
  assert np.all(np.isfinite(total))


# -- rule 1: key ------------------------------------------------------------------
def test_key():
  # C4 in key; C#4 (15) and C#3 (3) out; note-off, no-event in; B5 (37) in;
  # A#5 (36) out.
  per_rule, _, events = replay([14, 15, 3, 1, 0, 37, 36])
  np.testing.assert_array_equal(per_rule["key"][0, :7],
                                [0, -1, -1, 0, 0, 0, -1])
  np.testing.assert_array_equal(events["not_in_key"][0, :7],
                                [0, 1, 1, 0, 0, 0, 1])


# -- rule 2: tonic ----------------------------------------------------------------
def test_tonic():
  a = [14] + [1] * 27 + [14, 1, 0, 1]   # tonic at 0, F=28; hold at 29; 30, 31
  b = [2, 14] + [1] * 26 + [2, 0, 14, 0]  # C3 at 0 / F: no; rest at F+1: no
  per_rule, _, events = replay(a, b)
  tonic = per_rule["tonic"]
  expected_a = np.zeros(T)
  expected_a[[0, 28, 29, 30, 31]] = 3.0
  np.testing.assert_array_equal(tonic[0], expected_a)
  expected_b = np.zeros(T)
  expected_b[31] = 3.0  # beats > F+1 accept note-off
  np.testing.assert_array_equal(tonic[1], expected_b)
  # Holds at beats 2..27 earn nothing (only at F+1 and after).
  assert tonic[0, 5] == 0.0
  assert events["starts_with_tonic"][0, 0] and not events["starts_with_tonic"][1].any()


# -- rule 3: excessive repetition --------------------------------------------------------
def test_repetition_plain_holds_rests_and_note_off():
  mel = [
      [14] * 6,                     # 5th C4 repeats 4: ok; 6th repeats 5: -100
      [14, 1] * 8,                  # holds seen: 7th C4 (6 before) ok, 8th -100
      [14, 0] * 8,                  # rests seen: same thresholds
      [14, 1, 1, 1, 1, 1, 1],       # holding: 6th no-event repeats 5 -> -100
      [14, 0, 0, 0],                # note-off with 2 before -> -100
      [0, 14, 0, 0],                # note-off after one note-off: ok
      [14, 14, 14, 14, 1, 14],      # 4 C4 + a hold: count 4, holds: ok
  ]
  per_rule, _, events = replay(*mel)
  rep = per_rule["repetition"]
  np.testing.assert_array_equal(rep[0, :6], [0, 0, 0, 0, 0, -100])
  # [14,1]*8: C4 at steps 0,2,..,14; at step 12 six C4 before -> 0, step 14
  # seven -> -100. The holds themselves stop at the C4 before them (count 0).
  expected = np.zeros(16)
  expected[14] = -100
  np.testing.assert_array_equal(rep[1, :16], expected)
  np.testing.assert_array_equal(rep[2, :16], expected)
  np.testing.assert_array_equal(rep[3, :7], [0, 0, 0, 0, 0, 0, -100])
  np.testing.assert_array_equal(rep[4, :4], [0, 0, 0, -100])
  np.testing.assert_array_equal(rep[5, :4], [0, 0, 0, 0])
  np.testing.assert_array_equal(rep[6, :6], [0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(events["repeated"][0, :6], [0, 0, 0, 0, 0, 1])


# -- rule 4: autocorrelation ------------------------------------------------------
def test_autocorrelation():
  per_rule, _, _ = replay([14, 1], [14, 14, 14, 14], [2, 4, 2, 4])
  ac = per_rule["autocorrelation"]
  # [14, 1]: d = [6.5, -6.5], var 42.25; lag 1: -42.25/2/42.25 = -0.5 -> 1.5.
  assert at(ac, 0, 1) == pytest.approx(-1.5, abs=1e-5)
  # One note / constant melodies: variance 0 -> NaN -> skipped.
  np.testing.assert_array_equal(ac[1, :4], [0, 0, 0, 0])
  assert at(ac, 0, 0) == 0.0
  # [2, 4, 2]: mean 8/3, d = [-2/3, 4/3, -2/3], var 8/9;
  # lag 1: (-16/9)/3/(8/9) = -2/3; lag 2: (4/9)/3/(8/9) = 1/6 > 0.15.
  # cost 3 (2/3 + 1/6) = 2.5.
  assert at(ac, 2, 2) == pytest.approx(-2.5, abs=1e-5)
  # [2, 4, 2, 4]: d = [-1, 1, -1, 1], var 1; lags -0.75, 0.5, -0.25 -> 4.5.
  assert at(ac, 2, 3) == pytest.approx(-4.5, abs=1e-5)


def test_autocorrelation_below_threshold_is_free():
  # [2, 3, 4, 5, 6, 7, 8, 9] (a ramp): lag-3 coefficient, by hand:
  # d = -3.5..3.5, var = 5.25, sum d[3:]d[:5] = (-.5)(-3.5)+(.5)(-2.5)+(1.5)
  # (-1.5)+(2.5)(-.5)+(3.5)(.5) = 1.75-1.25-2.25-1.25+1.75 = -1.25
  # -> -1.25/8/5.25 = -0.0298 (free); lag 1: sum = 12.25+... see below.
  from rl_tuner_tf.rewards import autocorrelation
  coeffs = autocorrelation.autocorrelation_coefficients(
      tf.constant([[2, 3, 4, 5, 6, 7, 8, 9]]), 8).numpy()[0]
  # lag 1: sum d[1:]d[:-1] = sum_{k} (k-3.5)(k-4.5) for k=1..7 = 26.25
  # -> 26.25/8/5.25 = 0.625; lag 2: sum (k-3.5)(k-5.5), k=2..7 = 11.5
  # -> 11.5/8/5.25 = 0.27381.
  np.testing.assert_allclose(coeffs, [0.625, 0.2738095, -0.0297619], atol=1e-6)
  constant = autocorrelation.autocorrelation_coefficients(
      tf.constant([[5, 5, 5, 5]]), 4).numpy()
  assert np.isnan(constant).all()


# -- rule 5, 6: motif, repeated motif ---------------------------------------------------
def test_motif_and_window():
  mel = [
      [14, 1, 16, 1, 18, 1, 1, 1],      # 3 distinct -> 3
      [14, 16, 18, 19, 21, 1, 1, 1],    # 5 distinct -> 3 + 0.3 * 2 = 3.6
      [14, 14, 16, 16, 1, 1, 0, 0],     # 2 distinct -> 0
      [14, 16, 18, 1, 1, 1, 1, 1, 1],   # window slides past the 14 at step 8
  ]
  per_rule, _, events = replay(*mel)
  motif = per_rule["motif"]
  np.testing.assert_array_equal(motif[0, :7], np.zeros(7))  # < 8 steps
  assert at(motif, 0, 7) == pytest.approx(3.0)
  assert at(motif, 1, 7) == pytest.approx(3.6)
  assert at(motif, 2, 7) == 0.0
  assert at(motif, 3, 7) == pytest.approx(3.0)
  assert at(motif, 3, 8) == 0.0  # last 8: [16, 18, 1, ...]: 2 distinct
  np.testing.assert_array_equal(events["in_motif"][3, 6:9], [0, 1, 0])


def test_repeated_motif():
  m1 = [14, 16, 18, 1, 1, 1, 1, 1]
  m2 = [14, 16, 18, 19, 21, 1, 0, 1]
  period3 = [14, 16, 18] * 6
  variant = m2 + m2[:6] + [1, 1]  # last token differs (hold vs rest)
  per_rule, _, events = replay(m1 + m1, m2 + m2, period3, variant)
  rm = per_rule["repeated_motif"]
  # m1 m1: at step 15 the motif m1 also fills composition[:8] -> 4 + 0.
  expected = np.zeros(16)
  expected[15] = 4.0
  np.testing.assert_array_equal(rm[0, :16], expected)
  assert at(per_rule["motif"], 0, 15) == pytest.approx(3.0)
  # m2 m2: 5 distinct -> 4 + (5 - 3) = 6.
  expected[15] = 6.0
  np.testing.assert_array_equal(rm[1, :16], expected)
  # Period 3: the window first has a non-overlapping earlier copy at step 16
  # (window = steps 9..16 = [14,16,18,14,16,18,14,16] = steps 0..7, and
  # composition[:-7] = steps 0..8 holds it); earlier windows only overlap.
  expected = np.zeros(18)
  expected[16] = 4.0
  np.testing.assert_array_equal(rm[2, :17], expected[:17])
  # exact tokens: a rest where a hold was is a different 8-step sequence.
  assert not rm[3, :16].any()
  np.testing.assert_array_equal(events["in_repeated_motif"][0, 14:16], [0, 1])


# -- rule 7: preferred intervals ---------------------------------------------------
PAIRS = [  # (composition, new note, value x5 by hand)
    ([14], 1, 5 * 0.3),        # hold after C4
    ([21], 1, 5 * 0.3),        # hold after G4
    ([18], 1, 5 * 0.075),      # hold after E4
    ([14], 0, 5 * 0.15),       # rest after C
    ([18], 0, 5 * 0.05),       # rest after E
    ([14, 1, 0, 1], 1, 5 * 0.3),  # walks back over 0/1 to C4
    ([0, 1], 14, 0.0),         # no previous real note
    ([14], 21, 5 * 0.1),       # fifth from C
    ([21], 28, 5 * 0.1),       # fifth from G
    ([21], 14, 5 * 0.1),       # fifth down from G
    ([16], 23, 5 * 0.02),      # fifth from D
    ([14], 18, 5 * 0.15),      # major third from C
    ([18], 22, 5 * 0.15),      # major third from E
    ([16], 20, 5 * 0.09),      # major third from D
    ([14], 25, 5 * -0.3),      # major seventh
    ([14], 27, 5 * -1.0),      # beyond an octave
    ([14], 16, 5 * 0.08),      # second
    ([14], 19, 5 * 0.07),      # fourth
    ([14], 23, 5 * 0.05),      # sixth
    ([14], 14, 0.0), ([14], 15, 0.0), ([14], 17, 0.0), ([14], 20, 0.0),
    ([14], 22, 0.0), ([14], 24, 0.0), ([14], 26, 0.0),  # unison .. octave
    ([14, 1, 1, 0], 21, 5 * 0.1),  # fifth from C across holds and a rest
]


def test_preferred_intervals():
  melodies = [prefix + [note] for prefix, note, _ in PAIRS]
  per_rule, _, _ = replay(*melodies)
  got = [at(per_rule["preferred_intervals"], i, len(m) - 1)
         for i, m in enumerate(melodies)]
  np.testing.assert_allclose(got, [v for _, _, v in PAIRS], atol=1e-6)
  assert at(per_rule["preferred_intervals"], 0, 0) == 0.0  # empty composition


# -- rule 8: leap resolution ---------------------------------------------------------
def test_leap_resolution():
  mel = [
      [14, 21, 28],                                # doubled at step 2
      [14, 21, 22, 23, 22, 23, 22, 23, 22, 14],    # 7 steps, back down: +5
      [14, 21, 22, 23, 22, 23, 22, 23, 14, 21],    # 6 steps: 0, clears
      [14, 21, 19, 16, 14],                        # gradual: 14 <= 14 -> +5
      [21, 14, 16, 19, 21],                        # descending, gradual
      [14, 21, 1, 1, 1, 1, 1, 1, 1, 14],           # holds count: 7 -> +5
      [14, 21, 1, 1, 1, 1, 1, 1, 14],              # 6 holds -> 0
      [14, 0, 21, 1, 28],                          # leaps measured over 0/1
  ]
  per_rule, _, events = replay(*mel)
  leap = per_rule["leap_resolution"]

  def row(i):
    return leap[i, :len(mel[i])].tolist()

  assert row(0) == [0, 0, -5]
  assert row(1) == [0] * 9 + [5]
  assert row(2) == [0] * 10  # step 9 leaps up again: a new pending leap
  assert row(3) == [0, 0, 0, 0, 5]
  assert row(4) == [0, 0, 0, 0, 5]
  assert row(5) == [0] * 9 + [5]
  assert row(6) == [0] * 9
  assert row(7) == [0, 0, 0, 0, -5]
  assert events["leap_resolved"][1, 9] and events["leap_doubled"][0, 2]


def test_leap_state_after_doubled_and_clear():
  per_rule, _, _ = replay([14, 21, 28, 27, 26, 25, 24, 23, 22, 21, 20, 14])
  # 14->21 up (from 14); 21->28 doubled (still from 14); then half steps
  # down: none <= 14 until the 14 at step 11 (interval 6 from 20: no leap)
  # -> gradual resolution +5.
  np.testing.assert_array_equal(per_rule["leap_resolution"][0, :12],
                                [0, 0, -5] + [0] * 8 + [5])


# -- rule 9: unique extremes ----------------------------------------------------------
def test_unique_extremes():
  mel = [
      [6] + [14, 1] * 15 + [30],   # max 30 once, min real 6 once: 3 + 3
      [14, 1] * 16,                # neither
      [0] * 31 + [1],              # max over all classes: no-event once: 3
      [14] * 30 + [2, 2],          # lowest real twice: 0
      [14] * 31 + [2],             # lowest real once: 3
  ]
  per_rule, _, _ = replay(*mel)
  ue = per_rule["unique_extremes"]
  np.testing.assert_array_equal(ue[:, 31], [6, 0, 3, 0, 3])
  assert not ue[:, :31].any()  # only on the note completing the melody


# -- user rules and weights ----------------------------------------------------------
def test_registered_reward_and_weights():
  def likes_c4(state, action):
    del state
    return tf.where(tf.equal(action, 14), 2.0, 0.0)

  rewards.register_reward("likes_c4", likes_c4)
  try:
    with pytest.raises(ValueError, match="already registered"):
      rewards.register_reward("likes_c4", likes_c4)
    with pytest.raises(ValueError, match="already registered"):
      rewards.register_reward("key", likes_c4)
    state = rewards.initial_state(2, num_notes=8)
    action = tf.constant([14, 15])
    total, per_rule, _ = rewards.music_theory_reward(state, action)
    np.testing.assert_allclose(per_rule["likes_c4"], [2.0, 0.0])
    # beat 0: C4 = tonic 3 + likes_c4 2; C#4 = key -1.
    np.testing.assert_allclose(total, [5.0, -1.0])
    total, per_rule, _ = rewards.music_theory_reward(
        state, action, weights={"likes_c4": 0.5, "key": 10.0, "tonic": 0.0})
    np.testing.assert_allclose(total, [1.0, -10.0])
    np.testing.assert_allclose(per_rule["tonic"], [3.0, 0.0])  # unweighted
  finally:
    rewards.unregister_reward("likes_c4")
  assert "likes_c4" not in rewards.rule_names()
  with pytest.raises(ValueError, match="unknown reward rule"):
    rewards.music_theory_reward(rewards.initial_state(1), tf.constant([14]),
                                weights={"nonexistent": 1.0})


def test_total_is_weighted_sum():
  per_rule, total, _ = replay([14, 21, 28, 1, 0, 15])
  np.testing.assert_allclose(total[0], sum(per_rule[n][0] for n in per_rule),
                             atol=1e-5)
  per_rule_w, total_w, _ = replay([14, 21, 28, 1, 0, 15],
                                  weights={"key": 2.0, "leap_resolution": 0.0})
  expected = (sum(per_rule[n][0] for n in per_rule) + per_rule["key"][0]
              - per_rule["leap_resolution"][0])
  np.testing.assert_allclose(total_w[0], expected, atol=1e-5)
