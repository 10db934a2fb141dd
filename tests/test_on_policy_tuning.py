"""The on-policy tuners (PPO, RLOO): learning, resume, config, train.py, export."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from export import exporter
from rl_tuner_tf import melody_environment
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf import on_policy_tuning
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import objective

NOTES = 8  # notes per composition in these tests


def _note_rnn_loving_one_note():
  """A small Note RNN that plays class 3 (out of key) most of the time: its
  melodies are full of excessive repetition, so r_MT is very negative.
  Seeded through Python's, NumPy's and TF's generators: Keras draws the
  seeds of unseeded initialisers from Python's, so tf.random.set_seed alone
  gives another network in every process."""
  tf.keras.utils.set_random_seed(0)
  model = note_rnn.NoteRNN((16,))
  bias = model.logits_layer.bias.numpy()
  bias[3] = 4.0
  model.logits_layer.bias.assign(bias)
  return model


def _config(algorithm, iterations, **overrides):
  values = dict(algorithm=algorithm, num_notes_in_melody=NOTES,
                pg_num_compositions=20, pg_minibatches=2, pg_epochs=2,
                rloo_k=4, pg_learning_rate=1e-2, seed=0)
  values.update(overrides)
  values["num_notes"] = iterations * values["pg_num_compositions"] * NOTES
  return tuning.TuningConfig.of(**values)


def _objective(kind, tuner):
  tokens, log_p, log_pi = generate.generate_melodies(
      kind, tuner.q_network, tuner.reward_rnn, 400, seed=1, num_notes=NOTES,
      return_log_pi=True)
  return objective.kl_objective(tokens, log_p, log_pi, c=tuner.config.c)


@pytest.mark.parametrize("algorithm", ["ppo", "rloo"])
def test_short_run_improves_the_objective_and_resumes(algorithm, tmp_path):
  source = _note_rnn_loving_one_note()
  config = _config(algorithm, 10)
  tuner = tuning.make_tuner(config, source)
  assert isinstance(tuner, on_policy_tuning.TUNERS[algorithm])
  before = _objective("note_rnn", tuner)  # the untuned policy is p itself
  assert before["mean_kl"] == 0.0
  assert tuner.run(6) == 6
  path = tuner.checkpoint.save(str(tmp_path / "ckpt"))
  assert tuner.run(4) == 4
  assert tuner.num_notes_composed == 10 * 20 * NOTES
  assert tuner.num_updates == 10 * 2 * 2
  assert tuner.nonfinite_loss is None
  stats = tuner.read_and_reset_stats()
  assert {"loss", "objective", "kl", "log_p", "r_mt"} <= set(stats)
  after = _objective(algorithm, tuner)
  assert after["mean"] > before["mean"] + 20, (before, after)
  assert after["ci95_low"] > before["ci95_high"]
  if algorithm == "rloo":
    return  # (one resume check is enough: the same code path)
  # A new tuner restored from the checkpoint at iteration 6 ends where the
  # first one did.
  resumed = tuning.make_tuner(config, source)
  resumed.checkpoint.restore(path).assert_consumed()
  assert resumed.num_notes_composed == 6 * 20 * NOTES
  resumed.run(4)
  assert resumed.num_updates == tuner.num_updates
  for a, b in zip(tuner.q_network.variables + tuner.value_head.variables,
                  resumed.q_network.variables + resumed.value_head.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_rloo_primes_k_compositions_alike():
  env = melody_environment.MelodyEnvironment(
      note_rnn.NoteRNN((8,)), 12, primer_group_size=4, seed=3)
  notes = env.reset().observation["note"].numpy().reshape(3, 4)
  assert (notes == notes[:, :1]).all()
  with pytest.raises(ValueError, match="primer_group_size"):
    melody_environment.MelodyEnvironment(note_rnn.NoteRNN((8,)), 10,
                                         primer_group_size=4)


def test_on_policy_config_validation_names_the_setting():
  with pytest.raises(tuning.ConfigError, match="--pg_num_compositions"):
    _config("rloo", 2, rloo_k=3)
  with pytest.raises(tuning.ConfigError, match="--rloo_k"):
    _config("rloo", 2, rloo_k=1)
  with pytest.raises(tuning.ConfigError, match="--pg_minibatches"):
    _config("ppo", 2, pg_minibatches=3)
  with pytest.raises(tuning.ConfigError, match="--pg_clip"):
    _config("ppo", 2, pg_clip=0.0)
  with pytest.raises(tuning.ConfigError, match="--num_notes"):
    tuning.TuningConfig.of(algorithm="ppo", num_notes=1000)
  # The default 1,000,000 notes are whole batches of compositions.
  tuning.TuningConfig.of(algorithm="ppo")
  tuning.TuningConfig.of(algorithm="rloo")
  assert tuning.TuningConfig.of(algorithm="ppo").notes_per_iteration() == 8000
  assert tuning.TuningConfig.of(algorithm="q").notes_per_iteration() == 400


def test_train_tunes_ppo_and_the_model_exports(tmp_path):
  source = _note_rnn_loving_one_note()
  checkpoint = str(tmp_path / "note_rnn")
  note_rnn.save(source, checkpoint)
  config = tuning.TuningConfig.of(
      algorithm="ppo", num_notes=3 * 20 * NOTES, num_notes_in_melody=NOTES,
      pg_num_compositions=20, pg_minibatches=2, pg_epochs=1)
  run = tuning_job.RunConfig(note_rnn_checkpoint=checkpoint,
                             figure2_melodies=10, log_every_notes=100)
  # Periods are rounded up to whole iterations (160 notes).
  every = tuning_job.periods(config, run)
  assert every == {"log": 160, "checkpoint": 160, "figure2": 160}
  lines = []
  model_dir = tuning_job.tune(config, run, str(tmp_path / "run" / "ppo"),
                              log=lines.append)
  assert any("done: 480 notes, 6 updates" in l for l in lines), lines
  with open(os.path.join(tmp_path, "run", "ppo", "config.json")) as f:
    assert json.load(f)["pg_num_compositions"] == 20
  algorithm, policy, _, _ = melody_policy.load_tuned(model_dir)
  assert algorithm == "ppo"
  base = str(tmp_path / "exports" / "melody")
  results = exporter.export_all(base, tuned_model_dir=model_dir, max_steps=16,
                                max_batch=8)
  loaded = tf.saved_model.load(results["serving"][1])
  out = loaded.signatures["generate"](
      primer=tf.constant([[14, 16]], tf.int32),
      num_steps=tf.constant(NOTES, tf.int32),
      temperature=tf.constant(0.0, tf.float32),
      seed=tf.constant(1, tf.int64))
  # Greedy generation follows argmax of the policy network's logits.
  state = policy.zero_state(1)
  _, state = policy.step(tf.constant([14]), state)
  logits, _ = policy.step(tf.constant([16]), state)
  assert int(out["tokens"][0, 0]) == int(tf.argmax(logits[0]))
  assert os.path.isdir(results["tfagents_policy"][1])
