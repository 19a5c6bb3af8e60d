"""The policies a test split is replayed with, by name: the agent and the baselines it has to beat, and what each is.

The names only (training/baselines.py has the baselines' rules, training/evaluation.py the replay): the results
tables, the statistics and the report name policies without loading the environments, stable-baselines3 and torch
that the replay needs, so that a command's --help and its one-line errors answer at once.
"""

AGENT = "agent"
BUY_AND_HOLD = "buy_and_hold"
FLAT = "flat"
SMA_CROSSOVER = "sma_crossover"
RANDOM = "random"
BASELINES = (BUY_AND_HOLD, FLAT, SMA_CROSSOVER, RANDOM)
POLICIES = (AGENT, *BASELINES)

POLICY_DESCRIPTIONS = {
    AGENT: "the trained PPO policy, checkpoint selected on validation, most likely action",
    BUY_AND_HOLD: "long from the first fill to the end",
    FLAT: "cash only",
    SMA_CROSSOVER: "long while SMA(fast) of the close > SMA(slow), decided on closes up to the session",
    RANDOM: "random long/flat timing with the agent's exposure and turnover per symbol, mean of seeded draws",
}
