"""Presets and the original code's differences, each as its own setting.

Each difference flag must change what it should and nothing else:
token_reading (the rules' 0/1), g_updates_prior (G trains the prior),
boltzmann_store_argmax (replay stores the argmax, the sampled note is played),
figure2_r_mt (Figure 2's last-note r_MT); presets resolve to the documented
values and flags given override them.
"""
import dataclasses
import json
import os

from absl import app
from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf

from rl_tuner_tf import melody_environment
from rl_tuner_tf import note_rnn
from rl_tuner_tf import presets
from rl_tuner_tf import rewards
from rl_tuner_tf import train
from rl_tuner_tf import tuning
from rl_tuner_tf.agents import rl_tuner_agent
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.rewards import token_reading

TINY = dict(num_notes=400, num_compositions=40, replay_capacity=1000,
            exploration_period=400)


@pytest.fixture(scope="module")
def flags_parsed():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="module")
def source():
  tf.random.set_seed(0)
  return note_rnn.NoteRNN()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, source):
  directory = str(tmp_path_factory.mktemp("note_rnn"))
  note_rnn.save(source, directory)
  return directory


# -- token reading ---------------------------------------------------------------
def test_rule_view_swaps_only_note_off_and_no_event():
  tokens = np.array([[0, 1, 2, 14, 37, 1, 0]])
  swapped = token_reading.rule_view(tokens, "magenta")
  np.testing.assert_array_equal(swapped, [[1, 0, 2, 14, 37, 0, 1]])
  np.testing.assert_array_equal(
      token_reading.rule_view(tf.constant(tokens), "magenta").numpy(), swapped)
  assert token_reading.rule_view(tokens, "paper") is tokens
  with pytest.raises(ValueError, match="token reading"):
    token_reading.rule_view(tokens, "midi")


def test_holds_in_a_row_are_repeated_notes_only_under_the_original_reading():
  # A note, then held: our 1 = no-event. The original's rules read the Note
  # RNN's hold as a note-off, and two note-offs before a third one fire rule 3.
  melody = np.array([[14, 1, 1, 1, 16, 1, 18, 1]])
  ours = rewards.replay_melodies(melody, token_reading="paper")
  original = rewards.replay_melodies(melody, token_reading="magenta")
  assert not ours.events["repeated"].numpy().any()
  np.testing.assert_array_equal(original.events["repeated"].numpy()[0],
                                [0, 0, 0, 1, 0, 0, 0, 0])
  # Only the rules that look at 0/1 change: key / motif events do not.
  for name in ("not_in_key", "in_motif"):
    np.testing.assert_array_equal(ours.events[name].numpy(),
                                  original.events[name].numpy())
  stats = {r: table1.compute_table1(melody, token_reading=r)
           for r in token_reading.READINGS}
  assert stats["paper"]["notes_excessively_repeated"] == 0.0
  assert stats["magenta"]["notes_excessively_repeated"] == 1 / 8
  assert stats["magenta"]["token_reading"] == "magenta"


def test_environment_token_reading_changes_r_mt_only(source):
  def rollout(reading):
    env = melody_environment.MelodyEnvironment(
        source, 2, c=1.0, include_log_p=False, token_reading=reading, seed=3)
    env.reset()
    steps = [env.step(tf.constant([a, a])) for a in (14, 1, 1, 1)]
    return ([s.reward.numpy()[0] for s in steps],
            [s.observation["note"].numpy()[0] for s in steps],
            [s.observation["reward_logits"].numpy() for s in steps])
  paper, magenta = rollout("paper"), rollout("magenta")
  assert magenta[0][3] - paper[0][3] <= -100 + 1  # rule 3 fires (-100)
  assert paper[1] == magenta[1]  # what the networks read is unchanged
  for a, b in zip(paper[2], magenta[2]):
    np.testing.assert_array_equal(a, b)


# -- G updating the prior ----------------------------------------------------------
@pytest.mark.parametrize("trains_prior", [True, False])
def test_g_updates_prior_trains_the_reward_rnn_and_nothing_else(source,
                                                                 trains_prior):
  config = tuning.TuningConfig(algorithm="g", g_updates_prior=trains_prior,
                               seed=0, **TINY)
  tuner = tuning.Tuner(config, source)
  before = [v.numpy() for v in tuner.reward_rnn.variables]
  tuner.run(1)  # collection only: no update yet
  assert tuner.num_updates == 0
  if trains_prior:
    # The agent reruns the prior from the state the environment stored; with
    # the prior untouched so far that gives the logits the environment saw.
    items = tuner.replay_buffer.gather_all()
    state = tuple(s[:, 0] for s in items.observation["reward_state"])
    logits, _ = tuner.reward_rnn.step(items.observation["note"][:, 0], state)
    np.testing.assert_allclose(
        logits.numpy(), items.observation["reward_logits"][:, 0].numpy(),
        atol=1e-5)
  else:
    assert "reward_state" not in tuner.env.time_step_spec().observation
  tuner.run(1)  # the first updates
  assert tuner.num_updates > 0
  after = [v.numpy() for v in tuner.reward_rnn.variables]
  if trains_prior:
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))
  else:
    for a, b in zip(before, after):
      np.testing.assert_array_equal(a, b)
  # The G network learns either way.
  assert any(np.abs(a - b).max() > 0 for a, b in zip(
      [v.numpy() for v in tuner.q_network.variables], source.get_weights()))


def test_only_g_can_train_the_prior():
  with pytest.raises(ValueError, match="G-learning's alone"):
    rl_tuner_agent.RLTunerAgent(
        None, None, None, None, "q", None, prior_network=object())


# -- Boltzmann storing the argmax ----------------------------------------------------
@pytest.mark.parametrize("store_argmax", [True, False])
def test_boltzmann_argmax_is_stored_while_the_sampled_note_is_played(
    source, store_argmax):
  config = tuning.TuningConfig(algorithm="q", exploration="boltzmann",
                               boltzmann_store_argmax=store_argmax, seed=0,
                               **TINY)
  tuner = tuning.Tuner(config, source)
  tuner.run(1)
  items = tuner.replay_buffer.gather_all()
  stored = items.action[:, 0].numpy()
  greedy = items.policy_info["greedy_action"][:, 0].numpy()
  played = tuner.env.composition()[:, 0].numpy()  # the note the env appended
  assert (greedy != played).any()  # sampling differs from the argmax
  if store_argmax:
    np.testing.assert_array_equal(stored, greedy)
  else:
    np.testing.assert_array_equal(stored, played)


def test_store_argmax_needs_boltzmann():
  with pytest.raises(tuning.ConfigError, match="--boltzmann_store_argmax"):
    tuning.TuningConfig(boltzmann_store_argmax=True).validate()


# -- Figure 2's r_MT ---------------------------------------------------------------------
def test_figure2_last_note_r_mt(source):
  mean = generate.figure2_point("note_rnn", None, source, num_melodies=50,
                                seed=2)
  last = generate.figure2_point("note_rnn", None, source, num_melodies=50,
                                seed=2, r_mt="last_note")
  tokens, _ = generate.generate_melodies("note_rnn", None, source, 50, 2)
  totals = rewards.replay_melodies(tokens).total.numpy()
  assert mean[0] == last[0]  # log p is the same
  assert mean[1] == pytest.approx(totals.mean(), rel=1e-5)
  assert last[1] == pytest.approx(totals[:, -1].mean(), rel=1e-5)
  assert mean[1] != pytest.approx(last[1])


# -- presets ----------------------------------------------------------------------------------
def test_paper_preset_is_the_config_default():
  defaults = tuning.TuningConfig()
  for name, value in presets.PRESETS["paper"].items():
    assert getattr(defaults, name) == value, name
  assert defaults.minibatches_per_update == 1  # the paper's exact schedule


def test_presets_resolve_to_documented_values_and_flags_override(flags_parsed):
  with flagsaver.flagsaver(preset="magenta"):
    config = train.config_from_flags("g")
  assert (config.c, config.gamma, config.exploration) == (10.0, 0.5,
                                                          "boltzmann")
  assert config.token_reading == "magenta" and config.g_updates_prior
  assert config.boltzmann_store_argmax and config.figure2_r_mt == "last_note"
  with flagsaver.flagsaver(preset="magenta", c=["2"], g_updates_prior=False):
    config = train.config_from_flags("g")
  assert config.c == 2.0 and not config.g_updates_prior
  assert config.token_reading == "magenta"  # the rest stays the preset's
  with flagsaver.flagsaver():
    assert train.config_from_flags("q") == tuning.TuningConfig(algorithm="q")


def _tiny_flags(checkpoint, **more):
  values = dict(note_rnn_checkpoint=checkpoint, report=False,
                figure2_melodies=10, **TINY)
  values.update(more)
  return values


def test_config_json_records_the_preset_and_resume_refuses_another(
    flags_parsed, checkpoint, tmp_path):
  out = str(tmp_path / "run")
  with flagsaver.flagsaver(**_tiny_flags(checkpoint, preset="magenta",
                                         output_dir=out, algorithm=["q"])):
    train.main(["train"])
  with open(os.path.join(out, "q", "config.json")) as f:
    recorded = json.load(f)
  assert recorded["preset"] == "magenta"
  for name, value in presets.PRESETS["magenta"].items():
    assert recorded[name] == value, name
  fields = {f.name for f in dataclasses.fields(tuning.TuningConfig)}
  assert fields - {"algorithm"} <= set(recorded)
  with flagsaver.flagsaver(**_tiny_flags(checkpoint, preset="magenta",
                                         exploration="egreedy",
                                         boltzmann_store_argmax=False,
                                         token_reading="magenta",
                                         output_dir=out, algorithm=["q"])):
    with pytest.raises(app.UsageError, match="preset|exploration"):
      train.main(["train"])
  with flagsaver.flagsaver(**_tiny_flags(checkpoint, preset="paper",
                                         output_dir=out, algorithm=["q"])):
    with pytest.raises(app.UsageError, match="--preset: was 'magenta'"):
      train.main(["train"])
