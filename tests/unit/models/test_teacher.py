"""models.teacher: out-of-fold scoring, class balance, the ensemble mean."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="needs scikit-learn (make train-env)")

from models.teacher import class_balance, ensemble, out_of_fold  # noqa: E402


def test_class_balance_is_square_root_inverse_frequency() -> None:
    labels = np.array([0, 0, 0, 1, 2, 3])
    got = class_balance(labels, np.ones(6))
    assert got[0] == pytest.approx(np.sqrt(6 / (4 * 3)))
    assert got[3] == pytest.approx(np.sqrt(6 / 4))
    # a weight of 2 counts like the row twice
    doubled = class_balance(np.array([0, 0, 1, 2, 3]), np.array([2.0, 1, 1, 1, 1]))
    assert doubled[0] == pytest.approx(got[0])


def test_out_of_fold_scores_a_row_with_heads_that_never_saw_it() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype(int)
    # one memorable outlier: a model that saw it would give its own label high probability
    x[0] = 0.0
    x[0, 1] = 40.0
    y[0] = 1
    probs = out_of_fold(x, y, np.ones(200), classes=2, folds=5, c=1e4, seed=1)
    assert probs.shape == (200, 2)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y).mean() > 0.9  # it learns the rule ...
    from sklearn.linear_model import LogisticRegression

    seen = LogisticRegression(C=1e4, max_iter=5000).fit(x, y).predict_proba(x[:1])[0, 1]
    assert seen > 0.99
    assert probs[0, 1] < seen  # ... but not the outlier's label from memory


def test_out_of_fold_needs_two_folds() -> None:
    with pytest.raises(ValueError, match="2 folds"):
        out_of_fold(
            np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.ones(4), classes=2, folds=1, c=1.0, seed=0
        )


def test_the_ensemble_is_the_mean_of_its_members() -> None:
    a = (np.array([[1.0, 0.0, 0.0, 0.0]]), np.array([1.0]))
    b = (np.array([[0.0, 1.0, 0.0, 0.0]]), np.array([0.0]))
    probs, nr = ensemble([a, b])
    assert probs.tolist() == [[0.5, 0.5, 0.0, 0.0]]
    assert nr.tolist() == [0.5]
    with pytest.raises(ValueError):
        ensemble([])
