"""The ensemble aligns classes by name, never by position."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.backbones.fake import FakeBackbone
from scanner.classify import Classifier, Model, align_classes
from scanner.errors import HeadMismatchError
from scanner.heads.mlp import MLPHead


class _Renamed(FakeBackbone):
    name = "fake2"


def _head(backbone, classes, logits):
    """A head whose output ignores its input: fixed logits in the given class order."""
    dim = backbone.embedding_dim
    return MLPHead(classes=classes, backbone_config=backbone.config(),
                   layers=[(np.zeros((len(classes), dim)), np.array(logits, float))],
                   mean=np.zeros(dim), std=np.ones(dim))


def test_align_classes_reorders_by_name():
    p = np.array([[0.7, 0.2, 0.1]], np.float32)
    out = align_classes(p, ("cry", "screaming", "not_screaming"),
                        ("not_screaming", "cry", "screaming"))
    np.testing.assert_allclose(out, [[0.1, 0.7, 0.2]], rtol=1e-6)
    with pytest.raises(HeadMismatchError):
        align_classes(p, ("cry", "screaming", "other"), ("cry", "screaming", "not_screaming"))


def test_ensemble_with_differently_ordered_heads_does_not_swap_classes():
    a, b = FakeBackbone(), _Renamed()
    # Both heads are confident of "screaming", but list their classes in different orders.
    head_a = _head(a, ("cry", "screaming", "not_screaming"), [0, 5, 0])
    head_b = _head(b, ("screaming", "not_screaming", "cry"), [5, 0, 0])
    clf = Classifier([Model(a, head_a), Model(b, head_b, weight=3.0)])
    x = {"fake": np.zeros((1, 16), np.float32), "fake2": np.zeros((1, 16), np.float32)}
    pred = clf.predict_features(x)
    assert clf.classes == ("cry", "screaming", "not_screaming")
    for p in (*pred.per_backbone.values(), pred.probs):
        assert p[0].argmax() == 1
    np.testing.assert_allclose(pred.per_backbone["fake"], pred.per_backbone["fake2"], rtol=1e-6)
    assert clf.weights == {"fake": 0.25, "fake2": 0.75}


def test_heads_with_different_class_sets_are_refused():
    a, b = FakeBackbone(), _Renamed()
    with pytest.raises(HeadMismatchError):
        Classifier([Model(a, _head(a, ("cry", "screaming", "not_screaming"), [0, 0, 0])),
                    Model(b, _head(b, ("cry", "other", "not_screaming"), [0, 0, 0]))])


def test_head_for_another_backbone_is_refused():
    a, b = FakeBackbone(), _Renamed()
    with pytest.raises(HeadMismatchError, match="trained for backbone"):
        Classifier([Model(b, _head(a, ("cry", "screaming", "not_screaming"), [0, 0, 0]))])
