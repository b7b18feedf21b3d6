"""``fer_accuracy``: accuracy, balanced accuracy, macro-F1 and per-class accuracy for facial-expression recognition.

An ``evaluate`` metric module that loads offline from its folder::

    metric = evaluate.load("/path/to/grefel_hf/metrics/fer_accuracy")
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 2], label_names=["angry", "happy", "sad"])

The numbers come from ``grefel_hf.metrics.classification``, the project's single implementation of every
metric, so this module and the evaluation CLI can never disagree.
"""

import datasets
import evaluate

from grefel_hf.metrics.classification import flat_summary, hard_label_metrics

_DESCRIPTION = """
Top-1 accuracy, balanced accuracy (the mean of the per-class recalls over the classes present in the
references), macro-averaged F1 (mean of per-class F1 over the classes present in the references or
the predictions) and per-class accuracy (the fraction of each class's images classified correctly, i.e.
per-class recall) for single-label classification such as facial-expression recognition.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    label_names (list of str, optional): class names, index i = class id i. Names the per-class keys
        ``accuracy_<name>``; without it the keys are ``accuracy_class_<i>``.
    num_classes (int, optional): number of classes when ``label_names`` is not given (default: the
        largest id seen + 1).
Returns:
    accuracy (float), balanced_accuracy (float: the mean per-class recall over the classes with reference
    images), macro_f1 (float) and one ``accuracy_<name>`` per class (float, or None for a class with no
    reference images).
Examples:
    >>> metric = evaluate.load("grefel_hf/metrics/fer_accuracy")
    >>> metric.compute(predictions=[0, 1], references=[0, 0], label_names=["a", "b"])["accuracy"]
    0.5
"""

_CITATION = """
@article{wasi2024grefel,
  title={GReFEL: Geometry-Aware Reliable Facial Expression Learning under Bias and Imbalanced Data
         Distribution},
  author={Wasi, Azmine Toushik and Rafi, Taki Hasan and Islam, Raima and {\\v{S}}erbetar, Karlo and
          Chae, Dong-Kyu},
  journal={arXiv preprint arXiv:2410.15927},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FerAccuracy(evaluate.Metric):
    """Accuracy, macro-F1 and per-class accuracy over integer class ids."""

    def _info(self) -> evaluate.MetricInfo:
        """Describe the metric and its input features."""
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, label_names=None, num_classes=None) -> dict:
        """Return accuracy, balanced accuracy, macro_f1 and per-class accuracy for the stored predictions."""
        scores = hard_label_metrics(references, predictions, label_names=label_names, num_classes=num_classes)
        # Without names, class i is called "class_<i>", which gives the key "accuracy_class_<i>".
        return flat_summary(scores)
