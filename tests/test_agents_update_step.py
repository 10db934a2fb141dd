"""update_step: the written-out Adam / clip / soft update against tf.keras'
Adam, tf.clip_by_norm and TF-Agents' soft update, and its exact guard."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.utils import common

from rl_tuner_tf.agents import update_step

SHAPES = [(38, 400), (100, 400), (400,), (100, 38), (38,)]


def _variables(seed, scale=1.0):
  rng = np.random.default_rng(seed)
  return [tf.Variable(rng.normal(size=s).astype(np.float32) * scale)
          for s in SHAPES]


def _gradients(seed, scale=1.0):
  rng = np.random.default_rng(seed)
  return [tf.constant(rng.normal(size=s).astype(np.float32) * scale)
          for s in SHAPES]


def _state(optimizer, variables):
  return ([v.numpy() for v in variables]
          + [v.numpy() for v in optimizer.variables])


@pytest.mark.parametrize("shape", SHAPES + [(7, 3), (64,)])
def test_squared_norm_is_the_sum_of_squares(shape):
  t = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
  expected = float(np.sum(np.square(t.numpy().astype(np.float64))))
  assert float(update_step.squared_norm(t)) == pytest.approx(expected,
                                                             rel=1e-5)


def test_clip_by_norm_matches_tf():
  for scale in (1e-3, 1.0, 30.0):  # below, around and above the norm 5
    for g in _gradients(1, scale):
      np.testing.assert_allclose(update_step.clip_by_norm(g, 5.0).numpy(),
                                 tf.clip_by_norm(g, 5.0).numpy(), rtol=1e-5,
                                 atol=1e-9)


def test_adam_step_is_tf_keras_adam_bit_for_bit():
  # tf.keras compiles its update with XLA by default; op by op it is the
  # same arithmetic as ours, to the bit.
  ours, theirs = _variables(2), _variables(2)
  opt_ours = tf.keras.optimizers.Adam(1e-2)
  opt_theirs = tf.keras.optimizers.Adam(1e-2, jit_compile=False)
  opt_ours.build(ours)
  opt_theirs.build(theirs)
  for step in range(5):
    grads = _gradients(10 + step)
    update_step.apply(opt_ours, grads, ours, tf.constant(True))
    opt_theirs.apply_gradients(zip(grads, theirs))
  assert int(opt_ours.iterations.numpy()) == 5
  for a, b in zip(_state(opt_ours, ours), _state(opt_theirs, theirs)):
    np.testing.assert_array_equal(a, b)


def test_clipped_adam_step_matches_tf_clip_then_adam_compiled():
  ours, theirs = _variables(3), _variables(3)
  opt_ours = tf.keras.optimizers.Adam(1e-3)
  opt_theirs = tf.keras.optimizers.Adam(1e-3)
  opt_ours.build(ours)
  opt_theirs.build(theirs)

  @tf.function(jit_compile=True)
  def step_ours(grads):
    update_step.apply(opt_ours, grads, ours, tf.constant(True), clip_norm=5.0)

  for step in range(3):
    grads = _gradients(20 + step, scale=3.0)  # norms well above 5
    step_ours(grads)
    opt_theirs.apply_gradients(
        zip([tf.clip_by_norm(g, 5.0) for g in grads], theirs))
  for a, b in zip(_state(opt_ours, ours), _state(opt_theirs, theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("jit", [False, True])
def test_not_ok_changes_nothing_even_with_nan_gradients(jit):
  variables, targets = _variables(4), _variables(5)
  optimizer = tf.keras.optimizers.Adam(1e-2)
  optimizer.build(variables)
  update_step.apply(optimizer, _gradients(6), variables, tf.constant(True))
  before = _state(optimizer, variables) + [t.numpy() for t in targets]
  bad = [g * np.nan for g in _gradients(7)]
  bad[1] = bad[1] * 0 + np.inf

  @tf.function(jit_compile=jit)
  def update(grads, ok):
    update_step.apply(optimizer, grads, variables, ok, clip_norm=5.0)
    update_step.soft_update(variables, targets, 0.01, ok)

  update(bad, tf.constant(False))
  after = _state(optimizer, variables) + [t.numpy() for t in targets]
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)
  update(_gradients(8), tf.constant(True))  # and a good step still moves
  assert int(optimizer.iterations.numpy()) == 2
  assert not np.array_equal(variables[0].numpy(), before[0])


def test_soft_update_is_tf_agents_formula_bit_for_bit():
  source = _variables(9)
  ours, theirs = _variables(10), _variables(10)
  update_step.soft_update(source, ours, 0.01, tf.constant(True))
  common.soft_variables_update(source, theirs, tau=0.01)
  for a, b in zip(ours, theirs):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_refuses_optimizers_it_does_not_reproduce():
  with pytest.raises(ValueError, match="Adam"):
    update_step.check_optimizer(tf.keras.optimizers.SGD(0.1))
  with pytest.raises(ValueError, match="amsgrad"):
    update_step.check_optimizer(tf.keras.optimizers.Adam(amsgrad=True))
  with pytest.raises(ValueError, match="clipnorm"):
    update_step.check_optimizer(tf.keras.optimizers.Adam(clipnorm=1.0))
  update_step.check_optimizer(tf.keras.optimizers.Adam(1e-3))


def test_unbuilt_optimizer_is_a_clear_error():
  variables = _variables(11)
  with pytest.raises(ValueError, match="optimizer.build"):
    update_step.apply(tf.keras.optimizers.Adam(1e-3), _gradients(12),
                      variables, tf.constant(True))
