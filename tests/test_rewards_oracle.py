"""Cross-check of the vectorised rules against a plain-Python oracle.

The oracle below is a direct, loop-by-loop reading of
shared/docs/rl_tuner_reference.md section 6 (one composition at a time, the
way the original composes); the batched TensorFlow rules must agree with it on
every step of random melodies (biased towards holds, rests, repeats and leaps
so that every branch is visited).
"""
import math

import numpy as np
import pytest

from rl_tuner_tf import rewards

C_MAJOR = {0, 1} | {c for c in range(2, 38) if (c - 2 + 48) % 12 in (0, 2, 4, 5, 7, 9, 11)}
C_OR_G = {2, 14, 26, 9, 21, 33}
C_OR_E = {2, 14, 26, 6, 18, 30}


class Oracle:
  """One composition, rules evaluated before the note is appended."""

  def __init__(self, num_notes=32):
    self.num_notes = num_notes
    self.comp = []
    self.direction = 0
    self.leapt_from = None
    self.steps = 0

  def prev_real(self):
    for n in reversed(self.comp):
      if n not in (0, 1):
        return n
    return None

  def key(self, a):
    return -1.0 if a not in C_MAJOR else 0.0

  def tonic(self, a):
    f = self.num_notes - 4
    beat = len(self.comp)
    if beat in (0, f):
      return 3.0 if a == 14 else 0.0
    if beat == f + 1:
      return 3.0 if a == 1 else 0.0
    if beat > f + 1:
      return 3.0 if a in (0, 1) else 0.0
    return 0.0

  def repeated(self, a):
    count, holds, rests = 0, False, False
    for n in reversed(self.comp):
      if n == a:
        count += 1
      elif n == 0:
        rests = True
      elif n == 1:
        holds = True
      else:
        break
    if a == 0 and count > 1:
      return True
    if not holds and not rests:
      return count > 4
    return count > 6

  def autocorrelation(self, a):
    x = np.array(self.comp + [a], dtype=np.float64)
    penalty = 0.0
    for lag in (1, 2, 3):
      n = len(x)
      if np.var(x) == 0:
        continue
      d = x - x.mean()
      coeff = (d[lag:] * d[:n - lag]).sum() / n / np.var(x) if lag < n else 0.0
      if abs(coeff) > 0.15:
        penalty -= 3 * abs(coeff)
    return penalty

  def motif_info(self, a):
    comp = self.comp + [a]
    if len(comp) < 8:
      return None, 0
    last = comp[-8:]
    distinct = len({n for n in last if n not in (0, 1)})
    return (last if distinct >= 3 else None), distinct

  def motif(self, a):
    last, distinct = self.motif_info(a)
    return 3.0 + max(0.0, 0.3 * (distinct - 3)) if last is not None else 0.0

  def repeated_motif(self, a):
    last, distinct = self.motif_info(a)
    if last is None:
      return 0.0
    prev = self.comp[:-7] if len(self.comp) >= 7 else []
    for i in range(len(prev) - 8 + 1):
      if prev[i:i + 8] == last:
        return 4.0 + max(0, distinct - 3)
    return 0.0

  def intervals(self, a):
    p = self.prev_real()
    if p is None:
      return 0.0
    if a == 1:
      return 5 * (0.3 if p in C_OR_G else 0.075)
    if a == 0:
      return 5 * (0.15 if p in C_OR_G else 0.05)
    i = abs(a - p)
    if i == 7 and p in C_OR_G:
      return 5 * 0.1
    if i == 4 and p in C_OR_E:
      return 5 * 0.15
    table = {11: -0.3, 4: 0.09, 2: 0.08, 5: 0.07, 9: 0.05, 7: 0.02}
    if i > 12:
      return 5 * -1.0
    return 5 * table.get(i, 0.0)

  def leap(self, a):
    """Updates the leap state; -> +5 / -5 / 0."""
    if not self.comp:
      return 0.0
    if a in (0, 1):
      self.steps += 1
      return 0.0
    p = self.prev_real()
    if p is not None and abs(a - p) >= 7:
      d = 1 if a > p else -1
      out = 0.0
      if self.direction != 0:
        if self.direction != d:
          if self.steps > 6:
            out = 5.0
          self.direction, self.leapt_from = 0, None
        else:
          out = -5.0
      else:
        self.direction, self.leapt_from = d, p
      self.steps = 0
      return out
    self.steps += 1
    if (self.direction == 1 and a <= self.leapt_from) or (
        self.direction == -1 and a >= self.leapt_from):
      self.direction, self.leapt_from = 0, None
      return 5.0
    return 0.0

  def extremes(self, a):
    if len(self.comp) + 1 != self.num_notes:
      return 0.0
    comp = self.comp + [a]
    out = 3.0 if comp.count(max(comp)) == 1 else 0.0
    real = [n for n in comp if n not in (0, 1)]
    if real and comp.count(min(real)) == 1:
      out += 3.0
    return out

  def step(self, a):
    values = {
        "key": self.key(a), "tonic": self.tonic(a),
        "repetition": -100.0 if self.repeated(a) else 0.0,
        "autocorrelation": self.autocorrelation(a), "motif": self.motif(a),
        "repeated_motif": self.repeated_motif(a),
        "preferred_intervals": self.intervals(a),
        "unique_extremes": self.extremes(a),
    }
    values["leap_resolution"] = self.leap(a)  # after the others: mutates
    self.comp.append(a)
    return values


def random_melodies(rng, n, num_notes=32):
  """Melodies with plenty of holds, rests, repeats, leaps and motifs."""
  out = np.zeros((n, num_notes), np.int64)
  for i in range(n):
    style = i % 4
    for t in range(num_notes):
      u = rng.random()
      if style == 0:  # uniform over all classes
        out[i, t] = rng.integers(0, 38)
      elif style == 1:  # long holds / rests / repeats
        out[i, t] = (out[i, t - 1] if t and u < 0.5 else
                     rng.choice([0, 1, 14, 18, 21]))
      elif style == 2:  # leaps around a few pitches
        out[i, t] = rng.choice([1, 2, 9, 14, 21, 26, 33, 37, 0])
      else:  # a repeated 8-step figure with some noise
        base = [14, 1, 18, 21, 26, 1, 0, 9]
        out[i, t] = base[t % 8] if u < 0.85 else rng.integers(0, 38)
  return out


@pytest.mark.parametrize("num_notes", [32, 12])
def test_rules_match_plain_python_oracle(num_notes):
  rng = np.random.default_rng(1234 + num_notes)
  melodies = random_melodies(rng, 48, num_notes)
  replay = rewards.replay_melodies(melodies)
  per_rule = {k: v.numpy() for k, v in replay.per_rule.items()}
  for i, melody in enumerate(melodies):
    oracle = Oracle(num_notes)
    for t, a in enumerate(melody):
      expected = oracle.step(int(a))
      for name, value in expected.items():
        got = per_rule[name][i, t]
        assert math.isclose(got, value, rel_tol=1e-4, abs_tol=1e-4), (
            f"melody {i} step {t} rule {name}: got {got}, oracle {value}; "
            f"composition {list(melody[:t])} + {a}")
    total = sum(oracle_value for oracle_value in expected.values())
    assert math.isclose(replay.total.numpy()[i, -1], total, abs_tol=1e-3)
  # The random melodies must exercise every rule both ways (else the
  # comparison proves little); 12-note melodies cannot repeat a motif.
  if num_notes < 32:
    return
  for name, values in per_rule.items():
    assert len(np.unique(np.round(values, 4))) >= 2, name
  assert (per_rule["leap_resolution"] > 0).any()
  assert (per_rule["leap_resolution"] < 0).any()
  assert (per_rule["repetition"] < 0).any()
