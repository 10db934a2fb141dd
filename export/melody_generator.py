"""The exported melody model: a ``tf.Module`` whose ``tf.function``s become the
SavedModel signatures served by TF Serving.

A melody model is a policy network (the Q / Psi / G network of a tuned model)
plus the Reward RNN (the frozen Note RNN). A bare Note RNN export is the same
module with a single network that plays both roles (kind ``note_rnn``: action
values = logits). Generation follows the RL Tuner's composition loop
(reference section 3): the networks are primed, then at every step both
networks read the previous note, the next note is drawn from the policy's
logits (``melody_policy.policy_logits``: Eq. 5 / 12 / 14) and its log p under
the Reward RNN is recorded.

Signatures (all inputs validated in the graph; violations raise
``InvalidArgumentError`` naming the input and the limit):

  serving_default / generate
      primer int32 [B, T] (T >= 1), num_steps int32 [], temperature float32 []
      (0 = greedy argmax), seed int64 [] (stateless RNG: same seed, same
      output) -> tokens int32 [B, num_steps], log_p float32 [B, num_steps].
      The primer runs through both networks (its last token is the first
      "previous note"); the whole loop is one ``tf.while_loop``.
  generate_random_primer
      batch_size int32 [], num_steps, temperature, seed -> primer int32 [B, 1]
      (a note uniform over 0..random_note_max, default 36 like the training
      environment; drawn from the seed), tokens, log_p.
  step
      token int32 [B] + state tensors -> action_values, logits (Reward RNN),
      policy_logits, log_softmax of the logits, and the new state under the
      same names as the state inputs (feed them straight back).
  initial_state
      batch_size int32 [] -> the zero state, named as ``step``'s state inputs.

Sampling is rl_tuner_tf/compose.py's loop and random scheme: next note =
argmax(policy_logits + temperature * Gumbel noise), an exact sample of
softmax(policy_logits / temperature) (the greedy argmax at 0), the noise drawn
statelessly from (seed, step): the evaluation and sample_note_rnn give the
same melodies for the same primer, temperature and seed. The networks run
through export/fused_lstm.py (same math as NoteRNN.step, fewer ops per step).

State tensor names: ``q_h0, q_c0, q_h1, ...`` for the policy network and
``reward_h0, reward_c0, ...`` for the Reward RNN (a bare Note RNN export has
only the ``reward_*`` ones), each float32 [B, units of that layer].
"""
import inspect
from typing import Dict, Optional, Sequence, Tuple, TYPE_CHECKING, Union

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import tensorflow as tf

from data_pipeline.encoding import NUM_CLASSES
from export import fused_lstm
from rl_tuner_tf import compose
from rl_tuner_tf import melody_policy

if TYPE_CHECKING:
  from rl_tuner_tf import note_rnn

# Documented serving limits (also exported flags of export.saved_model).
DEFAULT_MAX_STEPS = 1024
DEFAULT_MAX_BATCH = 4096

# The random priming note is uniform over 0..DEFAULT_RANDOM_NOTE_MAX, as in the
# training environment (rl_tuner_tf/melody_environment.py; reference section 3:
# the original draws 0..36, never 37). Set random_note_max=37 for all classes.
DEFAULT_RANDOM_NOTE_MAX = 36


def _state_names(prefix, layer_sizes):
  names = []
  for i in range(len(layer_sizes)):
    names.extend([f"{prefix}_h{i}", f"{prefix}_c{i}"])
  return names


def _state_units(layer_sizes):
  return [units for units in layer_sizes for _ in range(2)]


def _with_parameter_names(fn, names):
  """Wraps ``fn(*args)`` so its Python signature names each argument: the
  in-process ``tf.function`` then takes keywords (``step(token=..,
  q_h0=..)``) just like the SavedModel signature does."""
  def wrapper(*args):
    return fn(*args)
  kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
  wrapper.__signature__ = inspect.Signature(
      [inspect.Parameter(n, kind) for n in names])
  wrapper.__name__ = fn.__name__
  return wrapper


class _Networks:
  """A plain (not tf.Module-tracked) holder of the Keras networks."""

  def __init__(self, q_network, reward_rnn):
    self.q_network = q_network
    self.reward_rnn = reward_rnn
    self.in_state_order = ([] if q_network is None else [q_network]) + [reward_rnn]


class MelodyGenerator(tf.Module):
  """Generation + single-step serving functions over a melody model.

  Args:
    kind: one of ``melody_policy.MODEL_KINDS``.
    reward_rnn: the Note RNN (Reward RNN) — gives log p, and is the whole
      model for kind ``note_rnn``.
    q_network: the tuned Q / Psi / G network; must be None for ``note_rnn``.
    max_steps, max_batch: limits enforced in the graph.
    random_note_max: random primers are uniform over 0..random_note_max.
  """

  def __init__(self, kind: str, reward_rnn: "note_rnn.NoteRNN",
               q_network: Optional["note_rnn.NoteRNN"] = None,
               max_steps: int = DEFAULT_MAX_STEPS,
               max_batch: int = DEFAULT_MAX_BATCH,
               random_note_max: int = DEFAULT_RANDOM_NOTE_MAX,
               name: str = "melody_generator") -> None:
    super().__init__(name=name)
    melody_policy.check_model_kind(kind)
    if (kind == "note_rnn") != (q_network is None):
      raise ValueError("kind 'note_rnn' takes no q_network; tuned kinds need one "
                       f"(kind={kind!r}, q_network={'given' if q_network else None})")
    if not 0 <= int(random_note_max) < NUM_CLASSES:
      raise ValueError(f"random_note_max must be in [0, {NUM_CLASSES - 1}], "
                       f"got {random_note_max}")
    if int(max_steps) < 1 or int(max_batch) < 1:
      raise ValueError(f"max_steps and max_batch must be >= 1, got "
                       f"{max_steps}, {max_batch}")
    self.kind = kind
    # The Keras models stay untracked: the SavedModel only needs their
    # variables (tracked below), not Keras' own saved call graphs, which
    # would make every export ~10x slower to write and larger.
    self._nets = _Networks(q_network, reward_rnn)
    self.max_steps = int(max_steps)
    self.max_batch = int(max_batch)
    self.random_note_max = int(random_note_max)

    self._reward_names = _state_names("reward", reward_rnn.layer_sizes)
    self._q_names = ([] if q_network is None else
                     _state_names("q", q_network.layer_sizes))
    self.state_names = tuple(self._q_names + self._reward_names)
    units = ([] if q_network is None else _state_units(q_network.layer_sizes))
    units += _state_units(reward_rnn.layer_sizes)
    self._state_units = tuple(units)
    for net in self._nets.in_state_order:
      fused_lstm.check_fusable(net)
    self.network_variables = [
        v for net in self._nets.in_state_order for v in net.variables]

    scalar = lambda dtype, n: tf.TensorSpec([], dtype, name=n)  # noqa: E731
    self.generate = tf.function(
        self._generate, input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="primer"),
            scalar(tf.int32, "num_steps"), scalar(tf.float32, "temperature"),
            scalar(tf.int64, "seed")])
    self.generate_random_primer = tf.function(
        self._generate_random_primer, input_signature=[
            scalar(tf.int32, "batch_size"), scalar(tf.int32, "num_steps"),
            scalar(tf.float32, "temperature"), scalar(tf.int64, "seed")])
    self.step = tf.function(
        _with_parameter_names(self._step_signature,
                              ("token",) + self.state_names),
        input_signature=(
            [tf.TensorSpec([None], tf.int32, name="token")] +
            [tf.TensorSpec([None, u], tf.float32, name=n)
             for n, u in zip(self.state_names, self._state_units)]))
    self.initial_state = tf.function(
        self._initial_state, input_signature=[scalar(tf.int32, "batch_size")])

  @property
  def q_network(self) -> Optional["note_rnn.NoteRNN"]:
    return self._nets.q_network

  @property
  def reward_rnn(self) -> "note_rnn.NoteRNN":
    return self._nets.reward_rnn

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """{signature name: concrete function} for ``tf.saved_model.save``."""
    generate = self.generate.get_concrete_function()
    return {
        "serving_default": generate,
        "generate": generate,
        "generate_random_primer": self.generate_random_primer.get_concrete_function(),
        "step": self.step.get_concrete_function(),
        "initial_state": self.initial_state.get_concrete_function(),
    }

  # -- the networks, one step ------------------------------------------------
  def zero_state(self, batch_size: Union[int, tf.Tensor]
                 ) -> Tuple[tf.Tensor, ...]:
    return tuple(tf.zeros([batch_size, u], tf.float32) for u in self._state_units)

  def _fused_weights(self):
    return [fused_lstm.fused_weights(net) for net in self._nets.in_state_order]

  def _to_packed(self, flat_state):
    """flat state (q..., reward...) -> [packed [B, S] per network]."""
    packed, i = [], 0
    for net in self._nets.in_state_order:
      n = 2 * len(net.layer_sizes)
      packed.append(fused_lstm.pack_state(flat_state[i:i + n]))
      i += n
    return packed

  def _to_flat(self, packed):
    flat = []
    for net, p in zip(self._nets.in_state_order, packed):
      flat.extend(fused_lstm.unpack_state(p, net.layer_sizes))
    return tuple(flat)

  def _fused_step(self, weights, tokens, packed):
    """-> (action_values [B, 38], reward_logits [B, 38], new packed state)."""
    logits, new_packed = [], []
    for net, w, p in zip(self._nets.in_state_order, weights, packed):
      l, p = fused_lstm.step(w, tokens, p, net.layer_sizes)
      logits.append(l)
      new_packed.append(p)
    # Policy network first, Reward RNN last (the same one for a bare Note RNN).
    return logits[0], logits[-1], new_packed

  def network_step(self, tokens: tf.Tensor, state: Sequence[tf.Tensor]
                   ) -> Tuple[tf.Tensor, tf.Tensor, Tuple[tf.Tensor, ...]]:
    """tokens [B], flat state -> (action_values, reward_logits, new flat state)."""
    action_values, reward_logits, new_packed = self._fused_step(
        self._fused_weights(), tokens, self._to_packed(state))
    return action_values, reward_logits, self._to_flat(new_packed)

  # -- validation -------------------------------------------------------------
  def _check_batch(self, batch_size, what):
    return [
        tf.debugging.assert_greater_equal(
            batch_size, 1, message=f"{what}: batch size must be >= 1"),
        tf.debugging.assert_less_equal(
            batch_size, self.max_batch,
            message=f"{what}: batch size must be <= {self.max_batch} "
                    "(the export's max_batch)"),
    ]

  def _check_tokens(self, tokens, what):
    return [
        tf.debugging.assert_greater_equal(
            tokens, 0, message=f"{what}: tokens must be in [0, {NUM_CLASSES})"),
        tf.debugging.assert_less(
            tokens, NUM_CLASSES,
            message=f"{what}: tokens must be in [0, {NUM_CLASSES})"),
    ]

  def _check_generation_args(self, num_steps, temperature):
    return [
        tf.debugging.assert_greater_equal(
            num_steps, 1, message="num_steps must be >= 1"),
        tf.debugging.assert_less_equal(
            num_steps, self.max_steps,
            message=f"num_steps must be <= {self.max_steps} (the export's max_steps)"),
        tf.debugging.Assert(
            tf.math.is_finite(temperature) & (temperature >= 0.0),
            ["temperature must be finite and >= 0 (0 = greedy); got", temperature]),
    ]

  # -- signatures --------------------------------------------------------------
  def _generate(self, primer, num_steps, temperature, seed):
    checks = self._check_batch(tf.shape(primer)[0], "primer")
    checks += [tf.debugging.assert_greater_equal(
        tf.shape(primer)[1], 1, message="primer: needs at least one token (T >= 1)")]
    checks += self._check_tokens(primer, "primer")
    checks += self._check_generation_args(num_steps, temperature)
    with tf.control_dependencies(checks):
      primer = tf.identity(primer)
      num_steps = tf.identity(num_steps)
    return self._run(primer, num_steps, temperature, seed)

  def _generate_random_primer(self, batch_size, num_steps, temperature, seed):
    checks = self._check_batch(batch_size, "batch_size")
    checks += self._check_generation_args(num_steps, temperature)
    with tf.control_dependencies(checks):
      batch_size = tf.identity(batch_size)
      num_steps = tf.identity(num_steps)
    # A uniformly random first note (reference section 3: the composition is
    # primed with a random note and a zero LSTM state).
    primer = compose.random_primer(batch_size, seed, self.random_note_max)
    outputs = self._run(primer, num_steps, temperature, seed)
    outputs["primer"] = primer
    return outputs

  def _run(self, primer, num_steps, temperature, seed):
    """compose.py's loop over the fused networks. primer [B, T] (validated)."""
    weights = self._fused_weights()

    def step(previous, packed):
      action_values, reward_logits, packed = self._fused_step(
          weights, previous, list(packed))
      return (melody_policy.policy_logits(self.kind, action_values,
                                          reward_logits),
              reward_logits, tuple(packed))

    state = tuple(self._to_packed(self.zero_state(tf.shape(primer)[0])))
    return compose.compose(step, primer, num_steps, temperature, seed, state,
                           with_log_pi=False)

  def _step_signature(self, token, *state):
    batch_size = tf.shape(token)[0]
    checks = self._check_batch(batch_size, "token")
    checks += self._check_tokens(token, "token")
    for name, s in zip(self.state_names, state):
      checks.append(tf.debugging.assert_equal(
          tf.shape(s)[0], batch_size,
          message=f"state {name}: batch size differs from token's"))
    with tf.control_dependencies(checks):
      token = tf.identity(token)
    action_values, reward_logits, new_state = self.network_step(token, state)
    outputs = {
        "action_values": action_values,
        "logits": reward_logits,
        "log_probs": tf.nn.log_softmax(reward_logits, axis=-1),
        "policy_logits": melody_policy.policy_logits(
            self.kind, action_values, reward_logits),
    }
    outputs.update(zip(self.state_names, new_state))
    return outputs

  def _initial_state(self, batch_size):
    with tf.control_dependencies(self._check_batch(batch_size, "batch_size")):
      batch_size = tf.identity(batch_size)
    return dict(zip(self.state_names, self.zero_state(batch_size)))
