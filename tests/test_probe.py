"""The frozen-encoder probe's head weights start a linear head exactly where the probe is (LP-FT)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data import load_dataset
from workbench.probe import fit_probe


@pytest.mark.parametrize("classes", [2, 3])
def test_head_weights_reproduce_the_probe_probabilities(classes):
    rng = np.random.default_rng(0)
    n = 60
    labels = [("spam", "ham", "other")[i % classes] for i in range(n)]
    x = rng.normal(size=(n, 8)) + np.array([[("spam", "ham", "other").index(lab)] * 8 for lab in labels])
    ds = load_dataset(pd.DataFrame({"text": [f"message {i}" for i in range(n)], "label": labels}))
    probe = fit_probe(ds, C=1.0, embeddings=x)
    weight, bias = probe.head_weights()
    assert weight.shape == (classes, 8) and bias.shape == (classes,)  # binary too: one row per class
    logits = x @ weight.T + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax, probe.classifier.predict_proba(x), atol=1e-6)
