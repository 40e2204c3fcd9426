"""The classic baseline: MFCC + spectral statistics (mean and std over time)
with logistic regression. Features come from the same cached log-mels the
networks see, so the comparison isolates the model, not the decoding."""

from __future__ import annotations

import numpy as np
from scipy.fft import dct
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.audio.features import mel_frequencies, to_db
from core.config import FeatureConfig

N_MFCC = 20


def handcrafted_features(mels: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """``(N, n_mels, T)`` scaled log-mels → ``(N, 90)`` feature vectors:
    MFCC and ΔMFCC, spectral centroid, bandwidth, roll-off, flatness and
    frame energy, each as mean and std over time."""
    cfg = cfg or FeatureConfig()
    freqs = mel_frequencies(cfg)[None, :, None]
    out = []
    for lm in np.asarray(mels, dtype=np.float32).reshape(-1, *mels.shape[-2:]):
        db = to_db(lm, cfg)
        mfcc = dct(db, type=2, norm="ortho", axis=0)[:N_MFCC]
        dmfcc = np.diff(mfcc, axis=1)
        power = 10 ** (db / 10)[None]
        total = power.sum(1, keepdims=True) + 1e-12
        centroid = (freqs * power).sum(1) / total[:, 0]
        bandwidth = np.sqrt(((freqs - centroid[:, None]) ** 2 * power).sum(1) / total[:, 0])
        cum = np.cumsum(power, axis=1) / total
        rolloff = freqs[0, :, 0][np.argmax(cum >= 0.85, axis=1)]
        flatness = np.exp(np.log(power + 1e-12).mean(1)) / (power.mean(1) + 1e-12)
        energy = db.mean(0, keepdims=True)
        spectral = np.concatenate([centroid / 1000, bandwidth / 1000, rolloff / 1000,
                                   flatness, energy[None, 0] / 10], axis=0)
        parts = [mfcc, dmfcc, spectral]
        out.append(np.concatenate([np.r_[p.mean(1), p.std(1)] for p in parts]))
    return np.stack(out) if out else np.zeros((0, 4 * N_MFCC + 10))


def train_baseline(features: np.ndarray, y: np.ndarray, seed: int = 0):
    """Standardised features → multinomial logistic regression."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000,
                                                             random_state=seed))
    clf.fit(features, y)
    return clf


def baseline_probs(clf, features: np.ndarray, n_labels: int) -> np.ndarray:
    """Class probabilities laid out over all ``n_labels`` (absent classes: 0)."""
    p = clf.predict_proba(features)
    out = np.zeros((len(features), n_labels))
    out[:, clf.classes_] = p
    return out


BASELINE_FILE = "baseline_mfcc.json"


class BaselineClassifier:
    """The trained MFCC baseline as plain numbers (no pickle): standardise,
    then a multinomial logistic regression, ``softmax(W·z + b)``. Reads the
    log-mel of :class:`~core.config.FeatureConfig` ``cfg``, like the networks."""

    name = "baseline_mfcc"

    def __init__(self, labels: list[str], classes: list[int], mean: np.ndarray, scale: np.ndarray,
                 coef: np.ndarray, intercept: np.ndarray, cfg: FeatureConfig):
        self.labels, self.classes, self.cfg = list(labels), list(classes), cfg
        self.mean, self.scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)

    @classmethod
    def from_sklearn(cls, clf, labels: list[str], cfg: FeatureConfig) -> "BaselineClassifier":
        scaler, lr = clf[0], clf[-1]
        return cls(labels, [int(c) for c in lr.classes_], scaler.mean_, scaler.scale_, lr.coef_,
                   lr.intercept_, cfg)

    def predict_logmel(self, mels: np.ndarray) -> np.ndarray:
        """``(N, n_mels, T)`` log-mels → ``(N, G)`` genre probabilities."""
        z = (handcrafted_features(mels, self.cfg) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        if logits.shape[1] == 1:                      # two classes: sklearn's binary form
            logits = np.concatenate([-logits, logits], axis=1) / 2
        e = np.exp(logits - logits.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        out = np.zeros((len(p), len(self.labels)))
        out[:, self.classes] = p
        return out

    def to_dict(self) -> dict:
        return {"model": self.name, "labels": self.labels, "classes": self.classes,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "feature_config": self.cfg.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "BaselineClassifier":
        return cls(d["labels"], d["classes"], np.array(d["mean"]), np.array(d["scale"]),
                   np.array(d["coef"]), np.array(d["intercept"]), FeatureConfig.from_dict(d["feature_config"]))
