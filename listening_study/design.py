"""The study design: the Likert scale, model pairs, balanced assignment and
the attention check.

Scale.  The paper (section 6) asked which of two melodies participants
preferred "on a Likert scale" without giving its points; we use a symmetric
7-point preference scale, 1 = "A much better" ... 4 = "No preference" ...
7 = "B much better" (A = left, B = right).

Balanced assignment.  All unordered model pairs are listed in a fixed order;
participant k (its database id, assigned atomically by the database) gets the
`trials` consecutive pairs starting at k * trials (cyclically).  Over any P
consecutive participants (P = number of pairs) every pair is used exactly
`trials` times, so every pair is compared equally often without a lock.  The
order of trials, left/right and the clip of each model are random.
"""
import itertools
import random
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

SCALE = (
    (1, "A much better"),
    (2, "A better"),
    (3, "A slightly better"),
    (4, "No preference"),
    (5, "B slightly better"),
    (6, "B better"),
    (7, "B much better"),
)
SCALE_MIN, SCALE_MAX, SCALE_MID = 1, 7, 4
ATTENTION_VALUES = (1, 7)
LABELS = dict(SCALE)


def model_pairs(models: Iterable[str]) -> List[Tuple[str, str]]:
  return list(itertools.combinations(list(models), 2))


def pairs_for(participant_seq: int, models: Iterable[str], trials: int
              ) -> List[Tuple[str, str]]:
  """The model pairs of participant number `participant_seq` (>= 1)."""
  pairs = model_pairs(models)
  start = (participant_seq - 1) * trials
  return [pairs[(start + j) % len(pairs)] for j in range(trials)]


def build_trials(participant_seq: int, manifest: Mapping[str, Any],
                 trials: int, rng: Optional[random.Random] = None
                 ) -> List[Dict[str, Any]]:
  """-> list of trial dicts (position order) incl. one attention check."""
  rng = rng or random.SystemRandom()
  models = manifest["models"]
  by_model = {m: [] for m in models}
  for stimulus_id, info in manifest["stimuli"].items():
    if info["model"] in by_model:
      by_model[info["model"]].append(stimulus_id)
  pools = {m: [] for m in models}

  def draw(model):  # clips without replacement until a model's clips run out
    if not pools[model]:
      pools[model] = sorted(by_model[model])
      rng.shuffle(pools[model])
    return pools[model].pop()

  out = []
  for a, b in pairs_for(participant_seq, models, trials):
    if rng.random() < 0.5:
      a, b = b, a
    out.append(dict(kind="pair", left_model=a, right_model=b,
                    left_stimulus=draw(a), right_stimulus=draw(b),
                    expected_value=None))
  rng.shuffle(out)
  a, b = rng.sample(models, 2)
  attention = dict(kind="attention", left_model=a, right_model=b,
                   left_stimulus=draw(a), right_stimulus=draw(b),
                   expected_value=rng.choice(ATTENTION_VALUES))
  # never first (instructions fresh) and never last when there is a choice
  position = rng.randint(1, max(1, len(out) - 1)) if len(out) > 1 else len(out)
  out.insert(position, attention)
  return out
