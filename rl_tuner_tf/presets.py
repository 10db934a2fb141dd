"""Presets: the paper's text, and what the authors' code actually ran.

A preset only changes values of ``tuning.TuningConfig``; every value is also
its own flag of ``python -m rl_tuner_tf.train``, and a flag given on the
command line overrides the preset. ``config.json`` records the preset and
every resolved value.

  paper    (default) the paper's text: c 0.5, gamma 0.5, epsilon-greedy, a
           fixed prior, rules reading tokens as the Note RNN was trained,
           the exact update schedule (one minibatch of 32 every 5 notes),
           Figure 2's mean r_MT per note.
  magenta  what magenta's rl_tuner_train.py ran with rl_tuner.py (reference
           section 9): reward_scaler 0.1 (c 10), discount 0.5 (0.95 is only
           the class default), Boltzmann exploration storing the argmax in
           replay while the sampled note is played, G-learning training the
           prior through its target, rules reading tokens 0/1 swapped (its
           Note RNN's hold is 0), Figure 2's r_MT from each melody's last note.
"""
PRESETS = {
    "paper": {
        "c": 0.5,
        "gamma": 0.5,
        "exploration": "egreedy",
        "minibatches_per_update": 1,
        "token_reading": "paper",
        "g_updates_prior": False,
        "boltzmann_store_argmax": False,
        "figure2_r_mt": "mean",
    },
    "magenta": {
        "c": 10.0,
        "gamma": 0.5,
        "exploration": "boltzmann",
        "minibatches_per_update": 1,
        "token_reading": "magenta",
        "g_updates_prior": True,
        "boltzmann_store_argmax": True,
        "figure2_r_mt": "last_note",
    },
}
DEFAULT_PRESET = "paper"


def resolve(preset, explicit, defaults):
  """Setting values: ``defaults``, then the preset's, then ``explicit`` ones.

  preset: a name in PRESETS. explicit: {setting: value} given on the command
  line. defaults: {setting: value} for every setting.
  """
  if preset not in PRESETS:
    raise ValueError(f"--preset: must be one of {', '.join(PRESETS)} (got "
                     f"{preset!r})")
  unknown = sorted(set(PRESETS[preset]) - set(defaults))
  if unknown:
    raise ValueError(f"preset {preset!r} sets unknown settings {unknown}")
  values = dict(defaults)
  values.update(PRESETS[preset])
  values.update(explicit)
  return values
