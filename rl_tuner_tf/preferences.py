"""Listener preferences between two melodies: the versioned dataset a reward
model learns from, and a planted taste to test that learning against.

A pair is two melodies of the project's encoding (data_pipeline/encoding.py:
classes 0..37, T tokens each) and one rating on the listening study's
7-point scale (listening_study/design.py; A = left, B = right):

    1 = A much better, 2 = A better, 3 = A slightly better,
    4 = no preference,
    5 = B slightly better, 6 = B better, 7 = B much better.

Low ratings prefer A. The rating's strength becomes a soft label, the
probability that A is preferred (``preference_target``):

    P(A preferred) = (7 - r) / 6      r = 1 -> 1,  r = 4 -> 0.5,  r = 7 -> 0.

File format (``save`` / ``load``): one ``.npz`` (no pickles) holding

    tokens_a, tokens_b  uint8 [N, T]   classes 0..37
    rating              uint8 [N]      1..7, the scale above
    participant         str [N]        who rated the pair
    header              str []         JSON: format, version, num_pairs,
                                       length, scale, sha256, provenance

where ``sha256`` is over the arrays' canonical bytes (``_digest``), so a file
that was edited or damaged is refused, and a reward model names the exact
data it learnt from by that digest.

Planted taste (tests, simulated studies): a utility u(melody), e.g. the mean
pitch (``register_utility``) or the note density (``density_utility``), and
a rating model (``simulate_ratings``):

    z = scale * (u(a) - u(b)) + e,   e ~ Logistic(0, noise)
    r = 4 - sign(z) * #{t in THRESHOLDS : |z| >= t}

so |z| < 0.5 is no preference (4), 0.5 <= z < 1.5 "A slightly better" (3),
1.5 <= z < 2.5 "A better" (2), z >= 2.5 "A much better" (1), and the mirror
for B. ``best_possible_accuracy`` is the accuracy of the ideal model of that
taste (which knows u, scale and noise) on the pairs with a preference: what a
learned reward model is compared with.
"""
import dataclasses
import hashlib
import io
import json
import os
import zipfile
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from data_pipeline import atomic_files
from data_pipeline import encoding

FORMAT_NAME = "rl_tuner_tf.preference_pairs"
FORMAT_VERSION = 1
SCALE_MIN, SCALE_MID, SCALE_MAX = 1, 4, 7
SCALE_DIRECTION = ("1 = A much better, 4 = no preference, 7 = B much "
                   "better (A = left, B = right)")
# |z| cut points of simulate_ratings: 4 - sign(z) * (number reached).
THRESHOLDS = (0.5, 1.5, 2.5)
ARRAY_NAMES = ("tokens_a", "tokens_b", "rating", "participant")
# Register utility: semitones from this pitch (C4, class 14).
REFERENCE_PITCH = int(encoding.class_to_pitch(encoding.TONIC_CLASS))

Utility = Callable[[np.ndarray], np.ndarray]
ArrayLike = Union[np.ndarray, Any]


class PreferenceFileError(ValueError):
  """A preference file (or set of pairs) that is missing or not valid; the
  message names the file and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class PreferencePairs:
  """N rated pairs of T-token melodies (validated on construction).

  tokens_a, tokens_b: int [N, T], classes 0..37.
  rating: int [N] in 1..7: 1 = A much better, 4 = no preference, 7 = B much
    better (listening_study/design.py's scale); low ratings prefer A.
  participant: str [N], who rated each pair.
  provenance: where the pairs came from (JSON-ready dict), or None.
  """
  tokens_a: np.ndarray
  tokens_b: np.ndarray
  rating: np.ndarray
  participant: np.ndarray
  provenance: Optional[Dict[str, Any]] = None

  def __post_init__(self):
    arrays = _checked_arrays(
        {"tokens_a": self.tokens_a, "tokens_b": self.tokens_b,
         "rating": self.rating, "participant": self.participant},
        "pairs")
    for name, value in arrays.items():
      object.__setattr__(self, name, value)
    if self.provenance is not None and not isinstance(self.provenance, dict):
      raise PreferenceFileError(
          f"pairs: provenance must be a dict or None, got "
          f"{type(self.provenance).__name__}")

  @property
  def num_pairs(self) -> int:
    return int(self.rating.shape[0])

  @property
  def length(self) -> int:
    """T, the tokens per melody."""
    return int(self.tokens_a.shape[1])

  def subset(self, indices: ArrayLike) -> "PreferencePairs":
    """The pairs at ``indices`` (same provenance)."""
    indices = np.asarray(indices, np.int64)
    return PreferencePairs(self.tokens_a[indices], self.tokens_b[indices],
                           self.rating[indices], self.participant[indices],
                           self.provenance)

  def targets(self) -> np.ndarray:
    """float32 [N]: P(A preferred) of each pair (``preference_target``)."""
    return preference_target(self.rating).astype(np.float32)


# -- validation ----------------------------------------------------------------
def _checked_arrays(arrays: Dict[str, Any], source: str
                    ) -> Dict[str, np.ndarray]:
  """The four arrays in canonical dtypes, or PreferenceFileError naming
  ``source`` and the problem."""
  def fail(problem):
    raise PreferenceFileError(f"{source}: {problem}")

  out = {}
  for name in ("tokens_a", "tokens_b", "rating"):
    value = np.asarray(arrays[name])
    if value.size and not np.issubdtype(value.dtype, np.integer):
      fail(f"{name} must hold integers, got dtype {value.dtype}")
    out[name] = value
  a, b = out["tokens_a"], out["tokens_b"]
  if a.ndim != 2 or a.shape[1] < 1:
    fail(f"tokens_a must be [N, T] with T >= 1, got shape {a.shape}")
  if b.shape != a.shape:
    fail(f"tokens_b has shape {b.shape}, tokens_a {a.shape}: each pair needs "
         "two melodies of the same length")
  n = a.shape[0]
  for name in ("tokens_a", "tokens_b"):
    value = out[name]
    if value.size and (value.min() < 0 or value.max() >= encoding.NUM_CLASSES):
      bad = value[(value < 0) | (value >= encoding.NUM_CLASSES)]
      fail(f"{name} holds token {int(bad[0])}, outside the classes 0.."
           f"{encoding.NUM_CLASSES - 1} of data_pipeline/encoding.py")
    out[name] = value.astype(np.uint8)
  rating = out["rating"]
  if rating.shape != (n,):
    fail(f"rating has shape {rating.shape}, expected ({n},): one per pair")
  if rating.size and (rating.min() < SCALE_MIN or rating.max() > SCALE_MAX):
    bad = rating[(rating < SCALE_MIN) | (rating > SCALE_MAX)]
    fail(f"rating {int(bad[0])} is outside the scale {SCALE_MIN}..{SCALE_MAX}"
         f" ({SCALE_DIRECTION})")
  out["rating"] = rating.astype(np.uint8)
  participant = np.asarray(arrays["participant"])
  if participant.shape != (n,):
    fail(f"participant has shape {participant.shape}, expected ({n},): one "
         "per pair")
  if participant.dtype.kind == "O" and all(isinstance(p, str)
                                           for p in participant):
    participant = participant.astype(str)
  if participant.size and participant.dtype.kind not in "US":
    fail(f"participant must hold strings, got dtype {participant.dtype}")
  out["participant"] = participant.astype(str)
  return out


def _digest(arrays: Dict[str, np.ndarray]) -> str:
  """sha256 over the arrays' canonical bytes: each name, shape and bytes
  (tokens and ratings as uint8, participants as a JSON list in UTF-8)."""
  h = hashlib.sha256()
  for name in ARRAY_NAMES:
    value = arrays[name]
    if name == "participant":
      data = json.dumps([str(p) for p in value]).encode("utf-8")
    else:
      data = np.ascontiguousarray(value, np.uint8).tobytes()
    h.update(f"{name}{list(value.shape)}".encode())
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)
  return h.hexdigest()


def digest(pairs: PreferencePairs) -> str:
  """The sha256 a file of these pairs records (independent of provenance)."""
  return _digest({n: getattr(pairs, n) for n in ARRAY_NAMES})


# -- file format ---------------------------------------------------------------
def save(pairs: PreferencePairs, path: str) -> str:
  """Writes the pairs and their header to one .npz at ``path``, atomically
  (a reader sees the old file or the new one); returns the sha256."""
  sha = digest(pairs)
  header = {
      "format": FORMAT_NAME, "version": FORMAT_VERSION,
      "num_pairs": pairs.num_pairs, "length": pairs.length,
      "num_classes": encoding.NUM_CLASSES, "scale": SCALE_DIRECTION,
      "sha256": sha, "provenance": pairs.provenance,
  }
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with atomic_files.open_atomic(path, "wb") as f:
    np.savez(f, header=np.array(json.dumps(header)),
             **{n: getattr(pairs, n) for n in ARRAY_NAMES})
  return sha


def read_header(path: str) -> Dict[str, Any]:
  """The file's JSON header, checked (format, version, counts)."""
  return _read(path)[0]


def load(path: str) -> PreferencePairs:
  """The pairs of a file written by ``save``; PreferenceFileError naming the
  file and the problem when it is missing, of another format or version,
  malformed (shapes, tokens outside 0..37, ratings outside 1..7) or its
  checksum does not match its arrays."""
  header, arrays = _read(path)
  return PreferencePairs(provenance=header.get("provenance"), **arrays)


def _read(path):
  source = f"preference file {path!r}"

  def fail(problem):
    raise PreferenceFileError(f"{source}: {problem}")

  if not os.path.isfile(path):
    fail("no such file")
  try:
    with open(path, "rb") as f:
      data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
      contents = {name: npz[name] for name in npz.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    fail(f"not a readable .npz ({type(e).__name__}: {e})")
  if "header" not in contents:
    fail(f"has no header: not a {FORMAT_NAME} file")
  try:
    header = json.loads(str(contents["header"]))
  except ValueError as e:
    fail(f"its header is not JSON ({e})")
  if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
    got = header.get("format") if isinstance(header, dict) else header
    fail(f"format {got!r}, expected {FORMAT_NAME!r}")
  version = header.get("version")
  if version != FORMAT_VERSION:
    newer = isinstance(version, int) and version > FORMAT_VERSION
    fail(f"format version {version!r}, this code reads version "
         f"{FORMAT_VERSION}" + (" (written by a newer version of the "
                                "project)" if newer else ""))
  missing = [n for n in ARRAY_NAMES if n not in contents]
  if missing:
    fail(f"arrays missing: {', '.join(missing)}")
  arrays = _checked_arrays({n: contents[n] for n in ARRAY_NAMES}, source)
  n, t = arrays["tokens_a"].shape
  if (header.get("num_pairs"), header.get("length")) != (n, t):
    fail(f"its header says {header.get('num_pairs')} pairs of "
         f"{header.get('length')} tokens, its arrays hold {n} of {t}")
  sha = _digest(arrays)
  if header.get("sha256") != sha:
    fail(f"checksum mismatch: header sha256 {header.get('sha256')!r}, arrays "
         f"{sha!r} (the file was modified or damaged)")
  return header, arrays


# -- targets and splits --------------------------------------------------------
def preference_target(rating: ArrayLike) -> Union[float, np.ndarray]:
  """P(A preferred) = (7 - r) / 6 on the study's scale (1 = A much better,
  7 = B much better): 1 -> 1, 4 (no preference) -> 0.5, 7 -> 0."""
  r = np.asarray(rating)
  if r.size and (np.any(r < SCALE_MIN) | np.any(r > SCALE_MAX)):
    raise ValueError(f"ratings must be in {SCALE_MIN}..{SCALE_MAX}, got "
                     f"{r[(r < SCALE_MIN) | (r > SCALE_MAX)].ravel()[0]}")
  target = (SCALE_MAX - r.astype(np.float64)) / (SCALE_MAX - SCALE_MIN)
  return float(target) if np.ndim(target) == 0 else target


def split_by_participant(pairs: PreferencePairs, validation_fraction: float,
                         seed: int) -> Tuple[PreferencePairs, PreferencePairs]:
  """(train, validation), no participant in both.

  The participants are shuffled (``seed``) and taken into validation until
  their pairs reach ``validation_fraction`` of all pairs; at least one
  participant goes to each side, so two participants are needed.
  """
  if not 0 < validation_fraction < 1:
    raise ValueError(f"validation_fraction must be in (0, 1), got "
                     f"{validation_fraction}")
  people, counts = np.unique(pairs.participant, return_counts=True)
  if len(people) < 2:
    raise ValueError(f"a split by participant needs 2 or more participants, "
                     f"the pairs have {len(people)}")
  order = np.random.default_rng(seed).permutation(len(people))
  reached = np.cumsum(counts[order]) >= validation_fraction * pairs.num_pairs
  taken = int(np.argmax(reached)) + 1
  taken = min(max(taken, 1), len(people) - 1)
  held_out = np.isin(pairs.participant, people[order[:taken]])
  return (pairs.subset(np.flatnonzero(~held_out)),
          pairs.subset(np.flatnonzero(held_out)))


# -- a planted taste -----------------------------------------------------------
def register_utility(tokens: ArrayLike) -> np.ndarray:
  """Mean pitch of the notes (onsets: classes >= 2), in semitones from C4
  (MIDI 60); 0 for a melody of rests and holds only. [..., T] -> [...].

      u = (1 / |notes|) sum_{t: x_t >= 2} (pitch(x_t) - 60)
  """
  x = np.asarray(tokens, np.int64)
  onset = x >= encoding.NUM_SPECIAL_EVENTS
  semitones = (x - encoding.NUM_SPECIAL_EVENTS + encoding.MIN_PITCH
               - REFERENCE_PITCH)
  count = onset.sum(-1)
  total = np.where(onset, semitones, 0).sum(-1)
  return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def density_utility(tokens: ArrayLike) -> np.ndarray:
  """Notes started per step: u = #{t: x_t >= 2} / T. [..., T] -> [...]."""
  x = np.asarray(tokens)
  return (x >= encoding.NUM_SPECIAL_EVENTS).mean(-1)


def no_utility(tokens: ArrayLike) -> np.ndarray:
  """The control taste: u = 0 for every melody (ratings are noise)."""
  return np.zeros(np.shape(tokens)[:-1])


# Planted tastes by name (listening_study.simulate --utility).
UTILITIES: Dict[str, Utility] = {"register": register_utility,
                                 "density": density_utility,
                                 "none": no_utility}


def _rating_of(z):
  """4 - sign(z) * #{t in THRESHOLDS : |z| >= t}."""
  reached = sum((np.abs(z) >= t).astype(np.int64) for t in THRESHOLDS)
  return (SCALE_MID - np.sign(z).astype(np.int64) * reached).astype(np.int64)


def rate(d: ArrayLike, noise: float, rng: np.random.Generator) -> np.ndarray:
  """Ratings 1..7 given d = scale * (u(a) - u(b)): z = d + e with
  e ~ Logistic(0, noise) drawn from rng, cut at THRESHOLDS."""
  d = np.asarray(d, np.float64)
  u = rng.uniform(1e-12, 1 - 1e-12, np.shape(d))
  return _rating_of(d + noise * np.log(u / (1 - u)))  # the logistic's inverse CDF


def simulate_ratings(tokens_a: ArrayLike, tokens_b: ArrayLike,
                     utility: Utility, scale: float, noise: float,
                     seed: int) -> np.ndarray:
  """Ratings 1..7 of a listener with the planted taste ``utility``:

      z = scale * (u(a) - u(b)) + e,   e ~ Logistic(0, noise)
      r = 4 - sign(z) * #{t in (0.5, 1.5, 2.5) : |z| >= t}

  (z > 0 leans to A, whose end of the scale is 1). noise = 0: no noise.
  """
  if not scale >= 0 or not noise >= 0:
    raise ValueError(f"scale and noise must be >= 0, got {scale}, {noise}")
  d = scale * (utility(tokens_a) - utility(tokens_b))
  return rate(d, noise, np.random.default_rng(seed))


def _logistic_cdf(x, noise):
  """P(e <= x), e ~ Logistic(0, noise); a step at 0 for noise = 0."""
  if noise == 0:
    return (x >= 0).astype(np.float64)
  return 0.5 * (1 + np.tanh(x / (2 * noise)))


def preference_probabilities(d: ArrayLike, noise: float
                             ) -> Tuple[np.ndarray, np.ndarray]:
  """(P(A preferred), P(B preferred)) given d = scale * (u(a) - u(b)):

      P(r < 4) = P(z >= 0.5) = 1 - F(0.5 - d),  P(r > 4) = F(-0.5 - d)

  with F the CDF of Logistic(0, noise); the rest is "no preference"."""
  d = np.asarray(d, np.float64)
  t = THRESHOLDS[0]
  return 1 - _logistic_cdf(t - d, noise), _logistic_cdf(-t - d, noise)


def best_possible_accuracy(tokens_a: ArrayLike, tokens_b: ArrayLike,
                           utility: Utility, scale: float,
                           noise: float) -> float:
  """Expected accuracy, on the pairs with a preference (rating != 4), of the
  ideal model of the planted taste: the Bayes rate of simulate_ratings.

  Given a preference, pair i goes to A with probability pA_i / (pA_i +
  pB_i) (``preference_probabilities``); the best guess is the likelier side,
  A iff d_i > 0 (the noise is symmetric). Over the pairs:

      best = sum_i max(pA_i, pB_i) / sum_i (pA_i + pB_i)

  (expected correct over expected pairs with a preference: what the
  accuracy of a large simulated set converges to).
  """
  d = scale * (utility(tokens_a) - utility(tokens_b))
  p_a, p_b = preference_probabilities(d, noise)
  with_preference = float(np.sum(p_a + p_b))
  if with_preference == 0:
    raise ValueError("no pair can have a preference under this taste")
  return float(np.sum(np.maximum(p_a, p_b)) / with_preference)
