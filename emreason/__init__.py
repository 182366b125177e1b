"""emreason: learning to reason by expectation maximization."""
