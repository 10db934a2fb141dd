"""Shared fixtures' logic for the listening-study tests: a tiny study."""
import os

import numpy as np

import listening_study
from listening_study import stimuli

MODELS = ("note_rnn", "q", "psi", "g")
ADMIN_TOKEN = "test-admin-token-0123456789"


def tiny_melodies(models=MODELS, n=3, steps=16, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for m in models:
    tokens = rng.integers(14, 30, size=(n, steps))
    tokens[:, 1::2] = 1
    out[m] = tokens
  return out


def make_study(tmp_path, per_model=2, models=MODELS):
  """A study folder with rendered stimuli (FluidSynth if installed)."""
  study = os.path.join(str(tmp_path), "study")
  stimuli.prepare(None, listening_study.stimuli_dir(study),
                  per_model=per_model, melodies=tiny_melodies(models))
  return study
