"""Training GReFEL with the transformers Trainer: trainer, collators, augmentation, EMA, metrics and arguments."""
