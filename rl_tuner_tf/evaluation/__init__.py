"""Evaluation: sampling melodies, Table 1 statistics, samples, Figure 2 and
the HTML report (paper section 6 / reference sections 7-8)."""
from rl_tuner_tf.evaluation.generate import figure2_point
from rl_tuner_tf.evaluation.generate import generate_melodies
from rl_tuner_tf.evaluation.table1 import compute_table1
from rl_tuner_tf.evaluation.table1 import markdown_table
from rl_tuner_tf.evaluation.table1 import mean_music_theory_reward
from rl_tuner_tf.evaluation.table1 import PAPER_TABLE1
