"""TF-Agents pieces of RL Tuner: targets (Eq. 4 / 11 / 13), policies
(Eq. 5 / 12 / 14), exploration, the agent that trains them, and the on-policy
math (policy_gradient). Import the modules themselves; the algorithms that use
them are registered in rl_tuner_tf/algorithms.py."""
