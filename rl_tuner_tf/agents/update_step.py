"""The off-policy agent's weight update, written out (paper section 3).

After the loss and its gradients, one update is

  g     <- g * c / max(||g||, c)                  each gradient clipped to norm c
                                                  (tf.clip_by_norm; the original's 5)
  m     <- m + (g - m)(1 - beta_1)                Adam (Kingma & Ba), tf.keras'
  v     <- v + (g^2 - v)(1 - beta_2)              formula and the optimizer's own
  alpha  = lr sqrt(1 - beta_2^t) / (1 - beta_1^t) slots and step counter t, so
  theta <- theta - alpha m / (sqrt(v) + epsilon)  checkpoints keep their layout
  theta- <- (1 - eta) theta- + eta theta          soft target update (TF-Agents')

and it must leave every variable as it was when the loss is not finite (the
run then stops; train.py reports it). Here that guard is arithmetic: each
step above is multiplied by ok = 1.0 or 0.0, which is exact (x * 1.0 = x,
theta + 0.0 = theta), and a non-finite gradient is replaced by zeros (after
its norm, so that the select fuses into Adam's elementwise kernel).

Why not ``optimizer.apply_gradients`` inside ``tf.cond``: a conditional
(or a ``tf.where`` on each new value) costs a large share of a compiled
update on a CPU, the arithmetic guard a small one; and XLA's CPU reductions
behind the gradient norms are slow, so ``squared_norm`` computes sum(x^2) as
the trace of a small Gram matrix, a matmul. The figures are
benchmarks/bench_compute_bound.py's output. The Adam step is tf.keras' to the
bit op by op, and the clipped step agrees with tf.clip_by_norm + tf.keras to
rounding (tests/test_agents_update_step.py).
"""
from typing import Optional, Sequence

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

GRAM_ROWS = 8


def squared_norm(t: tf.Tensor) -> tf.Tensor:
  """sum(t^2): trace(F F^T) with F = t as [8, n/8] when 8 divides n (a
  matmul, vectorised on XLA's CPU backend), else a plain reduction."""
  n = t.shape.num_elements()
  if n is None or n % GRAM_ROWS or n < GRAM_ROWS * GRAM_ROWS:
    return tf.reduce_sum(tf.square(t))
  f = tf.reshape(t, [GRAM_ROWS, n // GRAM_ROWS])
  return tf.linalg.trace(tf.matmul(f, f, transpose_b=True))


def clip_by_norm(t: tf.Tensor, clip_norm: float) -> tf.Tensor:
  """tf.clip_by_norm's formula: t * c / max(||t||, c)."""
  norm = tf.sqrt(squared_norm(t))
  return t * clip_norm / tf.maximum(norm, clip_norm)


def check_optimizer(optimizer: tf.keras.optimizers.Optimizer) -> None:
  """The update reproduces plain tf.keras Adam: refuse anything else."""
  if not isinstance(optimizer, tf.keras.optimizers.Adam):
    raise ValueError(f"the agent's update is Adam's; got {type(optimizer)}")
  extras = {"amsgrad": optimizer.amsgrad, "clipnorm": optimizer.clipnorm,
            "clipvalue": optimizer.clipvalue,
            "global_clipnorm": optimizer.global_clipnorm,
            "use_ema": optimizer.use_ema,
            "weight_decay": optimizer.weight_decay,
            "adaptive_epsilon": getattr(optimizer, "adaptive_epsilon", False)}
  used = {k: v for k, v in extras.items() if v}
  if used:
    raise ValueError(f"the agent's Adam update has no {sorted(used)}; "
                     "clipping is the agent's gradient_clip_norm")


def _slots(optimizer, variable):
  try:
    i = optimizer._index_dict[optimizer._var_key(variable)]  # pylint: disable=protected-access
  except (AttributeError, KeyError):
    raise ValueError(f"the optimizer was not built on {variable.name}: call "
                     "optimizer.build(agent.trained_variables) first") from None
  return optimizer._momentums[i], optimizer._velocities[i]  # pylint: disable=protected-access


def apply(optimizer: tf.keras.optimizers.Adam, gradients: Sequence[tf.Tensor],
          variables: Sequence[tf.Variable], ok: tf.Tensor,
          clip_norm: Optional[float] = None) -> None:
  """Clip, then one Adam step on ``variables``, when the scalar bool ``ok``."""
  okf = tf.cast(ok, tf.float32)
  step = tf.cast(optimizer.iterations + 1, tf.float32)
  beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2  # Python floats, as
  lr = tf.cast(optimizer.learning_rate, tf.float32)     # tf.keras uses them
  alpha = lr * tf.sqrt(1 - tf.pow(tf.cast(beta_2, tf.float32), step)) / (
      1 - tf.pow(tf.cast(beta_1, tf.float32), step))
  for g, theta in zip(gradients, variables):
    m, v = _slots(optimizer, theta)
    if clip_norm:
      g = clip_by_norm(g, clip_norm)
    g = tf.where(ok, g, tf.zeros_like(g))  # after the norm: fuses into Adam's
    m.assign_add(okf * ((g - m) * (1 - beta_1)))
    v.assign_add(okf * ((tf.square(g) - v) * (1 - beta_2)))
    theta.assign_sub(okf * ((m * alpha) / (tf.sqrt(v) + optimizer.epsilon)))
  optimizer.iterations.assign_add(tf.cast(ok, optimizer.iterations.dtype))


def soft_update(source: Sequence[tf.Variable], target: Sequence[tf.Variable],
                eta: float, ok: tf.Tensor) -> None:
  """theta- <- (1 - eta) theta- + eta theta, when ``ok`` (TF-Agents' formula)."""
  eta = tf.cast(ok, tf.float32) * eta
  for s, t in zip(source, target):
    t.assign((1 - eta) * t + eta * s)
