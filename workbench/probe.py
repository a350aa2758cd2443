"""The cheap baseline: frozen-encoder embeddings and a logistic-regression probe.

Every classification comparison includes it, so a fine-tune has to beat it to count. The
same probe initialises the classification head before fine-tuning the whole encoder
(LP-FT: linear probing, then fine-tuning), which keeps the pretrained features from being
disturbed by a random head in the first steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .data.dataset import LoadedDataset
from .presets import resolve_path
from .tokenizer import load_tokenizer


def embed(texts: list[str], encoder="minilm", batch_size: int = 128, max_length: int = 64, device: str = "cpu",
          pooling: str = "mean", normalize: bool = True, tokenizer=None) -> np.ndarray:
    """Sentence embeddings: mean (or CLS) pooling over real tokens, L2-normalised by default.

    Args:
        texts: The texts.
        encoder: A preset name, a folder, or an already loaded encoder module.
        tokenizer: Needed when ``encoder`` is a module.
    """
    import torch
    from transformers import AutoModel

    if isinstance(encoder, str):
        path = resolve_path(encoder)
        tokenizer = tokenizer or load_tokenizer(path)
        model = AutoModel.from_pretrained(path).to(device).eval()
    else:
        model = encoder.eval()
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().cpu().numpy()
    return out


@dataclass
class Probe:
    """A logistic regression on frozen embeddings."""

    labels: list[str]
    classifier: object
    encoder: str
    max_length: int
    fit_seconds: float

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.classifier.predict_proba(embed(texts, self.encoder, max_length=self.max_length))

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(1)]

    __call__ = predict  # a Predictor, like compare.ClassifierScorer

    def head_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Weight (labels x hidden) and bias in ``labels`` order, for initialising a linear head."""
        clf = self.classifier
        coef, intercept = clf.coef_, clf.intercept_
        if coef.shape[0] == 1:  # two classes: one row scores class 1 against class 0; split it symmetrically
            coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        index = [list(clf.classes_).index(i) for i in range(len(self.labels))]
        return coef[index], intercept[index]


def fit_probe(train: LoadedDataset, encoder: str = "minilm", C: float = 30.0, max_length: int = 64,
              max_iter: int = 2000, embeddings: np.ndarray | None = None) -> Probe:
    """Fit a multinomial logistic regression on the frozen, normalised embeddings of ``train``."""
    from sklearn.linear_model import LogisticRegression

    if not train.spec.has_label:
        raise ValueError(f"a probe needs text+label data; {train.source} is {train.format}")
    start = time.perf_counter()
    labels = sorted({str(x) for x in train.frame["label"]})
    index = {n: i for i, n in enumerate(labels)}
    x = embed(train.frame["text"].tolist(), encoder, max_length=max_length) if embeddings is None else embeddings
    y = np.array([index[str(v)] for v in train.frame["label"]])
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(x, y)
    return Probe(labels, clf, encoder, max_length, time.perf_counter() - start)
