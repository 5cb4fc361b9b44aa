"""Classifier performance against scikit-learn (labels=range(K), average="macro", zero_division=0)."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from augcam.metrics import confusion_matrix, performance


def sklearn_scores(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float]:
    common = {"labels": list(range(k)), "average": "macro", "zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, **common),
        "recall": skm.recall_score(y_true, y_pred, **common),
        "f1": skm.f1_score(y_true, y_pred, **common),
    }


def labels_with_gaps(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random labels where class 0 is never predicted, class k−1 never occurs, and class k−2
    neither occurs nor is predicted; predictions are right about half the time."""
    g = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, k - 2, (n,), generator=g)
    guess = torch.randint(1, k, (n,), generator=g)
    guess[guess == k - 2] = k - 1
    right = (torch.rand(n, generator=g) < 0.5) & (y_true != 0)
    y_pred = torch.where(right, y_true, guess)
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n,k", [(50, 5), (300, 10), (7, 4)])
def test_performance_matches_sklearn(n, k, seed):
    y_true, y_pred = labels_with_gaps(n, k, seed)
    # The scenario really has the gaps it is meant to test.
    assert 0 not in y_pred and k - 1 not in y_true and k - 2 not in y_true and k - 2 not in y_pred
    got = performance(y_true, y_pred, k)
    expected = sklearn_scores(y_true.numpy(), y_pred.numpy(), k)
    assert list(got) == ["accuracy", "precision", "recall", "f1"]
    for name, value in expected.items():
        assert isinstance(got[name], float)
        assert got[name] == pytest.approx(value, abs=1e-12, rel=0), name


def test_f1_macro_is_mean_of_per_class_f1_not_f1_of_means():
    # Per class: P = (1, 0.5), R = (0.5, 1) → F1s 2/3 and 2/3 → macro F1 = 2/3; the F1 of the mean
    # precision and recall would be 0.75. Plus class 2, absent and never predicted, counting 0.
    y_true = torch.tensor([0, 0, 1])
    y_pred = torch.tensor([0, 1, 1])
    got = performance(y_true, y_pred, 3)
    assert got["f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3, abs=1e-15)
    assert got["precision"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-15)
    assert got["recall"] == pytest.approx((0.5 + 1 + 0) / 3, abs=1e-15)
    assert got["accuracy"] == pytest.approx(2 / 3, abs=1e-15)


def test_perfect_predictions_with_absent_classes():
    y = torch.tensor([0, 1, 2, 2, 1])
    got = performance(y, y.clone(), 5)
    assert got == pytest.approx({"accuracy": 1.0, "precision": 0.6, "recall": 0.6, "f1": 0.6}, abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_confusion_matrix_matches_sklearn(seed):
    y_true, y_pred = labels_with_gaps(200, 8, seed)
    got = confusion_matrix(y_true, y_pred, 8)
    assert got.shape == (8, 8) and got.dtype == torch.int64
    expected = skm.confusion_matrix(y_true.numpy(), y_pred.numpy(), labels=list(range(8)))
    np.testing.assert_array_equal(got.numpy(), expected)


def test_confusion_matrix_rows_are_true_labels():
    got = confusion_matrix(torch.tensor([0, 0, 2]), torch.tensor([1, 1, 2]), 3)
    assert got[0, 1] == 2 and got[1, 0] == 0 and got[2, 2] == 1


def test_integer_dtypes_accepted():
    y_true, y_pred = labels_with_gaps(40, 5, 9)
    want = performance(y_true, y_pred, 5)
    assert performance(y_true.to(torch.int32), y_pred.to(torch.uint8), 5) == want


def test_invalid_inputs_raise():
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        performance(y, torch.tensor([0, 1, 3]), 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix(torch.tensor([-1, 1, 2]), y, 3)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        performance(y, torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="integer"):
        performance(y, y.float(), 3)
    with pytest.raises(ValueError, match="num_classes"):
        performance(y, y, 0)
    with pytest.raises(ValueError, match="at least one"):
        performance(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 3)
