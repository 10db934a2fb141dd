"""The Note RNN: an LSTM over the 38-class melody encoding (paper section 3.1).

One definition serves training (``call`` over whole sequences, which uses the
cuDNN kernel on a GPU), the RL environment's frozen Reward RNN, the Q / Psi / G
networks, and the exported models (``step``: one token and explicit LSTM state
in, 38 logits and the new state out).

LSTM state is a flat tuple ``(h_1, c_1, h_2, c_2, ...)`` of ``[batch, units]``
tensors, one (h, c) pair per layer.
"""
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline.encoding import NUM_CLASSES

DEFAULT_LAYER_SIZES = (100,)
CONFIG_FILENAME = "config.json"
CHECKPOINT_PREFIX = "note_rnn"
SHIPPED_CHECKPOINT_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "checkpoints", "note_rnn")


class CheckpointMismatchError(ValueError):
  """A checkpoint's architecture differs from the requested one."""


class UnreadableCheckpointError(CheckpointMismatchError):
  """A Note RNN checkpoint folder whose files are missing or damaged."""


def lstm_stack(layer_sizes: Sequence[int]) -> List[tf.keras.layers.LSTM]:
  """The Note RNN's LSTM layers (lstm_0, lstm_1, ...: sequences and final
  states out), for every model that reads melodies as it does."""
  sizes = tuple(int(s) for s in layer_sizes)
  if not sizes or min(sizes) <= 0:
    raise ValueError(f"layer_sizes must be positive integers, got {layer_sizes}")
  return [tf.keras.layers.LSTM(units, return_sequences=True,
                               return_state=True, name=f"lstm_{i}")
          for i, units in enumerate(sizes)]


def run_lstm_stack(layers: Sequence[tf.keras.layers.LSTM], tokens: tf.Tensor,
                   initial_state: Optional[Sequence[tf.Tensor]] = None,
                   training: bool = False
                   ) -> Tuple[tf.Tensor, Tuple[tf.Tensor, ...]]:
  """tokens [B, T] int -> (top layer's outputs [B, T, units], final state
  (h_0, c_0, h_1, c_1, ...)), the tokens read as one-hot classes."""
  x = tf.one_hot(tf.cast(tokens, tf.int32), NUM_CLASSES)
  final = []
  for i, lstm in enumerate(layers):
    init = None if initial_state is None else list(initial_state[2 * i:2 * i + 2])
    x, h, c = lstm(x, initial_state=init, training=training)
    final.extend([h, c])
  return x, tuple(final)


class NoteRNN(tf.keras.Model):
  """LSTM stack + linear read-out to 38 logits."""

  def __init__(self, layer_sizes=DEFAULT_LAYER_SIZES, name="note_rnn"):
    super().__init__(name=name)
    self.layer_sizes = tuple(int(s) for s in layer_sizes)
    self.lstm_layers = lstm_stack(self.layer_sizes)
    self.logits_layer = tf.keras.layers.Dense(NUM_CLASSES, name="logits")
    # Build all weights now, so checkpoints restore eagerly and step() works
    # before any call().
    self(tf.zeros([1, 1], tf.int32))

  # -- state -----------------------------------------------------------------
  def zero_state(self, batch_size: Union[int, tf.Tensor],
                 dtype: tf.dtypes.DType = tf.float32) -> Tuple[tf.Tensor, ...]:
    return tuple(tf.zeros([batch_size, units], dtype)
                 for units in self.layer_sizes for _ in range(2))

  def state_spec(self) -> Tuple[tf.TensorSpec, ...]:
    """TensorSpecs of one (unbatched) state, for TF-Agents specs."""
    return tuple(tf.TensorSpec([units], tf.float32)
                 for units in self.layer_sizes for _ in range(2))

  # -- sequence call -----------------------------------------------------------
  def call(self, tokens: tf.Tensor,
           initial_state: Optional[Sequence[tf.Tensor]] = None,
           training: bool = False
           ) -> Tuple[tf.Tensor, Tuple[tf.Tensor, ...]]:
    """tokens [B, T] int -> (logits [B, T, 38], final state tuple)."""
    x, final = self.features(tokens, initial_state, training=training)
    return self.logits_layer(x), final

  def features(self, tokens: tf.Tensor,
               initial_state: Optional[Sequence[tf.Tensor]] = None,
               training: bool = False
               ) -> Tuple[tf.Tensor, Tuple[tf.Tensor, ...]]:
    """tokens [B, T] int -> (top LSTM outputs [B, T, units], final state):
    what the logits read (a value head reads them too)."""
    return run_lstm_stack(self.lstm_layers, tokens, initial_state, training)

  # -- single step -------------------------------------------------------------
  def step(self, tokens: tf.Tensor, state: Sequence[tf.Tensor]
           ) -> Tuple[tf.Tensor, Tuple[tf.Tensor, ...]]:
    """tokens [B] int, state tuple -> (logits [B, 38], new state tuple)."""
    x = tf.one_hot(tf.cast(tokens, tf.int32), NUM_CLASSES)
    new_state = []
    for i, lstm in enumerate(self.lstm_layers):
      x, (h, c) = lstm.cell(x, [state[2 * i], state[2 * i + 1]])
      new_state.extend([h, c])
    return self.logits_layer(x), tuple(new_state)

  def weight_decay_variables(self) -> List[tf.Variable]:
    """Weight matrices (not biases) that the L2 penalty applies to."""
    return [v for v in self.trainable_variables if "bias" not in v.name]

  def get_config(self) -> Dict[str, List[int]]:
    return {"layer_sizes": list(self.layer_sizes)}


# -- checkpoints -------------------------------------------------------------
def save(model: NoteRNN, directory: str,
         extra_config: Optional[Dict[str, Any]] = None) -> str:
  """Writes ``directory/note_rnn-*`` and ``directory/config.json``."""
  os.makedirs(directory, exist_ok=True)
  prefix = os.path.join(directory, CHECKPOINT_PREFIX)
  for f in os.listdir(directory):  # keep exactly one checkpoint in the folder
    if f.startswith((CHECKPOINT_PREFIX + ".", CHECKPOINT_PREFIX + "-")) or f == "checkpoint":
      os.remove(os.path.join(directory, f))
  path = tf.train.Checkpoint(model=model).write(prefix)
  config = {"layer_sizes": list(model.layer_sizes), "checkpoint": os.path.basename(path)}
  config.update(extra_config or {})
  atomic_files.write_json(os.path.join(directory, CONFIG_FILENAME), config)
  return path


def read_config(directory: str) -> Dict[str, Any]:
  path = os.path.join(directory, CONFIG_FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"No Note RNN checkpoint in {directory!r}: {CONFIG_FILENAME} is missing.")
  try:
    with open(path) as f:
      config = json.load(f)
    if not isinstance(config, dict) or "checkpoint" not in config:
      raise ValueError("it has no 'checkpoint' entry")
    return config
  except (OSError, ValueError) as e:
    raise UnreadableCheckpointError(
        f"Note RNN checkpoint {directory!r}: {path} cannot be read ({e}); "
        "the folder is damaged -- save or export the model again.") from None


def _checkpoint_shapes(path):
  return {name: tuple(shape) for name, shape in tf.train.list_variables(path)
          if name.startswith("model/")}


def _expected_shapes(model):
  """{checkpoint key: shape} that ``model`` would write."""
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    path = tf.train.Checkpoint(model=model).write(os.path.join(tmp, "probe"))
    return _checkpoint_shapes(path)


def check_compatible(directory: str, layer_sizes: Sequence[int],
                     model: Optional[NoteRNN] = None) -> Dict[str, Any]:
  """Raises CheckpointMismatchError naming expected and found shapes.

  model: an already built NoteRNN(layer_sizes) to compare, if the caller has one.
  """
  layer_sizes = tuple(int(s) for s in layer_sizes)
  config = read_config(directory)
  found = _checkpoint_shapes(os.path.join(directory, config["checkpoint"]))
  expected = _expected_shapes(model if model is not None else NoteRNN(layer_sizes))
  problems = []
  for key, shape in sorted(expected.items()):
    if key not in found:
      problems.append(f"{key}: expected {shape}, missing from checkpoint")
    elif found[key] != shape:
      problems.append(f"{key}: expected {shape}, found {found[key]}")
  for key in sorted(set(found) - set(expected)):
    problems.append(f"{key}: found {found[key]}, not in the requested model")
  if problems:
    raise CheckpointMismatchError(
        f"Note RNN checkpoint {directory!r} was saved with LSTM layer sizes "
        f"{config.get('layer_sizes')}, but layer sizes {list(layer_sizes)} were "
        "requested. Expected vs found shapes:\n  " + "\n  ".join(problems))
  return config


def load(directory: str = SHIPPED_CHECKPOINT_DIR,
         layer_sizes: Optional[Sequence[int]] = None) -> NoteRNN:
  """Builds a NoteRNN and restores it from ``directory``.

  layer_sizes: the architecture the caller needs; None takes the checkpoint's.
  A mismatch raises CheckpointMismatchError before anything is restored.
  """
  config = read_config(directory)
  if layer_sizes is None:
    layer_sizes = config.get("layer_sizes")
    if (not isinstance(layer_sizes, list) or not layer_sizes
        or not all(isinstance(s, int) and s > 0 for s in layer_sizes)):
      raise UnreadableCheckpointError(
          f"Note RNN checkpoint {directory!r}: {CONFIG_FILENAME} has no valid "
          f"layer_sizes (got {layer_sizes!r}); the folder is damaged -- save "
          "or export the model again.")
  model = NoteRNN(layer_sizes)
  prefix = os.path.join(directory, config["checkpoint"])
  try:
    check_compatible(directory, layer_sizes, model)
    tf.train.Checkpoint(model=model).read(prefix).assert_consumed()
  except CheckpointMismatchError:
    raise
  except (tf.errors.OpError, OSError, ValueError, IndexError, KeyError,
          AssertionError) as e:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise UnreadableCheckpointError(
        f"Note RNN checkpoint {directory!r}: its weights {prefix}.* cannot be "
        f"read ({type(e).__name__}: {first_line}); the folder is damaged -- "
        "save or export the model again.") from None
  return model


def shipped_or_random(seed: int = 0) -> Tuple[NoteRNN, str]:
  """-> (the shipped Note RNN, "shipped checkpoint") when its files are here,
  else (a NoteRNN with seeded random weights, "random Note RNN"): for
  benchmarks, whose speed does not depend on the weights."""
  if os.path.exists(os.path.join(SHIPPED_CHECKPOINT_DIR, CONFIG_FILENAME)):
    return load(), "shipped checkpoint"
  tf.random.set_seed(seed)
  return NoteRNN(), "random Note RNN"
