"""agents/replay_buffer.py: TF-Agents' sampling distribution, drawn from a
checkpointed generator, so that a resumed tuning run is the uninterrupted
one, bit for bit."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from rl_tuner_tf import note_rnn
from rl_tuner_tf import tuning
from rl_tuner_tf.agents import replay_buffer

SPEC = {"composition": tensor_spec.TensorSpec([], tf.int64),
        "time": tensor_spec.TensorSpec([], tf.int64)}


def _filled(batch_size, max_length, num_adds):
  buffer = replay_buffer.SeededUniformReplayBuffer(
      SPEC, batch_size=batch_size, max_length=max_length)
  for t in range(num_adds):
    buffer.add_batch({"composition": tf.range(batch_size, dtype=tf.int64),
                      "time": tf.fill([batch_size], tf.constant(t, tf.int64))})
  return buffer


@pytest.mark.parametrize("num_adds", [4, 13])  # not full; wrapped around
def test_items_are_consecutive_stored_steps_uniform_like_get_next(num_adds):
  batch_size, max_length = 3, 8
  buffer = _filled(batch_size, max_length, num_adds)
  generator = tf.random.Generator.from_seed(1)
  items = buffer.sample_steps(generator, [50, 40], num_steps=2)
  comp, time = items["composition"].numpy(), items["time"].numpy()
  assert comp.shape == time.shape == (50, 40, 2)
  # Both steps from one composition, consecutive, and still stored.
  np.testing.assert_array_equal(comp[..., 0], comp[..., 1])
  np.testing.assert_array_equal(time[..., 1], time[..., 0] + 1)
  oldest = max(0, num_adds - max_length)
  assert time.min() == oldest and time.max() == num_adds - 1
  # Every composition and every valid start, about equally often (2,000 draws
  # over 3 compositions and at most 7 starts: >= 95 expected per cell).
  starts = time[..., 0].ravel()
  cells = np.bincount(comp[..., 0].ravel() * 100 + starts - oldest)
  cells = cells[cells > 0]
  assert len(cells) == batch_size * (num_adds - 1 - oldest)
  assert cells.min() > 0.5 * cells.mean() and cells.max() < 1.5 * cells.mean()
  # TF-Agents' get_next draws from the same support.
  reference, _ = buffer.get_next(sample_batch_size=2000, num_steps=2)
  assert set(reference["time"].numpy()[:, 0]) == set(starts)


def test_draws_follow_the_generator_state():
  buffer = _filled(3, 8, 6)
  generator = tf.random.Generator.from_seed(5)
  state = generator.state.numpy()
  first = buffer.sample_steps(generator, [4, 5])["time"].numpy()
  second = buffer.sample_steps(generator, [4, 5])["time"].numpy()
  assert not np.array_equal(first, second)
  generator.reset(state)
  np.testing.assert_array_equal(
      buffer.sample_steps(generator, [4, 5])["time"].numpy(), first)


def test_empty_buffer_is_refused():
  buffer = _filled(2, 8, 1)  # one step: no 2-step item yet
  with pytest.raises(tf.errors.InvalidArgumentError, match="no 2-step item"):
    buffer.sample_steps(tf.random.Generator.from_seed(0), [1, 4])


@pytest.mark.parametrize("jit_compile", [True, False])
def test_resumed_tuner_equals_the_uninterrupted_one(tmp_path, jit_compile):
  """5 iterations in one go == 3, a checkpoint, one more that is lost (the
  kill), then a new Tuner restored from the checkpoint running the last 2:
  the same weights, bit for bit."""
  tf.keras.utils.set_random_seed(0)
  source = note_rnn.NoteRNN()
  config = tuning.TuningConfig.of(
      algorithm="q", num_notes=400, num_compositions=40,
      minibatches_per_update=1, exploration_period=200, replay_capacity=1000,
      seed=3)

  def weights(tuner):
    return [v.numpy() for v in tuner.q_network.variables
            + tuner.target_q_network.variables]

  uninterrupted = tuning.Tuner(config, source, jit_compile=jit_compile)
  assert uninterrupted.run(5) == 5
  first = tuning.Tuner(config, source, jit_compile=jit_compile)
  assert first.run(3) == 3
  path = first.checkpoint.write(str(tmp_path / "ckpt"))
  first.run(1)  # the killed process went on a little; lost
  resumed = tuning.Tuner(config, source, jit_compile=jit_compile)
  resumed.checkpoint.read(path).assert_consumed()
  assert resumed.run(2) == 2
  assert resumed.num_updates == uninterrupted.num_updates == 8 * 4
  for a, b in zip(weights(uninterrupted), weights(resumed)):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_from_before_the_saved_sampler_resumes_with_a_note(
    tmp_path):
  """Runs checkpointed before the replay generator was saved go on (with the
  sampler restarted from its seed); any other mismatch is still refused."""
  from rl_tuner_tf import tuning_job  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(0)
  config = tuning.TuningConfig.of(algorithm="q", num_notes=400,
                                  num_compositions=40, replay_capacity=1000,
                                  seed=3)
  tuner = tuning.Tuner(config, note_rnn.NoteRNN())
  tuner.run(3)
  parts = ["q_network", "target_q_network", "reward_rnn", "optimizer",
           "environment", "replay_buffer", "collect_generator",
           "greedy_generator", "policy_state", "notes_composed", "train_step"]
  old = tf.train.Checkpoint(**{k: getattr(tuner.checkpoint, k) for k in parts})
  old_path = old.save(str(tmp_path / "old"))
  broken = tf.train.Checkpoint(**{k: getattr(tuner.checkpoint, k)
                                  for k in parts if k != "optimizer"},
                               replay_generator=tuner.replay_generator)
  broken_path = broken.save(str(tmp_path / "broken"))
  # Before the generator was saved, and without the optimizer either.
  old_broken = tf.train.Checkpoint(**{k: getattr(tuner.checkpoint, k)
                                      for k in parts if k != "optimizer"})
  old_broken_path = old_broken.save(str(tmp_path / "old_broken"))

  resumed = tuning.Tuner(config, note_rnn.NoteRNN())
  messages = []
  restored_into = tuning_job._checkpoint_for(resumed, old_path)  # pylint: disable=protected-access
  assert restored_into is not resumed.checkpoint  # read once, without the sampler
  tuning_job._check_restored(resumed, restored_into.restore(old_path),  # pylint: disable=protected-access
                        old_path, messages.append, "q")
  assert "predates the saved replay sampler" in messages[0]
  assert resumed.num_notes_composed == tuner.num_notes_composed == 120
  np.testing.assert_array_equal(resumed.q_network.variables[0].numpy(),
                                tuner.q_network.variables[0].numpy())
  for path in (broken_path, old_broken_path):
    other = tuning.Tuner(config, note_rnn.NoteRNN())
    with pytest.raises(AssertionError):
      tuning_job._check_restored(  # pylint: disable=protected-access
          other, tuning_job._checkpoint_for(other, path).restore(path), path,  # pylint: disable=protected-access
          messages.append, "q")
  assert len(messages) == 1
  # Through the main job's resume path: one restore, into the chosen parts.
  from rl_tuner_tf import checkpointing  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path / "legacy_run")
  checkpointing.manager(old, directory).save()
  again = tuning.Tuner(config, note_rnn.NoteRNN())
  chosen = []

  def objects_for(prefix):
    chosen.append(tuning_job._checkpoint_for(again, prefix))  # pylint: disable=protected-access
    return chosen[-1]

  assert checkpointing.restore_latest(
      again.checkpoint, directory, log=messages.append,
      check=lambda status, prefix: tuning_job._check_restored(  # pylint: disable=protected-access
          again, status, prefix, messages.append, "q"),
      objects_for=objects_for)
  assert len(chosen) == 1 and chosen[0] is not again.checkpoint
  assert "predates the saved replay sampler" in messages[-1]
  assert again.num_notes_composed == 120
