"""One composition loop and one random scheme (rl_tuner_tf/compose.py): the
evaluation's sampler, sample_note_rnn, the exported SavedModel and the
on-policy rollouts write the same tokens for the same model, primer,
temperature and seed."""
import numpy as np
import pytest
import tensorflow as tf

from export import exporter
from rl_tuner_tf import compose
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf import sample_note_rnn
from rl_tuner_tf import tuning
from rl_tuner_tf.evaluation import generate

STEPS = 32


@pytest.fixture(scope="module")
def networks():
  tf.keras.utils.set_random_seed(3)
  return note_rnn.NoteRNN(), note_rnn.NoteRNN()  # policy (G), prior


@pytest.fixture(scope="module")
def exported(networks, tmp_path_factory):
  """SavedModels of the Note RNN alone and of a G model, loaded back."""
  policy, prior = networks
  root = tmp_path_factory.mktemp("compose")
  note_rnn.save(prior, str(root / "note_rnn"))
  melody_policy.save_tuned(str(root / "g"), "g", policy, prior)
  loaded = {}
  for kind, source in (("note_rnn", dict(note_rnn_checkpoint=str(
      root / "note_rnn"))), ("g", dict(tuned_model_dir=str(root / "g")))):
    result = exporter.export_all(str(root / "exports" / kind),
                                 export_tfagents_policy=False, max_steps=64,
                                 max_batch=16, **source)
    loaded[kind] = tf.saved_model.load(result["serving"][1])
  return loaded


def _serve(model, primer, temperature, seed):
  return model.signatures["serving_default"](
      primer=tf.constant(primer, tf.int32),
      num_steps=tf.constant(STEPS, tf.int32),
      temperature=tf.constant(temperature, tf.float32),
      seed=tf.constant(seed, tf.int64))["tokens"].numpy()


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_sample_note_rnn_evaluate_and_serve_agree(networks, exported,
                                                  temperature):
  _, prior = networks
  primer = np.array([[14, 1, 16, 1, 18], [20, 0, 22, 1, 25],
                     [30, 1, 1, 1, 2]], np.int32)
  served = _serve(exported["note_rnn"], primer, temperature, seed=11)
  sampled = sample_note_rnn.NoteRNNSampler(prior).sample(
      primer, STEPS, temperature=temperature, seed=11)
  np.testing.assert_array_equal(sampled, served)
  if temperature == 1.0:  # the evaluation samples the policy itself
    evaluated, _ = generate.generate_melodies(
        "note_rnn", None, prior, 3, seed=11, num_notes=STEPS, primer=primer)
    np.testing.assert_array_equal(evaluated, served)
  assert len({tuple(r) for r in served}) == 3


def test_a_tuned_models_random_primer_melodies_agree(networks, exported):
  policy, prior = networks
  out = exported["g"].signatures["generate_random_primer"](
      batch_size=tf.constant(6, tf.int32),
      num_steps=tf.constant(STEPS, tf.int32),
      temperature=tf.constant(1.0, tf.float32),
      seed=tf.constant(5, tf.int64))
  evaluated, log_p = generate.generate_melodies(
      "g", policy, prior, 6, seed=5, num_notes=STEPS)
  np.testing.assert_array_equal(evaluated, out["tokens"].numpy())
  np.testing.assert_allclose(log_p, out["log_p"].numpy(), atol=1e-4)
  # A melody does not depend on how many are composed with it.
  first_two, _ = generate.generate_melodies(
      "g", policy, prior, 2, seed=5, num_notes=STEPS)
  np.testing.assert_array_equal(first_two, evaluated[:2])


def test_choose_is_greedy_at_zero_and_samples_the_softmax():
  logits = tf.constant([[0.0, 1.0, 3.0]] * 20000)
  greedy = compose.choose(logits, 0.0, tf.constant(1, tf.int64), 0)
  assert set(greedy.numpy()) == {2}
  drawn = compose.choose(logits, 1.0, tf.constant(1, tf.int64), 0).numpy()
  freq = np.bincount(drawn, minlength=3) / drawn.size
  np.testing.assert_allclose(freq, tf.nn.softmax(logits[0]).numpy(),
                             atol=0.015)
  again = compose.choose(logits, 1.0, tf.constant(1, tf.int64), 0).numpy()
  np.testing.assert_array_equal(drawn, again)
  other = compose.choose(logits, 1.0, tf.constant(1, tf.int64), 1).numpy()
  assert (drawn != other).any()


def test_an_on_policy_rollout_is_what_sample_note_rnn_writes():
  """A PPO tuner's first rollout (its policy is still the Note RNN) holds
  the tokens sample_note_rnn writes for the same primer note and the
  rollout's seed (compose.rollout_seed); its log pi and log p are then
  both the Note RNN's."""
  tf.keras.utils.set_random_seed(4)
  source = note_rnn.NoteRNN((16,))
  config = tuning.TuningConfig.of(
      algorithm="ppo", num_notes_in_melody=12, pg_num_compositions=8,
      pg_minibatches=2, num_notes=8 * 12, seed=7)
  tuner = tuning.make_tuner(config, source)
  batch = tf.function(tuner._rollout)()  # pylint: disable=protected-access
  first_notes = batch["inputs"][:, :1].numpy()
  sampled = sample_note_rnn.NoteRNNSampler(source).sample(
      first_notes, 12, temperature=1.0,
      seed=int(compose.rollout_seed(7, 0).numpy()))
  np.testing.assert_array_equal(batch["actions"].numpy(), sampled)
  np.testing.assert_array_equal(batch["inputs"][:, 1:].numpy(),
                                sampled[:, :-1])
  np.testing.assert_allclose(batch["log_pi_old"].numpy(),
                             batch["log_p"].numpy(), atol=1e-5)
  assert compose.rollout_seed(7, 1).numpy() != compose.rollout_seed(7, 0)
  assert compose.rollout_seed(0, 0).numpy() < 0
