"""Direct preference optimisation (DPO; Rafailov et al. 2023) on rated
pairs of melodies, with the Note RNN as the reference policy.

  log pi(x)  = sum_{t=1}^{T-1} log pi(x_t | x_<t)        x_0 read from a zero state
  Delta      = [log pi(a) - log pi_ref(a)] - [log pi(b) - log pi_ref(b)]
  y          = P(A preferred) = (7 - rating) / 6          preferences.preference_target
  loss       = -[y log sigma(beta Delta) + (1 - y) log sigma(-beta Delta)]   (DPO-1)

With y in {0, 1}, DPO-1 is DPO's loss; the Likert strength makes y a soft
label, so a pair rated "no preference" pulls Delta toward 0. DPO's optimum is
the KL-regularised optimum of the Bradley-Terry reward implied by the ratings,
pi ∝ pi_ref exp(r / beta): the same family as Psi, G, PPO and RLOO with
beta in the place of c, learnt from the pairs without a reward model.

The policy is a copy of the Note RNN (``q_network``, the name every tuner's
policy network has for the evaluation and the export: its logits are the
policy, algorithms.py); the reference is a frozen copy (``reward_rnn``, the
prior of every other tuner). At the start pi = pi_ref, so Delta = 0 and the
loss is log 2. An iteration draws ``dpo_batch_size`` pairs with replacement
from the seed pair (seed, iteration) -- stateless, so a resumed run draws
what an uninterrupted one would -- and takes one Adam step, the gradient
clipped to ``gradient_clip_norm``. The runner's unit is notes read: 2 x batch
x T per iteration.
"""
from typing import TYPE_CHECKING, Dict

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf import configuration
from rl_tuner_tf import preferences
from rl_tuner_tf import tuner_base

if TYPE_CHECKING:
  from rl_tuner_tf import tuning


def sequence_log_prob(network: tf.keras.Model, tokens: tf.Tensor
                      ) -> tf.Tensor:
  """[B]: sum_{t>=1} log pi(x_t | x_<t) of tokens [B, T] under network."""
  logits, _ = network(tokens[:, :-1])
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  taken = tf.gather(log_probs, tokens[:, 1:], axis=2, batch_dims=2)
  return tf.reduce_sum(taken, axis=1)


def dpo_loss(delta: tf.Tensor, target: tf.Tensor, beta: float) -> tf.Tensor:
  """DPO-1 per pair: BCE of sigma(beta Delta) against y (stable form)."""
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=target,
                                                 logits=beta * delta)


class DPOTuner(tuner_base.TunerBase):
  """DPO on a preference file (module docstring)."""
  ALGORITHM = "dpo"

  @classmethod
  def check_config(cls, config: "tuning.TuningConfig") -> None:
    """Raises configuration.ConfigError for settings DPO cannot run."""
    if not config.dpo.preferences:
      raise configuration.ConfigError(
          "dpo_preferences", "is needed by --algorithm=dpo (a rated-pairs "
          "file, rl_tuner_tf/preferences.py)")

  @classmethod
  def iteration_notes(cls, config: "tuning.TuningConfig") -> int:
    """Notes one iteration reads: both melodies of each pair."""
    return 2 * config.dpo.batch_size * config.num_notes_in_melody

  @classmethod
  def schedule(cls, config: "tuning.TuningConfig") -> str:
    return (f"{config.dpo.batch_size} rated pairs per Adam step (beta "
            f"{config.dpo.beta:g})")

  def __init__(self, config, note_rnn_model, primer=None, reward_weights=None,
               reward_model=None):
    del primer, reward_weights, reward_model  # DPO reads rated pairs only
    if config.algorithm != self.ALGORITHM:
      raise ValueError(f"DPOTuner runs dpo, not {config.algorithm!r}")
    self.config = config
    pairs = self._load_pairs(config)
    self._a = tf.constant(pairs.tokens_a, tf.int32)
    self._b = tf.constant(pairs.tokens_b, tf.int32)
    self._target = tf.constant(preferences.preference_target(pairs.rating),
                               tf.float32)
    self.num_pairs = pairs.num_pairs
    self.q_network = tuner_base.copy_network(note_rnn_model, "policy_network")
    self.reward_rnn = tuner_base.copy_network(note_rnn_model, "reward_rnn")
    self.reward_rnn.trainable = False
    self.optimizer = tf.keras.optimizers.Adam(config.dpo.learning_rate)
    self.optimizer.build(self.q_network.trainable_variables)
    self.notes_composed = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="notes_read")
    self.train_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name="train_step")
    self._init_base()
    for name in ("loss", "accuracy", "margin", "updates"):
      setattr(self._stats, name, tf.Variable(0.0, trainable=False, name=name))
    self.checkpoint_parts = dict(
        policy_network=self.q_network, optimizer=self.optimizer,
        notes_composed=self.notes_composed, train_step=self.train_step)
    self.checkpoint = tf.train.Checkpoint(**self.checkpoint_parts)

  @staticmethod
  def _load_pairs(config):
    try:
      pairs = preferences.load(config.dpo.preferences)
    except preferences.PreferenceFileError as e:
      raise configuration.ConfigError("dpo_preferences", str(e)) from None
    if pairs.tokens_a.shape[1] != config.num_notes_in_melody:
      raise configuration.ConfigError(
          "dpo_preferences", f"its melodies have {pairs.tokens_a.shape[1]} "
          f"notes, --num_notes_in_melody is {config.num_notes_in_melody}")
    return pairs

  def _iteration(self):
    cfg = self.config
    index = tf.random.stateless_uniform(
        [cfg.dpo.batch_size],
        seed=tf.stack([tf.constant(cfg.seed, tf.int64), self.train_step]),
        maxval=self.num_pairs, dtype=tf.int32)
    a, b = tf.gather(self._a, index), tf.gather(self._b, index)
    target = tf.gather(self._target, index)
    ref = (sequence_log_prob(self.reward_rnn, a) -
           sequence_log_prob(self.reward_rnn, b))
    with tf.GradientTape() as tape:
      delta = (sequence_log_prob(self.q_network, a) -
               sequence_log_prob(self.q_network, b)) - ref
      loss = tf.reduce_mean(dpo_loss(delta, target, cfg.dpo.beta))
    variables = self.q_network.trainable_variables
    grads = tape.gradient(loss, variables)
    if cfg.gradient_clip_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, cfg.gradient_clip_norm)
    finite = tf.math.is_finite(loss)
    stats = self._stats
    preferred = tf.not_equal(target, 0.5)
    agree = tf.cast(tf.equal(delta > 0, target > 0.5), tf.float32)
    accuracy = tf.math.divide_no_nan(
        tf.reduce_sum(tf.where(preferred, agree, 0.0)),
        tf.reduce_sum(tf.cast(preferred, tf.float32)))

    def apply():
      self.optimizer.apply_gradients(zip(grads, variables))
      return tf.group(
          stats.loss.assign_add(loss), stats.accuracy.assign_add(accuracy),
          stats.margin.assign_add(cfg.dpo.beta * tf.reduce_mean(delta)),
          stats.updates.assign_add(1.0), self.train_step.assign_add(1),
          self.notes_composed.assign_add(self.notes_per_iteration))

    done = tf.cond(finite, lambda: tf.group(apply()),
                   lambda: tf.group(self._record_bad_loss(loss)))
    with tf.control_dependencies([done]):
      return tf.constant(True)

  # -- public (tuner_base.TunerBase's surface) -----------------------------
  @property
  def notes_per_iteration(self) -> int:
    return self.iteration_notes(self.config)

  @property
  def num_updates(self) -> int:
    return int(self.train_step.numpy())

  def read_and_reset_stats(self) -> Dict[str, float]:
    """Means since the last call: loss (DPO-1), accuracy (pairs with a
    preference whose Delta has the rated sign), margin (beta Delta)."""
    s = self._stats
    updates = float(s.updates.numpy())
    stats = {"updates": updates}
    if updates:
      for name in ("loss", "accuracy", "margin"):
        stats[name] = float(getattr(s, name).numpy()) / updates
    for name in ("loss", "accuracy", "margin", "updates"):
      getattr(s, name).assign(0.0)
    return stats
