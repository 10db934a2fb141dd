"""Presets and the original code's differences, each as its own setting.

Each difference flag must change what it should and nothing else:
token_reading (the rules' 0/1), g_updates_prior (G trains the prior),
boltzmann_store_argmax (replay stores the argmax, the sampled note is played),
figure2_r_mt (Figure 2's last-note r_MT); presets resolve to the documented
values and flags given override them.
"""
import json
import os

from absl import app
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_command
from rl_tuner_tf import configuration
from rl_tuner_tf import melody_environment
from rl_tuner_tf import note_rnn
from rl_tuner_tf import presets
from rl_tuner_tf import rewards
from rl_tuner_tf import train
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job
from rl_tuner_tf.agents import rl_tuner_agent
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.rewards import token_reading

TINY = dict(num_notes=400, num_compositions=40, replay_capacity=1000,
            exploration_period=400)


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
  config = tuning.TuningConfig.of(algorithm="g", g_updates_prior=trains_prior,
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
  config = tuning.TuningConfig.of(algorithm="q", exploration="boltzmann",
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
    tuning.TuningConfig.of(boltzmann_store_argmax=True)


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
def test_presets_are_files_of_every_setting_and_paper_is_the_default():
  assert presets.names() == ("magenta", "paper")
  names = set(tuning.TuningConfig.setting_names())
  for name in presets.names():
    with open(presets.path(name)) as f:
      saved = json.load(f)
    assert saved["preset"] == name
    assert set(saved) - {"preset"} == names, name
    tuning.TuningConfig.from_settings(presets.settings(name))  # valid
  assert (tuning.TuningConfig.from_settings(presets.settings("paper")) ==
          tuning.TuningConfig())
  assert tuning.TuningConfig().off_policy.minibatches_per_update == 1
  with pytest.raises(ValueError, match="paper"):
    presets.path("nature")


def _resolved(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  train.define_flags(flag_values)
  flag_values(["train"] + argv)
  preset, settings, dims = train.resolve(flag_values)
  return preset, tuning.TuningConfig.from_settings(
      {k: v for k, v in settings.items()
       if k in tuning.TuningConfig.setting_names()}), dims


def test_presets_resolve_to_documented_values_and_flags_override():
  preset, config, dims = _resolved(["--preset=magenta", "--algorithm=g"])
  assert preset == "magenta" and dims["algorithm"] == ["g"]
  off = config.off_policy
  assert (config.c, config.gamma, off.exploration) == (10.0, 0.5, "boltzmann")
  assert config.token_reading == "magenta" and off.g_updates_prior
  assert off.boltzmann_store_argmax and config.figure2_r_mt == "last_note"
  _, config, dims = _resolved(["--preset=magenta", "--c=2",
                               "--nog_updates_prior"])
  assert dims["c"] == [2.0] and not config.off_policy.g_updates_prior
  assert config.token_reading == "magenta"  # the rest stays the preset's
  preset, config, dims = _resolved([])
  assert preset == "paper" and config == tuning.TuningConfig()
  assert dims == {"algorithm": ["q"], "c": [0.5], "gamma": [0.5], "seed": [0]}


def test_config_file_reruns_a_saved_run_and_flags_override_it(tmp_path):
  saved = dict(presets.settings("magenta"), algorithm="psi", c=3.0, seed=7,
               pg_epochs=2, figure2_melodies=12, primer=None,
               preset="magenta")
  path = tmp_path / "config.json"
  path.write_text(json.dumps(saved))
  preset, config, dims = _resolved([f"--config={path}"])
  assert preset == "magenta"
  assert dims == {"algorithm": ["psi"], "c": [3.0], "gamma": [0.5],
                  "seed": [7]}
  assert config.pg.epochs == 2 and config.token_reading == "magenta"
  _, config, dims = _resolved([f"--config={path}", "--preset=paper",
                               "--seeds=1,2", "--pg_epochs=3"])
  assert dims["seed"] == [1, 2] and config.pg.epochs == 3
  assert config.token_reading == "magenta"  # the file's values stay
  path.write_text(json.dumps(dict(saved, pg_epoch=2)))
  with pytest.raises(configuration.ConfigError, match="--config.*pg_epoch"):
    _resolved([f"--config={path}"])


def _tiny_flags(checkpoint, **more):
  values = dict(note_rnn_checkpoint=checkpoint, report="false",
                figure2_melodies=10, **TINY)
  values.update(more)
  return [f"--{k}={v}" for k, v in values.items()]


def test_config_json_records_the_preset_and_resume_refuses_another(
    checkpoint, tmp_path):
  out = str(tmp_path / "run")
  run_command(train, _tiny_flags(checkpoint, preset="magenta",
                                 output_dir=out, algorithm="q"))
  with open(os.path.join(out, "q", "config.json")) as f:
    recorded = json.load(f)
  assert recorded["preset"] == "magenta"
  for name, value in presets.settings("magenta").items():
    if name not in TINY and name != "algorithm":
      assert recorded[name] == value, name
  assert set(tuning.TuningConfig.setting_names()) <= set(recorded)
  assert set(tuning_job.RunConfig.setting_names()) <= set(recorded)
  # The same run again from its own config.json: nothing to redo.
  run_command(train, [f"--config={os.path.join(out, 'q', 'config.json')}",
                      f"--output_dir={out}", "--report=false"])
  with pytest.raises(app.UsageError, match="exploration"):
    run_command(train, _tiny_flags(checkpoint, preset="magenta",
                                   exploration="egreedy",
                                   boltzmann_store_argmax="false",
                                   output_dir=out, algorithm="q"))
  with pytest.raises(app.UsageError, match="--preset: was 'magenta'"):
    run_command(train, _tiny_flags(checkpoint, preset="paper",
                                   output_dir=out, algorithm="q"))
