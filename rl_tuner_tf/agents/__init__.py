"""TF-Agents pieces of RL Tuner: targets (Eq. 4 / 11 / 13), policies
(Eq. 5 / 12 / 14), exploration, and the agent that trains them."""
from rl_tuner_tf.agents.exploration import BoltzmannMelodyPolicy
from rl_tuner_tf.agents.exploration import EpsilonGreedyMelodyPolicy
from rl_tuner_tf.agents.exploration import LinearEpsilon
from rl_tuner_tf.agents.policies import MelodyPolicy
from rl_tuner_tf.agents.rl_tuner_agent import RLTunerAgent
from rl_tuner_tf.agents.targets import ALGORITHMS
from rl_tuner_tf.agents.targets import bootstrapped_target
