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

Preference-collection design (the stimuli manifest's "design" is
"preferences"): each participant rates `trials` (default PREFERENCE_TRIALS)
pairs of two different clips drawn uniformly at random from the whole pool,
whatever their models, no clip twice for one participant while the pool
allows, plus the attention check.  Pairs of one model's clips are kept: they
teach a reward model what differs within a model.

Listening rule.  A pair may be rated only once the server has served both of
its clips to the participant for that trial, and no sooner after the server
first showed the pair than both clips take to play one after the other at
`max_playback_speed` (MAX_PLAYBACK_SPEED = 1, real time, for real studies;
the page plays one clip at a time and has no seek bar, so a real listener is
never faster, and the server's own timestamps bracket the listening).
Simulated participants play faster and the server is told so explicitly.
The analysis applies the same rule again to the stored timestamps.
"""
import itertools
import math
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
MAX_PLAYBACK_SPEED = 1.0
PREFERENCE_TRIALS = 20


def check_playback_speed(speed: float) -> float:
  """`speed` as a float if it is a usable max_playback_speed (finite, > 0);
  ValueError otherwise."""
  speed = float(speed)
  if not math.isfinite(speed) or speed <= 0:
    raise ValueError(f"max_playback_speed must be a finite number > 0, got "
                     f"{speed}")
  return speed


def min_listen_ms(audio_ms: int, max_playback_speed: float) -> int:
  """Least milliseconds from showing a pair to its rating: both clips
  (audio_ms together) played through at max_playback_speed."""
  return int(math.ceil(audio_ms / max_playback_speed))


def clips_ms(manifest: Mapping[str, Any], *stimulus_ids: str) -> int:
  """The clips' summed length in milliseconds, from the manifest."""
  return sum(int(round(1000 * float(manifest["stimuli"][i]["seconds"])))
             for i in stimulus_ids)


def model_pairs(models: Iterable[str]) -> List[Tuple[str, str]]:
  return list(itertools.combinations(list(models), 2))


def pairs_for(participant_seq: int, models: Iterable[str], trials: int
              ) -> List[Tuple[str, str]]:
  """The model pairs of participant number `participant_seq` (>= 1)."""
  pairs = model_pairs(models)
  start = (participant_seq - 1) * trials
  return [pairs[(start + j) % len(pairs)] for j in range(trials)]


def default_trials(manifest: Mapping[str, Any]) -> int:
  """Pairs per participant unless the server is told: every model pair once
  (the paper's design), PREFERENCE_TRIALS in a preference study."""
  if manifest.get("design") == "preferences":
    return PREFERENCE_TRIALS
  return len(model_pairs(manifest["models"]))


def _pool_pairs(manifest, trials, rng):
  """`trials` + 1 pairs of two different clips drawn at random from the
  pool, no clip twice while the pool lasts (the +1: the attention check)."""
  ids = sorted(manifest["stimuli"])
  if len(ids) < 2:
    raise ValueError("a preference study needs at least two clips")
  order = []
  pairs = []
  for _ in range(trials + 1):
    if len(order) < 2:
      order = ids[:]
      rng.shuffle(order)
    pairs.append((order.pop(), order.pop()))
  return pairs


def build_trials(participant_seq: int, manifest: Mapping[str, Any],
                 trials: int, rng: Optional[random.Random] = None
                 ) -> List[Dict[str, Any]]:
  """-> list of trial dicts (position order) incl. one attention check."""
  rng = rng or random.SystemRandom()
  if manifest.get("design") == "preferences":
    clips = manifest["stimuli"]
    pairs = _pool_pairs(manifest, trials, rng)
    out = [dict(kind="pair", left_model=clips[left]["model"],
                right_model=clips[right]["model"], left_stimulus=left,
                right_stimulus=right, expected_value=None,
                audio_ms=clips_ms(manifest, left, right))
           for left, right in pairs[:-1]]
    left, right = pairs[-1]
    attention = dict(kind="attention", left_model=clips[left]["model"],
                     right_model=clips[right]["model"], left_stimulus=left,
                     right_stimulus=right,
                     expected_value=rng.choice(ATTENTION_VALUES),
                     audio_ms=clips_ms(manifest, left, right))
    return _with_attention(out, attention, rng)
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
    left, right = draw(a), draw(b)
    out.append(dict(kind="pair", left_model=a, right_model=b,
                    left_stimulus=left, right_stimulus=right,
                    expected_value=None,
                    audio_ms=clips_ms(manifest, left, right)))
  rng.shuffle(out)
  a, b = rng.sample(models, 2)
  left, right = draw(a), draw(b)
  attention = dict(kind="attention", left_model=a, right_model=b,
                   left_stimulus=left, right_stimulus=right,
                   expected_value=rng.choice(ATTENTION_VALUES),
                   audio_ms=clips_ms(manifest, left, right))
  return _with_attention(out, attention, rng)


def _with_attention(out, attention, rng):
  """Inserts the attention check never first (instructions fresh) and never
  last when there is a choice."""
  position = rng.randint(1, max(1, len(out) - 1)) if len(out) > 1 else len(out)
  out.insert(position, attention)
  return out
