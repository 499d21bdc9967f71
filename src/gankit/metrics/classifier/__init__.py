"""The domain classifier ("evaluator"): a small CNN trained on the real digits, in whose
features and logits the metrics measure MNIST-like data (`_mnistcnn` in a metric name).

`network` is the CNN, `storage` its checked file and where files live, `extractor` a trained
one as a feature extractor (`find_classifier`), `training` how one is trained.
"""

from .extractor import ClassifierExtractor, find_classifier, load_classifier
from .network import ClassifierConfig, DigitCNN
from .storage import default_classifier_path, read_classifier_meta, save_classifier
from .training import MNIST_LIKE, TARGET_ACCURACY, TrainedClassifier, train_classifier

__all__ = [
    "MNIST_LIKE",
    "TARGET_ACCURACY",
    "ClassifierConfig",
    "ClassifierExtractor",
    "DigitCNN",
    "TrainedClassifier",
    "default_classifier_path",
    "find_classifier",
    "load_classifier",
    "read_classifier_meta",
    "save_classifier",
    "train_classifier",
]
