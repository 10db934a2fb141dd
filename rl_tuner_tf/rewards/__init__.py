"""Music-theory reward r_MT (reference section 6), batched TensorFlow ops.

    state = rewards.initial_state(batch_size, num_notes=32)
    total, per_rule, state = rewards.music_theory_reward(state, action)

One module per rule: key, tonic, repetition, autocorrelation, motif (motif and
repeated motif), intervals (preferred intervals), leap_resolution, extremes
(unique extremes); ``music_theory`` sums them.
"""
from rl_tuner_tf.rewards.composition import CompositionState
from rl_tuner_tf.rewards.composition import initial_state
from rl_tuner_tf.rewards.music_theory import BUILTIN_RULES
from rl_tuner_tf.rewards.music_theory import DEFAULT_WEIGHTS
from rl_tuner_tf.rewards.music_theory import evaluate_note
from rl_tuner_tf.rewards.music_theory import music_theory_reward
from rl_tuner_tf.rewards.music_theory import NoteEvaluation
from rl_tuner_tf.rewards.music_theory import register_reward
from rl_tuner_tf.rewards.music_theory import resolve_weights
from rl_tuner_tf.rewards.music_theory import rule_names
from rl_tuner_tf.rewards.music_theory import unregister_reward
from rl_tuner_tf.rewards.replay import Replay
from rl_tuner_tf.rewards.replay import replay_melodies
