"""Test-set performance of one classifier: accuracy and macro precision, recall and F1, and the
ROC AUC of its class scores (`roc_auc`).

Computed from a confusion matrix on the labels' device with the semantics of scikit-learn's
``*_score(y_true, y_pred, labels=range(K), average="macro", zero_division=0)``: every one of the
K classes counts in the macro mean, including classes absent from the test set or never
predicted, and an undefined ratio (no predictions, no true samples) counts as 0.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "performance", "roc_auc"]


def _check_labels(y_true: Tensor, y_pred: Tensor, num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if y_true.shape != y_pred.shape or y_true.dim() != 1:
        raise ValueError(
            f"labels and predictions must be 1-D tensors of one length, got "
            f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}"
        )
    if y_true.device != y_pred.device:
        raise ValueError(f"labels and predictions are on different devices: {y_true.device} and {y_pred.device}")
    for name, y in (("labels", y_true), ("predictions", y_pred)):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor of class indices, got {y.dtype}")
        # scikit-learn would silently drop out-of-range labels; here they signal a bug upstream.
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values from {int(y.min())} to {int(y.max())}")


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """(K, K) int64 counts on the labels' device; row = true class, column = predicted class."""
    _check_labels(y_true, y_pred, num_classes)
    # One bincount over the flattened (true, pred) pair index builds the whole matrix.
    pairs = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, 0 where the denominator is 0 (zero_division=0)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def performance(y_true: Tensor, y_pred: Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1 over classes 0 .. num_classes − 1."""
    if len(y_true) == 0:
        raise ValueError("performance needs at least one labelled prediction")
    counts = confusion_matrix(y_true, y_pred, num_classes).double()
    true_positive = counts.diagonal()
    predicted = counts.sum(dim=0)  # column sums: how often each class was predicted
    actual = counts.sum(dim=1)  # row sums: how often each class is the true label
    precision = _ratio(true_positive, predicted)
    recall = _ratio(true_positive, actual)
    # F1 = 2PR / (P + R) = 2TP / (2TP + FP + FN) where defined. The count form (scikit-learn's)
    # is 0 whenever TP = 0, which is exactly when P + R = 0 (F1 = 0 by convention), and 0/0 only
    # for a class neither present nor predicted, which zero_division=0 also makes 0.
    f1 = _ratio(2 * true_positive, predicted + actual)
    return {
        "accuracy": (true_positive.sum() / counts.sum()).item(),
        "precision": precision.mean().item(),
        "recall": recall.mean().item(),
        "f1": f1.mean().item(),
    }


def _binary_auc(positive: Tensor, scores: Tensor) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie): the Mann–Whitney U statistic from
    average ranks (ties share their rank), NaN unless both classes occur."""
    from augcam.metrics.maps import average_ranks

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores.double().view(1, -1))[0]
    u = ranks[positive].sum().item() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def roc_auc(y_true: Tensor, scores: Tensor) -> float:
    """Area under the ROC curve of (N, K) class scores (probabilities or logits) for labels
    0..K−1, as scikit-learn's ``roc_auc_score``: for two classes the AUC of the class-1 score,
    for more the macro mean of the one-vs-rest AUCs. NaN where it is undefined (a class absent
    from `y_true`, which scikit-learn refuses), so a study's table can still be written."""
    if scores.dim() != 2 or scores.shape[0] != len(y_true) or scores.shape[1] < 2:
        raise ValueError(f"scores must be (N, K ≥ 2) for {len(y_true)} labels, got {tuple(scores.shape)}")
    _check_labels(y_true, y_true, scores.shape[1])
    y = y_true.to(scores.device)
    if scores.shape[1] == 2:
        return _binary_auc(y == 1, scores[:, 1])
    per_class = [_binary_auc(y == k, scores[:, k]) for k in range(scores.shape[1])]
    return float(sum(per_class) / len(per_class))  # NaN if any class is undefined
