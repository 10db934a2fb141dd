"""The batched melody environment: priming, steps, episode boundaries, Eq. 3."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from rl_tuner_tf import melody_environment
from rl_tuner_tf import note_rnn
from rl_tuner_tf import rewards

B = 16


@pytest.fixture(scope="module")
def reward_rnn():
  tf.random.set_seed(1)
  return note_rnn.NoteRNN()


def _env(reward_rnn, **kwargs):
  return melody_environment.MelodyEnvironment(reward_rnn, B, seed=3, **kwargs)


def test_specs(reward_rnn):
  env = _env(reward_rnn)
  assert env.batch_size == B
  assert env.action_spec().maximum == 37
  assert set(env.observation_spec()) == {"note", "reward_logits"}
  assert env.observation_spec()["reward_logits"].shape == (38,)


def test_reset_primes_with_a_random_note_and_reward_rnn_logits(reward_rnn):
  env = _env(reward_rnn)
  first = env.reset()
  assert np.all(first.step_type.numpy() == ts.StepType.FIRST)
  notes = first.observation["note"].numpy()
  assert notes.min() >= 0 and notes.max() <= 36
  expected, _ = reward_rnn.step(notes, reward_rnn.zero_state(B))
  np.testing.assert_allclose(first.observation["reward_logits"], expected,
                             atol=1e-5)
  np.testing.assert_array_equal(env.composition(), np.zeros([B, 32]))


def test_random_note_draw_never_reaches_37_by_default(reward_rnn):
  env = melody_environment.MelodyEnvironment(reward_rnn, 2000, seed=0)
  notes = env.reset().observation["note"].numpy()
  assert notes.max() == 36 and notes.min() == 0
  env = melody_environment.MelodyEnvironment(reward_rnn, 2000, seed=0,
                                             random_note_max=37)
  assert env.reset().observation["note"].numpy().max() == 37


def test_episode_is_32_steps_then_reset(reward_rnn):
  env = _env(reward_rnn)
  env.reset()
  rng = np.random.default_rng(0)
  played = []
  for step in range(32):
    action = rng.integers(0, 38, B).astype(np.int32)
    played.append(action)
    t = env.step(action)
    expected = ts.StepType.LAST if step == 31 else ts.StepType.MID
    assert np.all(t.step_type.numpy() == expected), step
    np.testing.assert_array_equal(t.observation["note"], action)
    assert np.all(t.discount.numpy() == 1.0)
  np.testing.assert_array_equal(env.composition(), np.stack(played, 1))
  # The step after LAST starts a new composition and ignores its action.
  t = env.step(np.full([B], 5, np.int32))
  assert np.all(t.step_type.numpy() == ts.StepType.FIRST)
  assert np.all(t.reward.numpy() == 0.0)
  np.testing.assert_array_equal(env.composition(), np.zeros([B, 32]))
  t = env.step(np.full([B], 5, np.int32))
  assert np.all(t.step_type.numpy() == ts.StepType.MID)
  assert env.composition()[0, 0] == 5


def test_terminal_discount_flag(reward_rnn):
  env = _env(reward_rnn, num_notes_in_melody=2, terminal_discount=0.0)
  env.reset()
  env.step(np.full([B], 14, np.int32))
  t = env.step(np.full([B], 14, np.int32))
  assert np.all(t.step_type.numpy() == ts.StepType.LAST)
  assert np.all(t.discount.numpy() == 0.0)
  assert np.all(env.current_time_step().discount.numpy() == 0.0)


@pytest.mark.parametrize("include_log_p,c", [(True, 0.5), (False, 10.0)])
def test_reward_is_eq3(reward_rnn, include_log_p, c):
  env = _env(reward_rnn, c=c, include_log_p=include_log_p)
  t = env.reset()
  state = rewards.initial_state(B)
  rng = np.random.default_rng(1)
  for _ in range(8):
    action = rng.integers(0, 38, B).astype(np.int32)
    log_p = tf.nn.log_softmax(t.observation["reward_logits"]).numpy()[
        np.arange(B), action]
    r_mt, _, state = rewards.music_theory_reward(state, action)
    t = env.step(action)
    # Eq. 3: r = log p(a|s) + r_MT / c (G / RL-only: r_MT / c).
    expected = r_mt.numpy() / c + (log_p if include_log_p else 0.0)
    np.testing.assert_allclose(t.reward, expected, rtol=1e-5, atol=1e-5)


def test_stats_are_per_note_means_and_reset(reward_rnn):
  env = _env(reward_rnn)
  t = env.reset()
  state = rewards.initial_state(B)
  log_ps, r_mts, keys = [], [], []
  for note in (14, 16, 18, 3):
    action = np.full([B], note, np.int32)
    log_ps.append(tf.nn.log_softmax(
        t.observation["reward_logits"]).numpy()[:, note])
    r_mt, per_rule, state = rewards.music_theory_reward(state, action)
    r_mts.append(r_mt.numpy())
    keys.append(per_rule["key"].numpy())
    t = env.step(action)
  stats = {k: float(v) for k, v in env.read_and_reset_stats().items()}
  assert stats["notes"] == 4 * B
  np.testing.assert_allclose(stats["log_p"], np.mean(log_ps), rtol=1e-5)
  np.testing.assert_allclose(stats["r_mt"], np.mean(r_mts), rtol=1e-5)
  np.testing.assert_allclose(stats["key"], -0.25)  # class 3 is C#3
  assert float(env.read_and_reset_stats()["notes"]) == 0.0


def test_primer_melody_primes_both_note_and_reward_rnn_state(reward_rnn):
  primer = [14, 1, 16, 1, 18]
  env = _env(reward_rnn, primer=primer)
  first = env.reset()
  np.testing.assert_array_equal(first.observation["note"], np.full([B], 18))
  # The observation's logits are the Reward RNN's after reading the primer.
  logits, _ = reward_rnn(tf.constant([primer]))
  np.testing.assert_allclose(first.observation["reward_logits"][0],
                             logits[0, -1], atol=1e-5)


def test_runs_inside_a_tf_function_loop(reward_rnn):
  env = _env(reward_rnn, num_notes_in_melody=4)

  @tf.function(autograph=False)  # (AutoGraph would only slow tracing)
  def play(n):
    return tf.while_loop(
        lambda i, total: i < n,
        lambda i, total: (i + 1, total + env.step(tf.fill([B], 14)).reward),
        [tf.constant(0), tf.zeros([B])], parallel_iterations=1)
  # Uninitialised: step 1 primes; 2-5 compose (5 is LAST); 6 primes; 7-10
  # compose; 11 primes again.
  play(tf.constant(10))
  assert int(env.current_time_step().step_type[0]) == ts.StepType.LAST
  np.testing.assert_array_equal(env.composition(), np.full([B, 4], 14))
  play(tf.constant(1))
  assert int(env.current_time_step().step_type[0]) == ts.StepType.FIRST


def test_bad_arguments(reward_rnn):
  with pytest.raises(ValueError, match="c must be > 0"):
    _env(reward_rnn, c=0.0)
  with pytest.raises(ValueError, match="random_note_max"):
    _env(reward_rnn, random_note_max=38)
  with pytest.raises(ValueError, match="primer tokens"):
    _env(reward_rnn, primer=[14, 40])
  with pytest.raises(ValueError, match="non-empty"):
    _env(reward_rnn, primer=[])


# -- a pool of primers (the original's 'random_midi' priming) -------------------
POOL = np.array([[14, 1, 16, 1], [3, 5, 7, 9], [20, 0, 22, 25]], np.int32)


def _pool_dir(tmp_path):
  """A TFRecord dir whose train melodies start with POOL's rows (+ a short one)."""
  from data_pipeline import tfrecords  # pylint: disable=g-import-not-at-top
  melodies = [list(p) + [1, 1, 0] for p in POOL] + [[14, 1]]
  tfrecords.write_shards(str(tmp_path), "train", melodies, num_shards=2)
  return str(tmp_path)


def test_corpus_primers_reads_the_prefixes(tmp_path):
  pool = melody_environment.corpus_primers(_pool_dir(tmp_path), 4, 10)
  assert pool.dtype == np.int32 and pool.shape == (3, 4)  # [14, 1] too short
  assert {tuple(r) for r in pool} == {tuple(r) for r in POOL}
  assert len(melody_environment.corpus_primers(str(tmp_path), 4, 2)) == 2
  with pytest.raises(ValueError, match="has 9 steps or more"):
    melody_environment.corpus_primers(str(tmp_path), 9, 10)


def test_primer_pool_primes_each_composition_from_the_pool(reward_rnn,
                                                           tmp_path):
  pool = melody_environment.corpus_primers(_pool_dir(tmp_path), 4, 10)
  env = _env(reward_rnn, primer=pool)
  for _ in range(2):  # reset, and the automatic re-priming after LAST
    first = env.reset()
    index = env.primer.index.numpy()
    chosen = pool[index]
    assert len(set(index)) > 1  # compositions draw different primers
    np.testing.assert_array_equal(first.observation["note"], chosen[:, -1])
    # The Reward RNN's state and logits are those after reading the primer
    # (the observed last note included: the next step reads the action).
    logits, expected_state = reward_rnn(tf.constant(chosen))
    for got, want in zip(env.trackable.reward_rnn_state, expected_state):
      np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    np.testing.assert_allclose(first.observation["reward_logits"],
                               logits[:, -1], atol=1e-5)
  # The draw follows the seed.
  draws = []
  for seed in (3, 3, 4):
    other = melody_environment.MelodyEnvironment(reward_rnn, B, seed=seed,
                                                 primer=pool)
    other.reset()
    draws.append(other.primer.index.numpy())
  np.testing.assert_array_equal(draws[0], draws[1])
  assert not np.array_equal(draws[0], draws[2])


def test_primer_pool_rejects_bad_pools(reward_rnn):
  with pytest.raises(ValueError, match="primer tokens"):
    _env(reward_rnn, primer=[[14, 40], [1, 2]])
  with pytest.raises(ValueError, match="non-empty"):
    _env(reward_rnn, primer=np.zeros([0, 4], np.int32))
