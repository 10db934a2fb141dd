"""A reward model learnt from listeners' preferences between two melodies.

Network. ``RewardModel`` reads a melody (tokens [B, T], classes 0..37) with
an LSTM trunk of the Note RNN's architecture (one-hot input, the same LSTM
stack), initialised by copying a trained Note RNN's LSTM weights, so it
starts from what the Note RNN knows about melodies. A linear head reads the
top layer's final hidden state h_T, the LSTM's summary of the whole melody
(the state the Note RNN predicts the next note from):

    r(x) = w . h_T(x) + b                                 (a scalar reward)

The head starts at zero (every pair starts at p = 0.5). Trunk and head are
trained together.

Loss: Bradley-Terry, with the Likert strength as a soft label
(rl_tuner_tf/preferences.py: y = P(A preferred) = (7 - rating) / 6):

    p_i  = sigmoid(r(a_i) - r(b_i))
    loss = (1/N) sum_i -[y_i log p_i + (1 - y_i) log(1 - p_i)]
           + l2 * ||w||^2 / 2

Only differences of rewards matter, so r is defined up to a constant: b
receives no gradient and stays 0 (compare rewards, do not read them as
absolute).

Metrics (``pair_metrics``): the accuracy on the pairs with a preference
(rating != 4: A preferred when r(a) > r(b)) with its 95 % Wilson interval,
the log loss (the loss above without the L2 term) and its floor (the mean
entropy of the soft labels, what a perfect predictor of them scores), and
calibration: predicted p in 10 equal bins against the observed mean target
per bin, with the expected calibration error (the bins' count-weighted mean
|mean p - mean target|); ``plot_calibration`` draws it.

Saved model (``save`` / ``load``), one folder written atomically:

    saved_model.pb, variables/  a SavedModel whose ``score`` signature maps
                                tokens int32 [B, T] -> reward float32 [B]
                                (tokens checked in the graph: 0..37, T >= 1)
    weights/reward_model.*      the Keras weights (tf.train.Checkpoint)
    reward_model.json           architecture, training config and metrics

``load(dir)`` returns a ``Scorer`` (tokens -> rewards, numpy) over the
SavedModel; ``load_model(dir)`` the Keras model from the weights.
"""
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import numpy as np
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline.encoding import NUM_CLASSES
from rl_tuner_tf import note_rnn
from rl_tuner_tf import preferences

CONFIG_FILENAME = "reward_model.json"
WEIGHTS_PREFIX = os.path.join("weights", "reward_model")
SIGNATURE = "score"
INPUT_NAME = "tokens"
OUTPUT_NAME = "reward"
WILSON_Z = 1.959963984540054  # the standard normal's 97.5 % quantile
CALIBRATION_BINS = 10
HEAD = "linear on the top LSTM layer's final hidden state h_T"

ArrayLike = Union[np.ndarray, tf.Tensor, Sequence[Sequence[int]]]


class RewardModelError(ValueError):
  """A reward model folder that is missing or cannot be read."""


class RewardModel(tf.keras.Model):
  """LSTM trunk (the Note RNN's architecture) + linear head on h_T:
  tokens [B, T] -> reward [B]."""

  def __init__(self, layer_sizes: Sequence[int] = note_rnn.DEFAULT_LAYER_SIZES,
               name: str = "reward_model"):
    super().__init__(name=name)
    self.layer_sizes = tuple(int(s) for s in layer_sizes)
    self.lstm_layers = note_rnn.lstm_stack(self.layer_sizes)
    self.head = tf.keras.layers.Dense(1, kernel_initializer="zeros",
                                      name="head")
    self(tf.zeros([1, 1], tf.int32))  # build every weight now

  @classmethod
  def from_note_rnn(cls, source: Union[str, note_rnn.NoteRNN]
                    ) -> "RewardModel":
    """A reward model whose LSTM trunk is a copy of a Note RNN's (a
    ``note_rnn.save`` folder, or a NoteRNN); the head starts at zero."""
    source = note_rnn.load(source) if isinstance(source, str) else source
    model = cls(source.layer_sizes)
    for mine, theirs in zip(model.lstm_layers, source.lstm_layers):
      mine.set_weights(theirs.get_weights())
    return model

  def features(self, tokens: tf.Tensor, training: bool = False) -> tf.Tensor:
    """tokens [B, T] -> h_T [B, units of the top layer]."""
    _, final = note_rnn.run_lstm_stack(self.lstm_layers, tokens,
                                       training=training)
    return final[-2]  # the top layer's h

  def call(self, tokens: tf.Tensor, training: bool = False) -> tf.Tensor:
    """tokens [B, T] -> reward [B] = w . h_T + b."""
    return self.head(self.features(tokens, training=training))[:, 0]

  def score(self, tokens: ArrayLike) -> tf.Tensor:
    """tokens [B, T] (any int array) -> reward float32 [B]."""
    return self(tf.convert_to_tensor(np.asarray(tokens), tf.int32))

  def head_kernel(self) -> tf.Variable:
    """w, the head's weights (the L2 term's)."""
    return self.head.kernel

  def get_config(self) -> Dict[str, List[int]]:
    return {"layer_sizes": list(self.layer_sizes)}


# -- loss ----------------------------------------------------------------------
def reward_differences(model: RewardModel, tokens_a: tf.Tensor,
                       tokens_b: tf.Tensor, training: bool = False
                       ) -> tf.Tensor:
  """r(a) - r(b) [N]: both melodies of every pair in one batch [2N, T]."""
  n = tf.shape(tokens_a)[0]
  rewards = model(tf.concat([tokens_a, tokens_b], 0), training=training)
  return rewards[:n] - rewards[n:]


def bradley_terry_loss(differences: tf.Tensor, targets: tf.Tensor
                       ) -> tf.Tensor:
  """Mean BCE of p = sigmoid(d) against the soft labels y:

      (1/N) sum_i -[y_i log p_i + (1 - y_i) log(1 - p_i)]
        = (1/N) sum_i softplus(d_i) - y_i d_i      (the stable form)
  """
  return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.cast(targets, tf.float32), logits=differences))


def head_l2(model: RewardModel, l2: float) -> tf.Tensor:
  """l2 * ||w||^2 / 2 on the head's weights."""
  return l2 * tf.nn.l2_loss(model.head_kernel())


def loss(model: RewardModel, tokens_a: tf.Tensor, tokens_b: tf.Tensor,
         targets: tf.Tensor, l2: float, training: bool = False
         ) -> Tuple[tf.Tensor, tf.Tensor]:
  """(Bradley-Terry loss + L2 on the head, the Bradley-Terry loss alone)."""
  d = reward_differences(model, tokens_a, tokens_b, training=training)
  bt = bradley_terry_loss(d, targets)
  return bt + head_l2(model, l2), bt


# -- metrics -------------------------------------------------------------------
def wilson_interval(successes: int, trials: int, z: float = WILSON_Z
                    ) -> Optional[Tuple[float, float]]:
  """95 % Wilson score interval of a proportion k / n (None for n = 0):

      (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
  """
  if trials <= 0:
    return None
  p = successes / trials
  denominator = 1 + z * z / trials
  centre = (p + z * z / (2 * trials)) / denominator
  half = z * math.sqrt(p * (1 - p) / trials
                       + z * z / (4 * trials * trials)) / denominator
  return (max(0.0, centre - half), min(1.0, centre + half))


def _sigmoid(d):
  return 0.5 * (1 + np.tanh(0.5 * d))


def calibration(probabilities: np.ndarray, targets: np.ndarray,
                bins: int = CALIBRATION_BINS) -> List[Dict[str, Any]]:
  """Per equal-width bin of predicted p on [0, 1]: its edges, count, mean
  predicted p and observed mean target (None for an empty bin)."""
  index = np.minimum((probabilities * bins).astype(np.int64), bins - 1)
  out = []
  for i in range(bins):
    inside = index == i
    count = int(inside.sum())
    out.append({
        "low": i / bins, "high": (i + 1) / bins, "count": count,
        "mean_predicted": float(probabilities[inside].mean()) if count
                          else None,
        "mean_target": float(targets[inside].mean()) if count else None})
  return out


def pair_metrics(differences: np.ndarray, ratings: np.ndarray
                 ) -> Dict[str, Any]:
  """Accuracy (pairs with a preference) with its 95 % Wilson interval, log
  loss and its floor, calibration and its expected error, from the reward
  differences d = r(a) - r(b) and the ratings (1 = A much better)."""
  d = np.asarray(differences, np.float64)
  ratings = np.asarray(ratings)
  y = np.asarray(preferences.preference_target(ratings), np.float64)
  p = _sigmoid(d)
  prefers_a = ratings < preferences.SCALE_MID
  has_preference = ratings != preferences.SCALE_MID
  correct = np.where(prefers_a, d > 0, d < 0)[has_preference]
  k, n = int(correct.sum()), int(has_preference.sum())
  entropy = -(np.where(y > 0, y * np.log(np.maximum(y, 1e-300)), 0)
              + np.where(y < 1, (1 - y) * np.log(np.maximum(1 - y, 1e-300)),
                         0))
  bins = calibration(p, y)
  ece = sum(b["count"] * abs(b["mean_predicted"] - b["mean_target"])
            for b in bins if b["count"]) / max(len(d), 1)
  interval = wilson_interval(k, n)
  return {
      "pairs": int(len(d)), "pairs_with_preference": n,
      "accuracy": k / n if n else None,
      "accuracy_ci95": list(interval) if interval else None,
      "log_loss": float(np.mean(np.logaddexp(0, d) - y * d)) if len(d)
                  else None,
      "log_loss_floor": float(np.mean(entropy)) if len(d) else None,
      "calibration": bins, "expected_calibration_error": float(ece)}


def score_in_batches(model: Any, tokens: ArrayLike, batch_size: int = 512
                     ) -> np.ndarray:
  """Rewards [N] of tokens [N, T] from ``model`` (a RewardModel, a Scorer or
  any tokens -> rewards callable), ``batch_size`` melodies at a time."""
  tokens = np.asarray(tokens, np.int32)
  scores = [np.asarray(model(tokens[i:i + batch_size]), np.float64)
            for i in range(0, len(tokens), batch_size)]
  return np.concatenate(scores) if scores else np.zeros([0])


def evaluate(model: Any, pairs: preferences.PreferencePairs,
             batch_size: int = 512) -> Dict[str, Any]:
  """``pair_metrics`` of a model on a set of pairs."""
  d = (score_in_batches(model, pairs.tokens_a, batch_size)
       - score_in_batches(model, pairs.tokens_b, batch_size))
  return pair_metrics(d, pairs.rating)


def plot_calibration(metrics: Dict[str, Any], path: str,
                     title: str = "Reward model calibration") -> str:
  """The calibration of ``pair_metrics`` as a PNG at ``path`` (atomic):
  observed mean target against mean predicted p per bin, the diagonal
  (perfect calibration), and the pairs per bin below."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  bins = metrics["calibration"]
  full = [b for b in bins if b["count"]]
  fig, (top, bottom) = plt.subplots(
      2, 1, figsize=(5.5, 6.5), sharex=True,
      gridspec_kw={"height_ratios": [3, 1]})
  top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  top.plot([b["mean_predicted"] for b in full],
           [b["mean_target"] for b in full], "o-", color="C0",
           label="pairs (all ratings), by bin of p")
  top.set_xlim(0, 1)
  top.set_ylim(0, 1)
  top.set_ylabel("observed mean target (7 - rating) / 6")
  accuracy = metrics.get("accuracy")
  interval = metrics.get("accuracy_ci95")
  subtitle = (f"accuracy {accuracy:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
              f" on {metrics['pairs_with_preference']} pairs with a "
              "preference" if accuracy is not None else "no pair with a "
              "preference")
  top.set_title(f"{title}\n{subtitle}", fontsize=10)
  top.legend(loc="upper left", fontsize=8, frameon=False)
  width = 1 / len(bins)
  bottom.bar([b["low"] + width / 2 for b in bins],
             [b["count"] for b in bins], width=width * 0.9, color="C0")
  bottom.set_xlabel("predicted P(A preferred) = sigmoid(r(a) - r(b))")
  bottom.set_ylabel("pairs")
  fig.tight_layout()
  with atomic_files.open_atomic(path, "wb") as f:
    fig.savefig(f, dpi=100, format="png", bbox_inches="tight")
  plt.close(fig)
  return path


# -- saving --------------------------------------------------------------------
class _Holder:
  """A plain (not tf.Module-tracked) holder of the Keras model: the
  SavedModel needs its variables only, not Keras' own saved call graphs."""

  def __init__(self, model):
    self.model = model


class _Serving(tf.Module):
  """The ``score`` signature: tokens int32 [B, T] -> {reward: float32 [B]}."""

  def __init__(self, model):
    super().__init__(name="reward_model_serving")
    self._holder = _Holder(model)
    self.model_variables = list(model.variables)
    self.score = tf.function(self._score, input_signature=[
        tf.TensorSpec([None, None], tf.int32, name=INPUT_NAME)])

  def _score(self, tokens):
    checks = [
        tf.debugging.assert_greater(
            tf.shape(tokens)[1], 0,
            message=f"{INPUT_NAME} must hold at least one step"),
        tf.debugging.assert_non_negative(
            tokens, message=f"{INPUT_NAME} must be classes 0..37"),
        tf.debugging.assert_less(
            tokens, NUM_CLASSES,
            message=f"{INPUT_NAME} must be classes 0..37")]
    with tf.control_dependencies(checks):
      tokens = tf.identity(tokens)
    return {OUTPUT_NAME: self._holder.model(tokens)}


def save(model: RewardModel, directory: str,
         info: Optional[Dict[str, Any]] = None) -> str:
  """Writes the SavedModel (``score`` signature), the Keras weights and
  reward_model.json (architecture + ``info``: config, metrics) into a
  staging folder that then replaces ``directory``; returns it."""
  directory = os.path.abspath(directory)
  serving = _Serving(model)
  with atomic_files.replace_dir(directory) as staging:
    tf.saved_model.save(serving, staging, signatures={
        SIGNATURE: serving.score.get_concrete_function()})
    tf.train.Checkpoint(model=model).write(
        os.path.join(staging, WEIGHTS_PREFIX))
    record = {
        "what": "preference reward model (rl_tuner_tf/reward_model.py)",
        "layer_sizes": list(model.layer_sizes), "head": HEAD,
        "signature": {"name": SIGNATURE,
                      "inputs": {INPUT_NAME: "int32 [B, T], classes 0..37"},
                      "outputs": {OUTPUT_NAME: "float32 [B]"}},
        "weights": WEIGHTS_PREFIX}
    record.update(info or {})
    with open(os.path.join(staging, CONFIG_FILENAME), "w") as f:
      json.dump(record, f, indent=2)
  return directory


def read_config(directory: str) -> Dict[str, Any]:
  """reward_model.json of a saved reward model; RewardModelError naming
  the folder when it is missing or unreadable."""
  path = os.path.join(directory, CONFIG_FILENAME)
  if not os.path.isdir(directory):
    raise RewardModelError(f"no reward model at {directory!r}: no such "
                           "folder")
  if not os.path.isfile(path):
    raise RewardModelError(f"no reward model in {directory!r}: "
                           f"{CONFIG_FILENAME} is missing")
  try:
    with open(path) as f:
      config = json.load(f)
    if not isinstance(config, dict) or "layer_sizes" not in config:
      raise ValueError("it has no layer_sizes")
  except (OSError, ValueError) as e:
    raise RewardModelError(f"reward model {directory!r}: {path} cannot be "
                           f"read ({e}); the folder is damaged -- train or "
                           "save the model again") from None
  return config


class Scorer:
  """A saved reward model's ``score`` signature as a function: tokens
  [B, T] -> rewards [B] (numpy); ``config`` holds reward_model.json."""

  def __init__(self, directory: str, loaded: Any, config: Dict[str, Any]):
    self.directory = directory
    self.config = config
    self._loaded = loaded  # owns the signature's variables
    self._signature = loaded.signatures[SIGNATURE]

  @property
  def metrics(self) -> Dict[str, Any]:
    return self.config.get("metrics", {})

  def __call__(self, tokens: ArrayLike) -> np.ndarray:
    tokens = tf.convert_to_tensor(np.asarray(tokens, np.int32))
    return self._signature(**{INPUT_NAME: tokens})[OUTPUT_NAME].numpy()


def load(directory: str) -> Scorer:
  """The saved reward model at ``directory`` as a ``Scorer`` (the
  SavedModel's ``score`` signature); RewardModelError when the folder is
  missing or broken."""
  config = read_config(directory)
  try:
    return Scorer(directory, tf.saved_model.load(directory), config)
  except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise RewardModelError(
        f"reward model {directory!r}: its SavedModel cannot be read "
        f"({type(e).__name__}: {first}); the folder is damaged -- train or "
        "save the model again") from None


def load_model(directory: str) -> RewardModel:
  """The Keras RewardModel restored from a saved folder's weights (to train
  it further or read its parts)."""
  config = read_config(directory)
  model = RewardModel(config["layer_sizes"])
  prefix = os.path.join(directory, config.get("weights", WEIGHTS_PREFIX))
  try:
    tf.train.Checkpoint(model=model).read(prefix).assert_consumed()
  except (tf.errors.OpError, ValueError, AssertionError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise RewardModelError(
        f"reward model {directory!r}: its weights {prefix}.* cannot be read "
        f"({type(e).__name__}: {first})") from None
  return model
