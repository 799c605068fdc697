"""Training: a small loop with callbacks, the robust learners, recorders and batched augmentation."""

from robustprune.train.batches import TrainData
from robustprune.train.engine import Callback, DivergenceError, ProgressInfo, TrainConfig, run_epochs
from robustprune.train.inference import predict
from robustprune.train.learners import Learner, build_learner, list_learners
from robustprune.train.recorders import DynamicsRecorder, EvalAccuracy

__all__ = [
    "Callback",
    "DivergenceError",
    "ProgressInfo",
    "TrainConfig",
    "TrainData",
    "predict",
    "run_epochs",
    "Learner",
    "build_learner",
    "list_learners",
    "DynamicsRecorder",
    "EvalAccuracy",
]
