"""The node side of soak: the agent loop, its inbox and its collectors."""
