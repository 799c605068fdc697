"""Models: own implementations, no torchvision needed.

Every model is a :class:`FeatureClassifier`: ``features(x) -> (B, feature_dim)`` (the penultimate
embedding), ``head(h) -> (B, num_classes)`` and ``forward(x) == head(features(x))``.

==================  ==========================================================  ===========
name                architecture                                                feature_dim
==================  ==========================================================  ===========
``mlp``             MLP on flattened inputs                                     hidden[-1]
``lenet``           LeNet-5-style: two 5x5 conv + pool, fc 120-84 (fast on CPU)  84
``small_cnn``       3 conv stages + global pooling (8x8, 28x28, 32x32 inputs)   128
``preact_resnet18`` CIFAR PreAct ResNet-18 (Prune4ReL, SOP, DivideMix)          512
``resnet18``        ImageNet ResNet-18, torchvision parameter names             512
``resnet34``        ImageNet ResNet-34, torchvision parameter names             512
``resnet50``        ImageNet ResNet-50, torchvision parameter names             2048
==================  ==========================================================  ===========

Build one with :func:`build_model`; load a local torchvision-style state_dict with :func:`load_weights`.
"""

from robustprune.models import lenet, mlp, preact_resnet, resnet, small_cnn  # noqa: F401  (registers the models)
from robustprune.models.base import FeatureClassifier
from robustprune.models.lenet import LeNet
from robustprune.models.mlp import MLP
from robustprune.models.preact_resnet import PreActResNet, preact_resnet18
from robustprune.models.registry import ModelInfo, build_model, get_model_info, list_models, register_model
from robustprune.models.resnet import ResNet, resnet18, resnet34, resnet50
from robustprune.models.small_cnn import SmallCNN
from robustprune.models.weights import LoadResult, load_weights

__all__ = [
    "FeatureClassifier",
    "ModelInfo",
    "build_model",
    "get_model_info",
    "list_models",
    "register_model",
    "load_weights",
    "LoadResult",
    "MLP",
    "LeNet",
    "SmallCNN",
    "PreActResNet",
    "preact_resnet18",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
]
