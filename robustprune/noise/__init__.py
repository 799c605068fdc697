"""Seeded, recorded label noise.

::

    noisy, rec = apply_noise(y_clean, "sym:0.4", num_classes=10, seed=0)
    rec.realised_rate, rec.transition          # 0.4 exactly, (K, K) counts: rows clean, columns noisy

Noise specs (:func:`parse_noise`):

=================  ======================================================================================
``none``/``clean``  labels unchanged
``sym:R``           exactly ``round(R*N)`` examples, chosen uniformly, each moved to a uniformly random
                    *different* class (so the realised rate is exactly R up to rounding)
``asym:R``          class-conditional pair flips, each example of an affected class flipped with
                    probability R. The map depends on ``dataset``:
                    CIFAR-10: the standard map of Patrini et al. (2017): truck->automobile (9->1),
                    bird->airplane (2->0), deer->horse (4->7), cat<->dog (3<->5);
                    CIFAR-100: the next fine class within the same superclass, cyclically (the five
                    members of a superclass in label order);
                    any other dataset: ``y -> (y + 1) mod K``.
``asym-pairs:R``    the Prune4ReL release's bidirectional CIFAR-10 pairs 0<->2, 4<->7, 1<->9, 3<->5, 6<->8
                    (every class affected; needs K = 10), for reproducing that code
``instance:R``      instance-dependent noise after Xia et al. (2020): per-example flip rates from a normal
                    around R (sd 0.1) truncated to [0, 1]; the wrong class drawn from
                    ``softmax(x W_y)`` with a random Gaussian projection ``W_y`` per class (needs
                    ``features``, e.g. the training images); ``instance:0`` is clean
``matrix:FILE``     each label ``y`` redrawn from row ``y`` of a K x K row-stochastic transition matrix in a
                    ``.npy`` or ``.csv`` file (e.g. one estimated from CIFAR-N with
                    :func:`estimate_transition_matrix`)
``human[:NAME]``    real human labels supplied by the caller (``human_labels=``, e.g. the CIFAR-N sets the
                    CIFAR loaders put in ``ArrayDataset.label_sets``: worst, aggregate, random1..3, noisy)
=================  ======================================================================================

Every function is vectorised (no per-example Python loops; at most a loop over the K classes) and draws its
randomness only from the ``seed`` it is given.
"""

from robustprune.noise.apply import apply_noise
from robustprune.noise.models import (
    asym_map,
    estimate_transition_matrix,
    instance_noise,
    load_transition_matrix,
    matrix_noise,
    pair_noise,
    pairs_map,
    symmetric_noise,
    transition_counts,
)
from robustprune.noise.spec import CIFAR10_ASYM_PAIRS, PRUNE4REL_PAIRS, NoiseRecord, NoiseSpec, parse_noise

__all__ = [
    "NoiseSpec",
    "NoiseRecord",
    "parse_noise",
    "apply_noise",
    "symmetric_noise",
    "pair_noise",
    "instance_noise",
    "matrix_noise",
    "asym_map",
    "pairs_map",
    "load_transition_matrix",
    "transition_counts",
    "estimate_transition_matrix",
    "CIFAR10_ASYM_PAIRS",
    "PRUNE4REL_PAIRS",
]
