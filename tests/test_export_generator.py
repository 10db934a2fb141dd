"""The exported generation / step functions, checked in process against
NoteRNN.step + melody_policy (an independent, unfused implementation)."""
import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.encoding import NUM_CLASSES
from export import fused_lstm
from export import melody_generator
from rl_tuner_tf import melody_policy
from rl_tuner_tf.note_rnn import NoteRNN

SEED = tf.constant(11, tf.int64)


def _random_nets(q_sizes, reward_sizes, seed):
  tf.random.set_seed(seed)
  q = None if q_sizes is None else NoteRNN(q_sizes, name="q")
  r = NoteRNN(reward_sizes, name="reward")
  # Larger-than-init weights so the policies are far from uniform.
  for net in [n for n in (q, r) if n is not None]:
    for v in net.trainable_variables:
      v.assign(v * 3.0)
  return q, r


@pytest.fixture(scope="module")
def g_model():
  q, r = _random_nets((24,), (24,), seed=1)
  return melody_generator.MelodyGenerator("g", r, q, max_steps=64, max_batch=4096)


def _reference_generate_greedy(kind, q, r, primer, num_steps):
  """Unfused greedy loop: NoteRNN.step + policy_logits + argmax."""
  primer = tf.constant(primer, tf.int32)
  batch = primer.shape[0]
  r_state = r.zero_state(batch)
  q_state = None if q is None else q.zero_state(batch)
  prev = primer[:, 0]
  for t in range(1, primer.shape[1]):
    _, r_state = r.step(prev, r_state)
    if q is not None:
      _, q_state = q.step(prev, q_state)
    prev = primer[:, t]
  tokens, log_ps = [], []
  for _ in range(num_steps):
    reward_logits, r_state = r.step(prev, r_state)
    if q is None:
      action_values = reward_logits
    else:
      action_values, q_state = q.step(prev, q_state)
    prev = melody_policy.greedy_actions(kind, action_values, reward_logits)
    tokens.append(prev.numpy())
    log_ps.append(tf.gather(tf.nn.log_softmax(reward_logits), prev, axis=1,
                            batch_dims=1).numpy())
  return np.stack(tokens, 1), np.stack(log_ps, 1)


def _replay_log_p(r, primer, tokens):
  """log p of ``tokens`` under the Reward RNN, teacher-forced after ``primer``."""
  seq = np.concatenate([primer, tokens[:, :-1]], axis=1)
  logits, _ = r(tf.constant(seq, tf.int32))
  log_probs = tf.nn.log_softmax(logits[:, primer.shape[1] - 1:], axis=-1).numpy()
  return np.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("q_sizes,reward_sizes", [
    ((16,), (16,)),
    ((12, 8), (12, 8)),      # two layers
    ((10,), (14, 6)),        # different shapes
    (None, (16,)),           # bare Note RNN
])
def test_network_step_matches_note_rnn_step(q_sizes, reward_sizes):
  q, r = _random_nets(q_sizes, reward_sizes, seed=2)
  kind = "note_rnn" if q is None else "q"
  gen = melody_generator.MelodyGenerator(kind, r, q)
  tokens = tf.constant([0, 5, 37])
  state = tuple(tf.random.normal([3, u]) for u in gen._state_units)
  action_values, reward_logits, new_state = gen.network_step(tokens, state)
  n_q = 0 if q is None else 2 * len(q_sizes)
  want_r, want_r_state = r.step(tokens, state[n_q:])
  np.testing.assert_allclose(reward_logits, want_r, atol=1e-5)
  want_state = tuple(want_r_state)
  if q is None:
    np.testing.assert_allclose(action_values, want_r, atol=1e-5)
  else:
    want_q, want_q_state = q.step(tokens, state[:n_q])
    np.testing.assert_allclose(action_values, want_q, atol=1e-5)
    want_state = tuple(want_q_state) + want_state
  assert len(new_state) == len(want_state)
  for got, want in zip(new_state, want_state):
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_check_fusable_rejects_other_cells():
  net = NoteRNN((4,))
  fused_lstm.check_fusable(net)
  net.lstm_layers[0].cell.recurrent_activation = tf.keras.activations.hard_sigmoid
  with pytest.raises(ValueError, match="only tanh/sigmoid LSTM cells"):
    fused_lstm.check_fusable(net)


@pytest.mark.parametrize("kind", ["g", "psi", "note_rnn"])
def test_greedy_generation_matches_unfused_reference(kind):
  q, r = _random_nets(None if kind == "note_rnn" else (16,), (16,), seed=3)
  gen = melody_generator.MelodyGenerator(kind, r, q)
  primer = np.array([[14, 1, 1, 3], [0, 20, 1, 37]], np.int32)
  out = gen.generate(tf.constant(primer), 12, 0.0, SEED)
  want_tokens, want_log_p = _reference_generate_greedy(kind, q, r, primer, 12)
  np.testing.assert_array_equal(out["tokens"], want_tokens)
  np.testing.assert_allclose(out["log_p"], want_log_p, atol=1e-5)


def test_sampled_generation_outputs(g_model):
  primer = np.array([[14], [3], [30]], np.int32)
  out = g_model.generate(tf.constant(primer), 20, 1.0, SEED)
  tokens, log_p = out["tokens"].numpy(), out["log_p"].numpy()
  assert tokens.dtype == np.int32 and tokens.shape == (3, 20)
  assert log_p.dtype == np.float32 and log_p.shape == (3, 20)
  assert tokens.min() >= 0 and tokens.max() < NUM_CLASSES
  np.testing.assert_allclose(
      log_p, _replay_log_p(g_model.reward_rnn, primer, tokens), atol=1e-5)
  # Stateless: same seed, same melody; another seed, another melody.
  again = g_model.generate(tf.constant(primer), 20, 1.0, SEED)
  np.testing.assert_array_equal(again["tokens"], tokens)
  other = g_model.generate(tf.constant(primer), 20, 1.0, SEED + 1)
  assert not np.array_equal(other["tokens"], tokens)


def test_sampling_follows_policy_softmax(g_model):
  """First notes of 4096 copies of one primer ~ softmax(policy_logits / T)."""
  batch, temperature = 4096, 1.5
  primer = tf.fill([batch, 1], 14)
  out = g_model.generate(primer, 1, temperature, SEED)
  counts = np.bincount(out["tokens"].numpy()[:, 0], minlength=NUM_CLASSES)
  r, q = g_model.reward_rnn, g_model.q_network
  reward_logits, _ = r.step(tf.constant([14]), r.zero_state(1))
  action_values, _ = q.step(tf.constant([14]), q.zero_state(1))
  probs = tf.nn.softmax(melody_policy.policy_logits(
      "g", action_values, reward_logits) / temperature).numpy()[0]
  expected = probs * batch
  # Pearson chi-square over the classes expected >= 5 times, 99.9 % level.
  keep = expected >= 5
  chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
  assert counts[~keep].sum() <= max(20, 4 * expected[~keep].sum())
  dof = keep.sum() - 1
  assert chi2 < dof + 3.1 * np.sqrt(2 * dof) + 10, (chi2, dof)


def test_random_primer_signature(g_model):
  out = g_model.generate_random_primer(tf.constant(64), tf.constant(8),
                                       tf.constant(1.0), SEED)
  primer = out["primer"].numpy()
  assert primer.shape == (64, 1) and primer.dtype == np.int32
  assert primer.min() >= 0 and primer.max() <= g_model.random_note_max
  assert len(np.unique(primer)) > 10  # a random note per melody
  same = g_model.generate(tf.constant(primer), 8, 1.0, SEED)
  np.testing.assert_array_equal(out["tokens"], same["tokens"])
  np.testing.assert_array_equal(out["log_p"], same["log_p"])


def test_random_primer_range():
  _, r = _random_nets(None, (8,), seed=6)
  # Same default draw as the training environment (0..36, the original's).
  from rl_tuner_tf import melody_environment  # pylint: disable=g-import-not-at-top
  assert (melody_generator.DEFAULT_RANDOM_NOTE_MAX ==
          melody_environment.DEFAULT_RANDOM_NOTE_MAX)
  for note_max in (36, 37, 2):
    gen = melody_generator.MelodyGenerator("note_rnn", r, random_note_max=note_max)
    primer = gen.generate_random_primer(tf.constant(4096), tf.constant(1),
                                        tf.constant(1.0), SEED)["primer"].numpy()
    assert set(np.unique(primer)) == set(range(note_max + 1))
  with pytest.raises(ValueError, match="random_note_max"):
    melody_generator.MelodyGenerator("note_rnn", r, random_note_max=38)


def test_step_signature_feeds_back_to_greedy_generation(g_model):
  primer = np.array([[14, 1], [5, 7]], np.int32)
  state = g_model.initial_state(tf.constant(2))
  assert set(state) == set(g_model.state_names) == {"q_h0", "q_c0", "reward_h0",
                                                    "reward_c0"}
  out = g_model.step(token=tf.constant(primer[:, 0]), **state)
  state = {n: out[n] for n in g_model.state_names}
  token, tokens = tf.constant(primer[:, 1]), []
  for _ in range(6):
    out = g_model.step(token=token, **state)
    np.testing.assert_allclose(
        out["policy_logits"],
        tf.nn.log_softmax(out["logits"]) + out["action_values"], atol=1e-6)  # Eq. 14
    np.testing.assert_allclose(out["log_probs"], tf.nn.log_softmax(out["logits"]),
                               atol=1e-6)
    state = {n: out[n] for n in g_model.state_names}
    token = tf.argmax(out["policy_logits"], -1, output_type=tf.int32)
    tokens.append(token.numpy())
  greedy = g_model.generate(tf.constant(primer), 6, 0.0, SEED)
  np.testing.assert_array_equal(greedy["tokens"], np.stack(tokens, 1))


def test_note_rnn_export_action_values_are_logits():
  _, r = _random_nets(None, (16,), seed=4)
  gen = melody_generator.MelodyGenerator("note_rnn", r)
  assert gen.state_names == ("reward_h0", "reward_c0")
  out = gen.step(token=tf.constant([3]), **gen.initial_state(tf.constant(1)))
  np.testing.assert_array_equal(out["action_values"], out["logits"])
  np.testing.assert_array_equal(out["policy_logits"], out["logits"])


def test_constructor_rejects_bad_combinations():
  q, r = _random_nets((8,), (8,), seed=5)
  with pytest.raises(ValueError, match="unknown model kind"):
    melody_generator.MelodyGenerator("dqn", r, q)
  with pytest.raises(ValueError, match="takes no q_network"):
    melody_generator.MelodyGenerator("note_rnn", r, q)
  with pytest.raises(ValueError, match="takes no q_network"):
    melody_generator.MelodyGenerator("q", r, None)
  with pytest.raises(ValueError, match="max_steps and max_batch"):
    melody_generator.MelodyGenerator("q", r, q, max_steps=0)


@pytest.mark.parametrize("primer,num_steps,temperature,message", [
    ([[14, 38]], 4, 1.0, r"tokens must be in \[0, 38\)"),
    ([[-1]], 4, 1.0, r"tokens must be in \[0, 38\)"),
    ([[14]], 0, 1.0, "num_steps must be >= 1"),
    ([[14]], 65, 1.0, "num_steps must be <= 64"),
    ([[14]], 4, -0.5, "temperature must be finite and >= 0"),
    ([[14]], 4, float("nan"), "temperature must be finite and >= 0"),
    (np.zeros([1, 0]), 4, 1.0, r"at least one token"),
    (np.zeros([0, 1]), 4, 1.0, "batch size must be >= 1"),
    (np.zeros([4097, 1]), 4, 1.0, "batch size must be <= 4096"),
])
def test_generate_rejects_bad_inputs(g_model, primer, num_steps, temperature,
                                     message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    g_model.generate(tf.constant(primer, tf.int32), tf.constant(num_steps),
                     tf.constant(temperature), SEED)


def test_other_signatures_reject_bad_inputs(g_model):
  with pytest.raises(tf.errors.InvalidArgumentError, match="batch size must be <= 4096"):
    g_model.generate_random_primer(tf.constant(5000), tf.constant(4),
                                   tf.constant(1.0), SEED)
  with pytest.raises(tf.errors.InvalidArgumentError, match="num_steps must be >= 1"):
    g_model.generate_random_primer(tf.constant(2), tf.constant(-3),
                                   tf.constant(1.0), SEED)
  state = g_model.initial_state(tf.constant(2))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"tokens must be in \[0, 38\)"):
    g_model.step(token=tf.constant([3, 40]), **state)
  with pytest.raises(tf.errors.InvalidArgumentError, match="batch size differs"):
    g_model.step(token=tf.constant([3]), **state)
  with pytest.raises(tf.errors.InvalidArgumentError, match="batch size must be >= 1"):
    g_model.initial_state(tf.constant(0))
