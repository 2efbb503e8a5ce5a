"""Training on top of hnca_env: NCA-rule policies, the gradient pool trainer (`agents.pool`) and
PPO, IPPO and MAPPO (`agents.ppo`)."""

from agents.networks import NCAUpdateRule, as_fixed_rule, make_policy

__all__ = ["NCAUpdateRule", "make_policy", "as_fixed_rule"]
