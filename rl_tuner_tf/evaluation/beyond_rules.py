"""Beyond the rules: melodies measured against real ones, by nothing a reward optimises.

Table 1 counts the music-theory rules the tuners are rewarded for; a model can
score well there by gaming them.  Here a set of melodies X (a model's, or
real held-out ones for the floor) is compared with a reference set B of real
held-out melodies (reference.py: windows of the validation split, in two
disjoint halves A and B).  Every comparison is f(X, B): with X = A it gives
the real-vs-real floor, with X = a model's melodies (a subsample of |A| of
them where the size of X matters) its distance from real music.

Melodies are [N, T] tokens in the data encoding (0 note-off, 1 no-event,
2..37 = MIDI 48..83), read as the Note RNN learned them whatever a run's
token reading for the rules.  A note starts at a pitch token and lasts until
the next pitch or note-off token, or the end.

Metrics (keys of ``measure``'s flat dict):
* per melody, mean over the melodies with 95 % CI (``*_ci95``): pitch count
  (distinct pitches, MusPy's pitches used), pitch range, average |interval|,
  inter-onset interval (Yang & Lerch 2020), pitch entropy, pitch-class
  entropy (bits), scale consistency (largest share of notes in one of the 24
  major / natural minor scales), empty-beat rate (beats of 4 steps in which
  no note sounds), as MusPy documents them;
* set distributions: Jensen-Shannon divergence in bits of the pitch-class,
  interval (semitones, clipped to +-13) and note-length (steps) histograms
  over all notes;
* Yang & Lerch's set-level features (``yl_<feature>_oa`` / ``_kl``): for
  pitch count, pitch-class histogram, pitch-class transition matrix, pitch
  range, average interval, note-length histogram, note-length transition
  matrix and inter-onset interval, the Euclidean distances within B
  (intra-set) and from X to B (inter-set), their Gaussian kernel density
  estimates, the overlapping area OA of the two densities (1 = the same) and
  KL(intra_B || inter); on subsamples of YL_SAMPLES melodies;
* diversity: share of distinct melodies, distinct interval 4-grams per 1,000
  notes, mean pairwise edit distance (EDIT_SAMPLES melodies);
* copying: share of melodies holding a 16-step window found verbatim in the
  training melodies; edit distance to the nearest training window (for
  NEAREST_SAMPLES melodies against NEAREST_TRAIN windows): mean, and share
  within NEAR_COPY_EDITS edits;
* a classifier two-sample test: logistic regression on each melody's token
  unigram + bigram shares and features, trained on half of X and B, tested
  on the other half: accuracy (0.5: indistinguishable) with a Wilson 95 %
  interval;
* the Frechet distance between X and B in the Note RNN's own feature space
  (its top LSTM layer's output at the last step), Gaussian fits, FID's formula.
Note lengths fall in 9 classes of sixteenths: 1, 2, 3, 4, 6, 8, 12, 16 and
any other length.
"""
import math
import time
from typing import (Any, BinaryIO, Dict, Mapping, Optional, Sequence, Tuple,
                    TYPE_CHECKING, Union)

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
  from rl_tuner_tf import note_rnn as note_rnn_lib
  from rl_tuner_tf.evaluation import reference as reference_lib

NOTE_OFF, NO_EVENT, FIRST_PITCH_TOKEN, LOWEST_PITCH = 0, 1, 2, 48
NUM_PITCHES = 36
NUM_TOKENS = 38
STEPS_PER_BEAT = 4
LENGTH_CLASSES = (1, 2, 3, 4, 6, 8, 12, 16)  # then "any other length"
MAX_INTERVAL = 13  # |interval| >= 13 semitones share the outer bins
COPY_WINDOW = 16
NEAR_COPY_EDITS = 4
YL_SAMPLES = 1000
EDIT_SAMPLES = 500
NEAREST_SAMPLES = 200
NEAREST_TRAIN = 8000
CLASSIFIER_SAMPLES = 4000  # per set
Z_95 = 1.959963984540054  # two-sided 95 % normal quantile
YL_FEATURES = ("pitch_count", "pitch_class_histogram",
               "pitch_class_transition_matrix", "pitch_range",
               "average_pitch_interval", "note_length_histogram",
               "note_length_transition_matrix", "inter_onset_interval")
PER_MELODY = ("pitch_count", "pitch_range", "average_pitch_interval",
              "inter_onset_interval", "pitch_entropy", "pitch_class_entropy",
              "scale_consistency", "empty_beat_rate")

_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
# [12 pitch classes, 24 scales]: major then natural minor on each root.
SCALES = np.stack([np.roll(m, root) for m in (_MAJOR, _MINOR)
                   for root in range(12)], axis=1)


# -- notes ---------------------------------------------------------------------
class Notes:
  """The notes of a set of melodies, as dense arrays.

  onset [N, T] bool; pitch [N, T] MIDI pitch at onsets (-1 elsewhere);
  length [N, T] steps at onsets (0 elsewhere); sounding [N, T] bool;
  compact pitches / lengths / starts [N, T]: each melody's notes moved to
  the front (-1 / 0 / -1 after its last), count [N] notes per melody.
  """

  def __init__(self, tokens: npt.ArrayLike) -> None:
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
      raise ValueError(f"melodies must be [N, T] tokens, got {tokens.shape}")
    n, t = tokens.shape
    steps = np.arange(t)
    self.tokens = tokens
    self.onset = tokens >= FIRST_PITCH_TOKEN
    self.pitch = np.where(self.onset, tokens - FIRST_PITCH_TOKEN + LOWEST_PITCH,
                          -1)
    event = tokens != NO_EVENT  # a pitch or a note-off ends the note before
    # next event strictly after each step (t if none)
    at = np.where(event, steps, t)
    after = np.concatenate([at[:, 1:], np.full((n, 1), t)], axis=1)
    next_event = np.minimum.accumulate(after[:, ::-1], axis=1)[:, ::-1]
    self.length = np.where(self.onset, next_event - steps, 0)
    last = np.maximum.accumulate(np.where(event, steps, -1), axis=1)
    self.sounding = (last >= 0) & (
        np.take_along_axis(tokens, np.maximum(last, 0), axis=1) >=
        FIRST_PITCH_TOKEN)
    order = np.argsort(~self.onset, axis=1, kind="stable")
    self.count = self.onset.sum(axis=1)
    valid = steps[None, :] < self.count[:, None]
    self.pitches = np.where(valid, np.take_along_axis(self.pitch, order, 1), -1)
    self.lengths = np.where(valid, np.take_along_axis(self.length, order, 1), 0)
    self.starts = np.where(valid, order, -1)
    self.pair = steps[None, 1:] < self.count[:, None]  # [N, T-1] note k+1 exists


def _length_class(lengths):
  """Steps -> class 0..8 (LENGTH_CLASSES, then 'other')."""
  classes = np.full(lengths.shape, len(LENGTH_CLASSES), np.int64)
  for i, steps in enumerate(LENGTH_CLASSES):
    classes[lengths == steps] = i
  return classes


def _safe_div(a, b):
  b = np.asarray(b, np.float64)
  return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan),
                   where=b > 0)


def _entropy_bits(counts):
  """Shannon entropy (bits) of each row of counts; nan for an empty row."""
  total = counts.sum(axis=1, keepdims=True)
  p = _safe_div(counts, total)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1)), 0.0)
  return np.where(total[:, 0] > 0, terms.sum(axis=1), np.nan)


def _row_counts(values, valid, size):
  """[N, K] values in 0..size-1 (where valid) -> [N, size] counts."""
  n = values.shape[0]
  flat = (np.arange(n)[:, None] * size + np.where(valid, values, 0))[valid]
  return np.bincount(flat, minlength=n * size).reshape(n, size)


def features(tokens: Union[Notes, npt.ArrayLike]) -> Dict[str, np.ndarray]:
  """Per-melody features -> dict of arrays ([N] or [N, D]); nan where a
  melody has too few notes for a feature."""
  notes = tokens if isinstance(tokens, Notes) else Notes(tokens)
  n, t = notes.tokens.shape
  has = notes.pitches >= 0
  pitch_counts = _row_counts(notes.pitches - LOWEST_PITCH, has, NUM_PITCHES)
  pc = np.where(has, notes.pitches % 12, 0)
  pc_counts = _row_counts(pc, has, 12)
  pc_pairs = pc[:, :-1] * 12 + pc[:, 1:]
  pc_trans = _row_counts(pc_pairs, notes.pair, 144)
  length_class = _length_class(notes.lengths)
  nl_counts = _row_counts(length_class, has, len(LENGTH_CLASSES) + 1)
  nl_pairs = length_class[:, :-1] * (len(LENGTH_CLASSES) + 1) + length_class[:, 1:]
  nl_trans = _row_counts(nl_pairs, notes.pair, (len(LENGTH_CLASSES) + 1) ** 2)
  intervals = np.abs(np.diff(notes.pitches, axis=1))
  onset_gaps = np.diff(notes.starts, axis=1)
  pairs = notes.pair.sum(axis=1)
  hi = np.where(has, notes.pitches, -1).max(axis=1)
  lo = np.where(has, notes.pitches, 10 ** 6).min(axis=1)
  in_scale = pc_counts @ SCALES.astype(np.int64)  # [N, 24]
  beats = notes.sounding[:, :t - t % STEPS_PER_BEAT].reshape(
      n, -1, STEPS_PER_BEAT).any(axis=2)
  count = notes.count
  return {
      "notes": count,
      "pitch_count": np.where(count > 0, (pitch_counts > 0).sum(axis=1), np.nan),
      "pitch_class_histogram": _safe_div(pc_counts, count[:, None]),
      "pitch_class_transition_matrix": _safe_div(pc_trans, pairs[:, None]),
      "pitch_range": np.where(count > 0, hi - lo, np.nan),
      "average_pitch_interval": _safe_div(
          np.where(notes.pair, intervals, 0).sum(axis=1), pairs),
      "note_length_histogram": _safe_div(nl_counts, count[:, None]),
      "note_length_transition_matrix": _safe_div(nl_trans, pairs[:, None]),
      "inter_onset_interval": _safe_div(
          np.where(notes.pair, onset_gaps, 0).sum(axis=1), pairs),
      "pitch_entropy": _entropy_bits(pitch_counts),
      "pitch_class_entropy": _entropy_bits(pc_counts),
      "scale_consistency": _safe_div(in_scale.max(axis=1), count),
      "empty_beat_rate": (1.0 - beats.mean(axis=1)) if beats.shape[1] else
                         np.full(n, np.nan),
  }


# -- set distributions ---------------------------------------------------------
def histograms(tokens: Union[Notes, npt.ArrayLike]) -> Dict[str, np.ndarray]:
  """Counts over all notes of a set: pitch class [12], interval [27]
  (-13..13, the ends holding larger leaps), note length [T] (1..T steps)."""
  notes = tokens if isinstance(tokens, Notes) else Notes(tokens)
  has = notes.pitches >= 0
  pc = np.bincount((notes.pitches[has] % 12), minlength=12)
  steps = np.diff(notes.pitches, axis=1)[notes.pair]
  interval = np.bincount(np.clip(steps, -MAX_INTERVAL, MAX_INTERVAL) +
                         MAX_INTERVAL, minlength=2 * MAX_INTERVAL + 1)
  t = notes.tokens.shape[1]
  length = np.bincount(notes.lengths[has] - 1, minlength=t)[:t]
  return {"pitch_class": pc, "interval": interval, "note_length": length}


def js_bits(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
  """Jensen-Shannon divergence (bits) of two count or probability vectors."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  if p.sum() <= 0 or q.sum() <= 0:
    return float("nan")
  p, q = p / p.sum(), q / q.sum()
  m = (p + q) / 2

  def kl(a):
    mask = a > 0
    return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))
  return 0.5 * kl(p) + 0.5 * kl(q)


# -- Yang & Lerch: intra- and inter-set distances ------------------------------
def _vectors(values):
  values = np.asarray(values, np.float64)
  return values[:, None] if values.ndim == 1 else values


def pairwise(a: npt.ArrayLike, b: Optional[npt.ArrayLike] = None
             ) -> np.ndarray:
  """Euclidean distances: within a (each unordered pair once) or a x b;
  rows with a nan are left out."""
  a = _vectors(a)
  a = a[~np.isnan(a).any(axis=1)]
  if b is None:
    sq = np.sum(a * a, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * a @ a.T
    iu = np.triu_indices(len(a), k=1)
    return np.sqrt(np.maximum(d2[iu], 0.0))
  b = _vectors(b)
  b = b[~np.isnan(b).any(axis=1)]
  d2 = (np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] -
        2.0 * a @ b.T)
  return np.sqrt(np.maximum(d2, 0.0)).ravel()


def _kde(x, grid):
  """Gaussian kernel density estimate of x on an even grid, Scott's rule
  bandwidth (as scipy.stats.gaussian_kde), from a histogram on the grid
  convolved with the kernel: the same curve to within a bin, in
  milliseconds for 10^5 points."""
  step = grid[1] - grid[0]
  spread = x.std(ddof=1) if x.size > 1 else 0.0
  width = max(spread * x.size ** (-1.0 / 5.0), 2 * step)
  edges = np.concatenate([grid - step / 2, [grid[-1] + step / 2]])
  counts = np.histogram(x, bins=edges)[0].astype(np.float64)
  half = int(math.ceil(4 * width / step))
  kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * step / width) ** 2)
  y = np.convolve(counts, kernel, mode="full")[half:half + len(grid)]
  return y / np.trapezoid(y, grid)


def density_overlap(intra: npt.ArrayLike, inter: npt.ArrayLike,
                    points: int = 1024
                    ) -> Tuple[float, float, np.ndarray, np.ndarray,
                               np.ndarray]:
  """(OA, KL(intra || inter), grid, intra density, inter density) of two
  distance samples by Gaussian kernel density estimates on a common grid."""
  intra = np.asarray(intra, np.float64)
  inter = np.asarray(inter, np.float64)
  lo = min(intra.min(initial=np.inf), inter.min(initial=np.inf))
  hi = max(intra.max(initial=-np.inf), inter.max(initial=-np.inf))
  margin = 0.15 * (hi - lo) + 1e-6
  grid = np.linspace(lo - margin, hi + margin, points)
  p, q = _kde(intra, grid), _kde(inter, grid)
  oa = float(np.trapezoid(np.minimum(p, q), grid))
  eps = 1e-12
  kl = float(np.trapezoid(p * np.log((p + eps) / (q + eps)), grid))
  return oa, max(kl, 0.0), grid, p, q


# -- diversity -----------------------------------------------------------------
def edit_distances(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
  """Levenshtein distances between rows a[i] and b[i] ([P, T] each)."""
  a = np.asarray(a).T  # [T, P]: one step of every pair is contiguous
  b = np.asarray(b).T
  t, p = a.shape
  u = b.shape[0]
  small = np.int8 if t + u < 127 else np.int32  # distances <= max(t, u)
  previous = np.repeat(np.arange(u + 1, dtype=small)[:, None], p, axis=1)
  current = np.empty_like(previous)
  for i in range(1, t + 1):
    current[0] = i
    best = np.minimum(previous[:-1] + (a[i - 1] != b).astype(small),
                      previous[1:] + 1)  # substitute / delete
    for j in range(1, u + 1):  # insertions run along the row
      np.minimum(best[j - 1], current[j - 1] + 1, out=current[j])
    previous, current = current, previous
  return previous[-1].astype(np.int64)


def interval_ngrams_per_1000_notes(tokens: Union[Notes, npt.ArrayLike],
                                   n: int = 4) -> float:
  """Distinct n-grams of successive intervals in the set, per 1,000 notes."""
  notes = tokens if isinstance(tokens, Notes) else Notes(tokens)
  steps = np.diff(notes.pitches, axis=1)  # [N, T-1]
  k = steps.shape[1] - n + 1
  if k <= 0 or notes.count.sum() == 0:
    return float("nan")
  windows = np.lib.stride_tricks.sliding_window_view(steps, n, axis=1)
  valid = np.lib.stride_tricks.sliding_window_view(notes.pair, n, axis=1).all(2)
  grams = windows[valid].astype(np.int64) + 64  # intervals span -35..35
  keys = np.zeros(len(grams), np.int64)
  for column in range(n):
    keys = keys * 128 + grams[:, column]
  return 1000.0 * len(np.unique(keys)) / float(notes.count.sum())


# -- copying -------------------------------------------------------------------
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def window_hashes(tokens: npt.ArrayLike, width: int = COPY_WINDOW
                  ) -> np.ndarray:
  """64-bit hashes of every width-step window of each row: [N, T-width+1]
  (an exact polynomial code of the 38 tokens, wrapping mod 2^64)."""
  tokens = np.asarray(tokens, np.uint64)
  if tokens.shape[1] < width:
    return np.zeros((tokens.shape[0], 0), np.uint64)
  windows = np.lib.stride_tricks.sliding_window_view(tokens, width, axis=1)
  code = np.zeros(windows.shape[:2], np.uint64)
  with np.errstate(over="ignore"):
    for i in range(width):
      code = code * _HASH_MULTIPLIER + windows[:, :, i] + np.uint64(1)
  return code


def training_window_index(train_melodies: Sequence[np.ndarray],
                          width: int = COPY_WINDOW) -> np.ndarray:
  """Sorted unique hashes of every width-step window of the training
  melodies (a list of 1-D token arrays)."""
  parts = [window_hashes(m[None, :], width)[0] for m in train_melodies
           if len(m) >= width]
  if not parts:
    return np.zeros(0, np.uint64)
  return np.unique(np.concatenate(parts))


def copied_share(tokens: npt.ArrayLike, index: np.ndarray,
                 width: int = COPY_WINDOW) -> float:
  """Share of melodies with a width-step window found in the index."""
  hashes = window_hashes(tokens, width)
  if index.size == 0 or hashes.size == 0:
    return 0.0
  where = np.searchsorted(index, hashes)
  found = index[np.minimum(where, index.size - 1)] == hashes
  return float(found.any(axis=1).mean())


def nearest_distances(tokens: npt.ArrayLike, train_windows: np.ndarray
                      ) -> np.ndarray:
  """Edit distance from each melody to its nearest training window."""
  tokens = np.asarray(tokens)
  best = np.full(len(tokens), np.iinfo(np.int64).max)
  chunk = max(1, 200000 // max(len(train_windows), 1))
  for start in range(0, len(tokens), chunk):
    rows = tokens[start:start + chunk]
    a = np.repeat(rows, len(train_windows), axis=0)
    b = np.tile(train_windows, (len(rows), 1))
    d = edit_distances(a, b).reshape(len(rows), len(train_windows))
    best[start:start + chunk] = d.min(axis=1)
  return best


# -- classifier two-sample test ------------------------------------------------
def classifier_inputs(tokens: npt.ArrayLike) -> np.ndarray:
  """Per melody: token unigram and bigram shares, and features."""
  tokens = np.asarray(tokens)
  n, t = tokens.shape
  uni = _row_counts(tokens, np.ones_like(tokens, bool), NUM_TOKENS) / t
  bi = _row_counts(tokens[:, :-1] * NUM_TOKENS + tokens[:, 1:],
                   np.ones((n, t - 1), bool), NUM_TOKENS ** 2) / max(t - 1, 1)
  f = features(tokens)
  extra = [np.nan_to_num(_vectors(f[k])) for k in
           ("pitch_range", "average_pitch_interval", "inter_onset_interval",
            "pitch_entropy", "scale_consistency", "empty_beat_rate",
            "note_length_histogram", "pitch_class_histogram")]
  return np.concatenate([uni, bi] + extra, axis=1)


def wilson_interval(successes: int, trials: int, z: float = Z_95
                    ) -> Tuple[float, float]:
  if trials == 0:
    return float("nan"), float("nan")
  p = successes / trials
  denominator = 1 + z * z / trials
  center = (p + z * z / (2 * trials)) / denominator
  half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
  return center - half, center + half


def classifier_test(x_tokens: npt.ArrayLike, b_tokens: npt.ArrayLike,
                    rng: np.random.Generator, l2: float = 1e-2
                    ) -> Tuple[float, float, float, int]:
  """Logistic regression telling X from B: trained on half of each, held-out
  accuracy on the other half -> (accuracy, low, high, test size)."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  x = classifier_inputs(x_tokens)
  b = classifier_inputs(b_tokens)
  n = min(len(x), len(b))
  x = x[rng.permutation(len(x))[:n]]
  b = b[rng.permutation(len(b))[:n]]
  half = n // 2
  train = np.concatenate([x[:half], b[:half]])
  test = np.concatenate([x[half:], b[half:]])
  y_train = np.concatenate([np.ones(half), np.zeros(half)])
  y_test = np.concatenate([np.ones(n - half), np.zeros(n - half)])
  mean, std = train.mean(0), train.std(0) + 1e-6
  train, test = (train - mean) / std, (test - mean) / std

  def loss(w):
    z = train @ w[:-1] + w[-1]
    value = np.mean(np.logaddexp(0.0, z) - y_train * z) + l2 * np.sum(w[:-1] ** 2)
    p = 1.0 / (1.0 + np.exp(-z))
    grad = np.concatenate([train.T @ (p - y_train) / len(z) + 2 * l2 * w[:-1],
                           [np.mean(p - y_train)]])
    return value, grad

  w = optimize.minimize(loss, np.zeros(train.shape[1] + 1), jac=True,
                        method="L-BFGS-B", options={"maxiter": 300}).x
  correct = int(np.sum(((test @ w[:-1] + w[-1]) > 0) == (y_test > 0.5)))
  low, high = wilson_interval(correct, len(y_test))
  return correct / len(y_test), low, high, len(y_test)


# -- Frechet distance ----------------------------------------------------------
def frechet_distance(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
  """FID's formula between Gaussian fits of two [N, D] samples."""
  from scipy import linalg  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  covmean = linalg.sqrtm(s1 @ s2)
  if not np.all(np.isfinite(covmean)):
    offset = np.eye(s1.shape[0]) * 1e-6
    covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * covmean))


def note_rnn_features(note_rnn: "note_rnn_lib.NoteRNN",
                      tokens: np.ndarray, batch_size: int = 2000
                      ) -> np.ndarray:
  """The Note RNN's top LSTM output at each melody's last step: [N, units]."""
  out = []
  for start in range(0, len(tokens), batch_size):
    x, _ = note_rnn.features(np.asarray(tokens[start:start + batch_size],
                                        np.int32))
    out.append(x[:, -1, :].numpy())
  return np.concatenate(out) if out else np.zeros((0, 0))


# -- everything ----------------------------------------------------------------
def mean_ci(values: npt.ArrayLike
            ) -> Tuple[Optional[float], Optional[float]]:
  """(mean, 95 % half-width) of the finite values (normal approximation)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return None, None
  if v.size == 1:
    return float(v[0]), None
  return float(v.mean()), float(Z_95 * v.std(ddof=1) /
                                math.sqrt(v.size))


def measure(x_tokens: npt.ArrayLike, reference: "reference_lib.Reference",
            note_rnn: Optional["note_rnn_lib.NoteRNN"] = None, seed: int = 0,
            timings: Optional[Dict[str, float]] = None) -> Dict[str, Any]:
  """All metrics of melodies X against reference.B -> flat {key: number}
  (plus "yl_densities": the curves behind the OA / KL, for plots).

  reference: a reference.Reference (halves A and B, training windows).
  x_tokens: [N, T]; where the size of X matters (set-level metrics) a
  subsample of |A| melodies is used, drawn with ``seed``.
  timings: a dict that gets each stage's seconds (benchmarks).
  """
  clock = [time.perf_counter()]

  def lap(stage):
    if timings is not None:
      now = time.perf_counter()
      timings[stage] = timings.get(stage, 0.0) + now - clock[0]
      clock[0] = now

  rng = np.random.default_rng(seed)
  x_tokens = np.asarray(x_tokens)
  t = reference.b.shape[1]
  if x_tokens.shape[1] != t:
    raise ValueError(f"melodies of {x_tokens.shape[1]} steps against a "
                     f"reference of {t}-step windows")
  size = len(reference.a)
  sample = x_tokens if len(x_tokens) <= size else x_tokens[
      np.sort(rng.choice(len(x_tokens), size, replace=False))]
  out = {"melodies": int(len(x_tokens)), "set_size": int(len(sample)),
         "reference_size": int(len(reference.b))}
  per_melody = features(x_tokens)
  out["melodies_without_notes"] = float(np.mean(per_melody["notes"] == 0))
  for key in PER_MELODY:
    out[key], out[key + "_ci95"] = mean_ci(per_melody[key])
  lap("per-melody metrics (all melodies)")
  # set distributions
  hx, hb = histograms(sample), histograms(reference.b)
  for key in ("pitch_class", "interval", "note_length"):
    out[f"js_{key}"] = js_bits(hx[key], hb[key])
  lap("histograms, Jensen-Shannon")
  # Yang & Lerch
  fx = features(sample[rng.permutation(len(sample))[:YL_SAMPLES]])
  fb = features(reference.b[rng.permutation(len(reference.b))[:YL_SAMPLES]])
  densities = {}
  for key in YL_FEATURES:
    intra_b = pairwise(fb[key])
    inter = pairwise(fx[key], fb[key])
    intra_x = pairwise(fx[key])
    oa, kl, grid, p, q = density_overlap(intra_b, inter)
    out[f"yl_{key}_oa"], out[f"yl_{key}_kl"] = oa, kl
    out[f"yl_{key}_intra"] = float(intra_x.mean()) if intra_x.size else None
    densities[key] = {"grid": grid[::16].round(5).tolist(),
                      "reference_intra": p[::16].round(5).tolist(),
                      "inter": q[::16].round(5).tolist()}
  out["yl_densities"] = densities
  lap("Yang & Lerch distances and densities")
  # diversity
  out["distinct_share"] = float(len(np.unique(sample, axis=0)) / len(sample))
  out["interval_4grams_per_1000_notes"] = interval_ngrams_per_1000_notes(sample)
  pick = sample[rng.permutation(len(sample))[:EDIT_SAMPLES]]
  i, j = np.triu_indices(len(pick), k=1)
  out["mean_pairwise_edit_distance"] = (float(edit_distances(pick[i], pick[j]).mean())
                                        if i.size else None)
  lap("diversity")
  # copying
  out["copied_16_step_window_share"] = copied_share(sample, reference.train_index)
  near = nearest_distances(sample[rng.permutation(len(sample))[:NEAREST_SAMPLES]],
                           reference.train_windows)
  out["nearest_training_edit_distance"] = float(near.mean())
  out["near_copy_share"] = float(np.mean(near <= NEAR_COPY_EDITS))
  lap("copying")
  # classifier two-sample test
  accuracy, low, high, n = classifier_test(
      sample[:CLASSIFIER_SAMPLES], reference.b[:CLASSIFIER_SAMPLES], rng)
  out.update(classifier_accuracy=accuracy, classifier_accuracy_low=low,
             classifier_accuracy_high=high, classifier_test_size=n)
  lap("classifier two-sample test")
  # Frechet distance in the Note RNN's space
  if note_rnn is not None:
    out["frechet_note_rnn"] = frechet_distance(
        note_rnn_features(note_rnn, sample),
        note_rnn_features(note_rnn, reference.b))
    lap("Frechet distance (Note RNN features)")
  return out


# -- tables and plots ----------------------------------------------------------
SUMMARY = (  # (key, header, digits): the combined table's columns
    ("js_pitch_class", "JS pitch class", 3),
    ("js_interval", "JS interval", 3),
    ("js_note_length", "JS note length", 3),
    ("yl_mean_oa", "Y&L mean OA", 3),
    ("frechet_note_rnn", "Fréchet (Note RNN)", 2),
    ("classifier_accuracy", "classifier acc.", 3),
    ("distinct_share", "distinct", 3),
    ("interval_4grams_per_1000_notes", "4-grams /1k notes", 1),
    ("mean_pairwise_edit_distance", "pairwise edit", 1),
    ("copied_16_step_window_share", "copied 16-step", 3),
    ("near_copy_share", f"≤{NEAR_COPY_EDITS} edits from train", 3),
    ("pitch_range", "pitch range", 1),
    ("scale_consistency", "scale consist.", 3),
    ("empty_beat_rate", "empty beats", 3),
)


def with_summary(metrics: Mapping[str, Any]) -> Dict[str, Any]:
  """metrics plus yl_mean_oa: the mean OA over Yang & Lerch's features."""
  oas = [metrics.get(f"yl_{k}_oa") for k in YL_FEATURES]
  oas = [v for v in oas if v is not None]
  return dict(metrics, yl_mean_oa=float(np.mean(oas)) if oas else None)


def _cell(mean, half, digits):
  if mean is None or (isinstance(mean, float) and not math.isfinite(mean)):
    return "–"
  text = f"{mean:.{digits}f}"
  return text + (f" ± {half:.{digits}f}" if half is not None else "")


def markdown_table(floor: Mapping[str, Any],
                   groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
  """floor: the held-out half's metrics; groups: {name: [metrics per seed]}
  -> markdown: one row per group (mean ± 95 % CI over seeds where there
  are several), the real-vs-real floor first."""
  from rl_tuner_tf.evaluation import seeds  # pylint: disable=g-import-not-at-top
  header = "| model | " + " | ".join(h for _, h, _ in SUMMARY) + " |"
  lines = [header, "|" + " --- |" * (len(SUMMARY) + 1)]
  rows = [("held-out melodies (floor)", [floor])] + list(groups.items())
  for name, runs in rows:
    cells = []
    for key, _, digits in SUMMARY:
      values = [with_summary(m).get(key) for m in runs]
      mean, half = seeds.interval([v for v in values if v is not None])
      cells.append(_cell(mean, half, digits))
    n = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
    lines.append(f"| {name}{n} | " + " | ".join(cells) + " |")
  yl = ["", "Yang & Lerch overlapping area (OA, 1 = as close to B as real "
        "melodies can be) per feature:", "",
        "| model | " + " | ".join(YL_FEATURES) + " |",
        "|" + " --- |" * (len(YL_FEATURES) + 1)]
  for name, runs in rows:
    cells = []
    for key in YL_FEATURES:
      mean, half = seeds.interval([m.get(f"yl_{key}_oa") for m in runs
                                   if m.get(f"yl_{key}_oa") is not None])
      cells.append(_cell(mean, half, 3))
    yl.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines + yl) + "\n"


def plot_densities(floor: Mapping[str, Any],
                   models: Mapping[str, Mapping[str, Any]],
                   out: Union[str, BinaryIO]) -> None:
  """One panel per Yang & Lerch feature: the reference's intra-set distance
  density and each model's (and the floor's) inter-set one, as a PNG to
  ``out`` (a path or a binary file)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
  for ax, key in zip(axes.ravel(), YL_FEATURES):
    reference = floor["yl_densities"][key]
    ax.plot(reference["grid"], reference["reference_intra"], "k-", lw=2,
            label="within held-out B")
    ax.plot(reference["grid"], reference["inter"], "k--", lw=1,
            label="held-out A to B (floor)")
    for name, metrics in models.items():
      curve = metrics["yl_densities"][key]
      ax.plot(curve["grid"], curve["inter"], lw=1, label=f"{name} to B")
    ax.set_title(key.replace("_", " "), fontsize=9)
    ax.set_xlabel("distance", fontsize=8)
  # One legend for the eight panels, below them (the overlaps are in
  # beyond_rules.md).
  handles, labels = axes.ravel()[0].get_legend_handles_labels()
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.legend(handles, labels, loc="lower center", fontsize=8,
             ncol=min(len(labels), 6), frameon=False)
  fig.savefig(out, dpi=90, format="png", bbox_inches="tight")
  plt.close(fig)


def plot_rules_against_realism(
    points: Sequence[Tuple[str, str, Sequence[Optional[float]],
                           Mapping[str, Sequence[float]]]],
    floor: Mapping[str, Any], out: Union[str, BinaryIO]) -> None:
  """Mean r_MT per note (Table 1) against distance from real melodies, one
  point per model and grid point (its seeds' mean, bars the 95 % CI): left
  the Fréchet distance in the Note RNN's space, right the classifier's
  accuracy (floors as dashed lines); PNG to ``out``.

  points: [(kind, label, r_mt, {metric: [value per seed]})] with r_mt the
  seeds' mean r_MT values; ``label`` (e.g. 'c2', '' for a single run) is
  written beside the point, and points of one kind share a colour and are
  joined in the order given (a c sweep reads as a curve).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from rl_tuner_tf.evaluation import seeds  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
  kinds = list(dict.fromkeys(kind for kind, _, _, _ in points))
  colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kinds)}
  for ax, key, label in ((axes[0], "frechet_note_rnn",
                          "Fréchet distance to held-out melodies (Note RNN space)"),
                         (axes[1], "classifier_accuracy",
                          "classifier accuracy, model vs held-out (0.5 = same)")):
    for kind in kinds:
      xs, ys = [], []
      for k, name, r_mt, metrics in points:
        x, x_ci = seeds.interval(metrics.get(key, []))
        y, y_ci = seeds.interval(r_mt)
        if k != kind or x is None or y is None:
          continue
        ax.errorbar(x, y, xerr=x_ci, yerr=y_ci, fmt="o", ms=4,
                    color=colours[kind], label=None if xs else kind)
        if name:
          ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3),
                      fontsize=7, color=colours[kind])
        xs.append(x)
        ys.append(y)
      if len(xs) > 1:
        ax.plot(xs, ys, color=colours[kind], lw=0.8, alpha=0.6)
    if floor.get(key) is not None:
      ax.axvline(floor[key], color="k", ls="--", lw=1,
                 label="held-out vs held-out")
    ax.set_xlabel(label, fontsize=9)
    ax.set_ylabel("mean r_MT per note (Table 1)", fontsize=9)
  # One legend, right of the panels, off the points.
  axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                 frameon=False)
  fig.tight_layout()
  fig.savefig(out, dpi=90, format="png", bbox_inches="tight")
  plt.close(fig)
