"""Training: losses, objectives, trainable-parameter groups and optimizers, LoRA, the train step."""
