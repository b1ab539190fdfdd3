"""Training dynamics: the training loop, linearized models and closed-form kernel predictions."""
