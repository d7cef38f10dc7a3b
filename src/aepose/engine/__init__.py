"""Training, evaluation and the losses: the loops the apps run."""
