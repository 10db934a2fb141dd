"""One step of a Note RNN with fused LSTM math, for the exported generation loop.

The same function as ``NoteRNN.step`` (up to float rounding; checked in
tests/test_export_generator.py), in fewer and cheaper ops per step:

  * layer 0 input: one_hot(token) @ W_x + b  ==  row ``token`` of (W_x + b),
    a gather instead of a [B, 38] x [38, 4u] matmul and a bias add;
  * deeper layers: [x, h] @ [W_x; W_h] + b, one matmul;
  * gates as in Keras' LSTMCell (order i, f, c, o; sigmoid / tanh):
      c' = sigmoid(f) * c + sigmoid(i) * tanh(g),   h' = sigmoid(o) * tanh(c');
  * the state travels packed: one [B, S] tensor, (h_0, c_0, h_1, c_1, ...)
    concatenated, so a tf.while_loop carries one state tensor per network
    instead of 2 per layer (each loop variable costs control-flow ops on every
    iteration).

Weights are read from the Keras variables inside the tf.function (once per
call, outside the loop), so the SavedModel keeps the variables.

Stacking the policy network and the Reward RNN along a leading axis (one
BatchMatMul for both) was measured slower on CPU than two 2-D MatMuls at
batch 1 and batch 1024 (benchmarks/bench_export.py), so networks stay separate.
"""
import collections
from typing import List, Sequence, Tuple, TYPE_CHECKING

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import tensorflow as tf

if TYPE_CHECKING:
  from rl_tuner_tf import note_rnn

FusedWeights = collections.namedtuple(
    "FusedWeights", ["input_table", "recurrent_kernel", "deep_kernels",
                     "deep_biases", "logits_kernel", "logits_bias"])


def check_fusable(network: "note_rnn.NoteRNN") -> None:
  """Raises ValueError unless ``network``'s cells compute what ``step`` does."""
  for lstm in network.lstm_layers:
    cell = lstm.cell
    if (cell.activation is not tf.keras.activations.tanh or
        cell.recurrent_activation is not tf.keras.activations.sigmoid or
        not cell.use_bias or cell.dropout or cell.recurrent_dropout):
      raise ValueError(f"{network.name}/{lstm.name}: only tanh/sigmoid LSTM cells "
                       "with a bias and no dropout can be fused")


def fused_weights(network: "note_rnn.NoteRNN") -> FusedWeights:
  """The network's variables, rearranged for ``step``."""
  cells = [lstm.cell for lstm in network.lstm_layers]
  deep_kernels = tuple(tf.concat([c.kernel, c.recurrent_kernel], axis=0)
                       for c in cells[1:])
  return FusedWeights(
      input_table=cells[0].kernel + cells[0].bias,  # row `token` = one-hot @ W + b
      recurrent_kernel=tf.convert_to_tensor(cells[0].recurrent_kernel),
      deep_kernels=deep_kernels,
      deep_biases=tuple(tf.convert_to_tensor(c.bias) for c in cells[1:]),
      logits_kernel=tf.convert_to_tensor(network.logits_layer.kernel),
      logits_bias=tf.convert_to_tensor(network.logits_layer.bias))


def state_sizes(layer_sizes: Sequence[int]) -> List[int]:
  """Widths of the packed state's parts: (h_0, c_0, h_1, c_1, ...)."""
  return [int(u) for u in layer_sizes for _ in range(2)]


def _gates(z, c):
  i, f, g, o = tf.split(z, 4, axis=-1)
  c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
  return tf.sigmoid(o) * tf.tanh(c), c


def step(weights: FusedWeights, tokens: tf.Tensor, packed_state: tf.Tensor,
         layer_sizes: Sequence[int]) -> Tuple[tf.Tensor, tf.Tensor]:
  """tokens [B] int32, packed state [B, S] -> (logits [B, 38], new packed state)."""
  parts = tf.split(packed_state, state_sizes(layer_sizes), axis=-1)
  z = tf.gather(weights.input_table, tokens) + tf.matmul(
      parts[0], weights.recurrent_kernel)
  h, c = _gates(z, parts[1])
  new_parts = [h, c]
  for i, (kernel, bias) in enumerate(zip(weights.deep_kernels, weights.deep_biases)):
    z = tf.matmul(tf.concat([h, parts[2 * i + 2]], axis=-1), kernel) + bias
    h, c = _gates(z, parts[2 * i + 3])
    new_parts.extend([h, c])
  logits = tf.matmul(h, weights.logits_kernel) + weights.logits_bias
  return logits, tf.concat(new_parts, axis=-1)


def pack_state(state: Sequence[tf.Tensor]) -> tf.Tensor:
  """Flat state tuple (h_0, c_0, ...) -> packed [B, S]."""
  return tf.concat(list(state), axis=-1)


def unpack_state(packed: tf.Tensor, layer_sizes: Sequence[int]
                 ) -> Tuple[tf.Tensor, ...]:
  """Packed [B, S] -> flat state tuple (h_0, c_0, ...)."""
  return tuple(tf.split(packed, state_sizes(layer_sizes), axis=-1))
