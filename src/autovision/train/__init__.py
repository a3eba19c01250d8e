"""Training stage: model families, the training loop and checkpoints."""
