"""The one composition loop and the one random scheme (reference section 3).

Every tool that writes melodies runs ``compose``: the evaluation's sampler
(evaluation/generate.py), ``python -m rl_tuner_tf.sample_note_rnn``, the
exported SavedModel (export/melody_generator.py) and the on-policy tuners'
rollouts (on_policy_tuning.py). Given the same model, primer, temperature and
seed they write the same tokens.

  primer [B, P]     its first P - 1 tokens set the networks' state, its last
                    one is the first "previous note" (P = 1: a zero state)
  step t = 0..N-1   policy_logits, prior_logits, state = step(previous, state)
                    token_t = argmax(policy_logits + temperature * g_t)
                    g_t = Gumbel noise, stateless, seeded by (seed, t)
                    log p_t  = log softmax(prior_logits)[token_t]
                    log pi_t = log softmax(policy_logits)[token_t]
                    reward_t, state = observe(token_t, state)   (optional)

argmax(l + T g) with Gumbel g is an exact sample of softmax(l / T) (the
Gumbel-max trick) and the greedy argmax at T = 0. The noise of row b at step
t is the b-th row of a [B, 38] stateless draw, so a melody does not depend
on how many others are composed with it. A random primer (the paper's
protocol: a note uniform over 0..max_class and a zero state) is drawn with
the seed pair (seed, PRIMER_STREAM), a stream the steps never use.

``observe`` is the world answering each token: a tuner's rollout steps its
environment there (the reward r_MT/c and the Reward RNN's next logits, which
the next step returns as its prior logits). Seeds are non-negative for the
tools that compose for users; a tuner's rollout k of a run seeded s composes
with ``rollout_seed(s, k)`` = -1 - (s + k * 2**32), a stream none of them
uses, so training noise never reappears in an evaluation.
"""
from typing import Any, Callable, Dict, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

PRIMER_STREAM = -1  # second word of the random primer's seed pair
_TINY = float(np.finfo(np.float32).tiny)  # keeps the Gumbel noise finite

# (previous tokens [B], state) -> (policy logits, prior logits, new state)
Step = Callable[[tf.Tensor, Any], Tuple[tf.Tensor, tf.Tensor, Any]]
# (primer tokens but the last [B, P - 1], state) -> state
Prime = Callable[[tf.Tensor, Any], Any]
# (chosen tokens [B], state) -> (rewards [B] float32, new state)
Observe = Callable[[tf.Tensor, Any], Tuple[tf.Tensor, Any]]


def choose(logits: tf.Tensor, temperature: tf.Tensor, seed: tf.Tensor,
           t: tf.Tensor) -> tf.Tensor:
  """The next tokens [B]: argmax(logits + temperature * Gumbel(seed, t))."""
  uniform = tf.random.stateless_uniform(
      tf.shape(logits), seed=tf.stack([tf.cast(seed, tf.int64),
                                       tf.cast(t, tf.int64)]),
      minval=_TINY, maxval=1.0)
  gumbel = -tf.math.log(-tf.math.log(uniform))
  return tf.argmax(logits + tf.cast(temperature, logits.dtype) * gumbel,
                   axis=-1, output_type=tf.int32)


def random_primer(batch_size: tf.Tensor, seed: tf.Tensor,
                  max_class: int) -> tf.Tensor:
  """[B, 1] notes uniform over 0..max_class, from (seed, PRIMER_STREAM)."""
  return tf.random.stateless_uniform(
      tf.stack([batch_size, 1]),
      seed=tf.stack([tf.cast(seed, tf.int64),
                     tf.constant(PRIMER_STREAM, tf.int64)]),
      minval=0, maxval=max_class + 1, dtype=tf.int32)


def rollout_seed(seed: tf.Tensor, rollout: tf.Tensor) -> tf.Tensor:
  """The seed of a tuner's rollout ``rollout`` in a run seeded ``seed``."""
  return -1 - (tf.cast(seed, tf.int64) +
               tf.cast(rollout, tf.int64) * (1 << 32))


def prime_by_steps(step: Step) -> Prime:
  """A Prime that runs ``step`` over the primer's tokens one by one."""
  def prime(tokens, state):
    def body(i, state):
      _, _, state = step(tokens[:, i], state)
      return i + 1, state
    _, state = tf.while_loop(lambda i, _: i < tf.shape(tokens)[1], body,
                             (tf.constant(0), state))
    return state
  return prime


def compose(step: Step, primer: tf.Tensor, num_steps: tf.Tensor,
            temperature: tf.Tensor, seed: tf.Tensor, state: Any,
            prime: Optional[Prime] = None,
            with_log_pi: bool = True,
            observe: Optional[Observe] = None) -> Dict[str, tf.Tensor]:
  """The composition loop (module docstring); in a tf.function.

  state: the networks' zero state for B melodies (any nest of tensors).
  prime: how the primer's leading tokens set the state (default: ``step``
  over them; a sequence call is the same state, faster).
  observe: the world's answer to each token (module docstring); its
  rewards come back as "reward". It may change variables (an environment),
  so the steps then run strictly one after another.
  Returns {"tokens", "log_p", "log_pi", "reward"}: each [B, num_steps]
  ("log_pi" only with_log_pi: a server that does not return it skips its
  work; "reward" only with observe).
  """
  primer = tf.convert_to_tensor(primer, tf.int32)
  state = (prime or prime_by_steps(step))(primer[:, :-1], state)
  arrays = {name: tf.TensorArray(dtype, size=num_steps, element_shape=[None])
            for name, dtype in (("tokens", tf.int32), ("log_p", tf.float32),
                                ("log_pi", tf.float32),
                                ("reward", tf.float32))}

  def log_softmax_at(logits, token):
    return tf.gather(tf.nn.log_softmax(logits, axis=-1), token, axis=1,
                     batch_dims=1)

  def body(t, previous, state, arrays):
    policy_logits, prior_logits, state = step(previous, state)
    token = choose(policy_logits, temperature, seed, t)
    arrays = dict(arrays)
    arrays["tokens"] = arrays["tokens"].write(t, token)
    arrays["log_p"] = arrays["log_p"].write(t, log_softmax_at(prior_logits,
                                                              token))
    if with_log_pi:
      arrays["log_pi"] = arrays["log_pi"].write(
          t, log_softmax_at(policy_logits, token))
    if observe is not None:
      reward, state = observe(token, state)
      arrays["reward"] = arrays["reward"].write(t, reward)
    return t + 1, token, state, arrays

  _, _, _, arrays = tf.while_loop(
      lambda t, *_: t < num_steps, body,
      (tf.constant(0), primer[:, -1], state, arrays),
      parallel_iterations=1 if observe is not None else 10)
  names = ["tokens", "log_p"] + ["log_pi"] * with_log_pi + (
      ["reward"] if observe is not None else [])
  return {name: tf.transpose(arrays[name].stack()) for name in names}
