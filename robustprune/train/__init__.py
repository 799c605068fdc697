"""Training: a small loop with callbacks, the robust learners, recorders and batched augmentation."""
