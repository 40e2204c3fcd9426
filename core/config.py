"""One place for every setting: feature extraction, training, inference and paths."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FeatureConfig:
    """Audio → log-mel settings shared by training and inference.

    Defaults follow Choi et al. (2017) as used by Adiyansjah et al. (2019):
    12 kHz, n_fft 512, hop 256, 96 mel bands, 1366 frames (≈ 29.1 s).
    """

    sample_rate: int = 12_000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    n_frames: int = 1366
    f_min: float = 0.0
    f_max: float | None = None
    # Frames per training chunk / inference window (~5.5 s; Won et al. 2020
    # found short chunks train as well as full clips). The paper's full-window
    # setting is ``chunk_frames = n_frames``.
    chunk_frames: int = 256
    # Hop between inference windows, in frames (50 % overlap).
    window_hop_frames: int = 128
    # Where to take the fixed-length excerpt of a longer track.
    crop: str = "centre"  # "centre" | "start" | "random"
    # Loudness normalisation target (RMS in dBFS) so models learn genre, not
    # the mastering level of a source collection; None keeps the file's level.
    target_rms_db: float | None = -20.0
    # A model's own level normalisation of the cached log-mel ("log1p" only):
    # each clip's mean mel power is scaled to this many dB before the network
    # (core.audio.features.normalise_level). Not part of key(): the cached
    # log-mel, and the loudness facet read from it, keep the file's level.
    level_db: float | None = None
    min_seconds: float = 1.0
    # Magnitude compression of the mel power P:
    #   "db":    (10·log10(max(P, amin)) + db_offset) · db_scale  (this project's models)
    #   "log1p": log10(log_c · P + 1)                             (musicnn / MSD-VGG, Pons et al.)
    compression: str = "db"
    amin: float = 1e-10
    db_offset: float = 40.0
    db_scale: float = 1 / 40.0
    log_c: float = 10_000.0
    # musicnn casts the mel power to float16 before compressing; its weights
    # were trained on that rounding, so the MSD front-end repeats it.
    power_float16: bool = False

    @property
    def window_samples(self) -> int:
        """Samples in the full fixed-length excerpt."""
        return (self.n_frames - 1) * self.hop_length

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate

    def key(self) -> str:
        """Short stable hash of the settings that change the log-mel values."""
        relevant = {k: v for k, v in asdict(self).items()
                    if k not in ("chunk_frames", "window_hop_frames", "level_db")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]

    def level_tag(self) -> str:
        """``":L<level_db>"`` for keys that cover the model's level step ("" without one)."""
        return "" if self.level_db is None else f":L{self.level_db:g}"

    def input_key(self) -> str:
        """:meth:`key` plus what the model does to the log-mel before its first layer."""
        return self.key() + self.level_tag()

    def to_dict(self) -> dict:
        """The settings as saved with a model (``level_db`` only when set, so a
        model without it keeps the fingerprint and file it had before the field)."""
        d = asdict(self)
        if d["level_db"] is None:
            del d["level_db"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainConfig:
    """Optimiser and schedule. Paper: Adam lr 1e-3, β 0.9/0.999, BCE, batch 50.

    Batch 16 instead of 50: under a fixed CPU budget the number of updates,
    not the batch size, limits learning on 550 clips (50 gives ~500 updates in
    14 min and the models stay at the label prior; 16 gives ~1,500).
    """

    model: str = "crnn"
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    patience: int = 12
    seed: int = 0
    max_minutes: float | None = 14.0
    # Chunks drawn per track per epoch (random crops of the cached log-mel).
    chunks_per_track: int = 1
    augment: bool = True
    # Waveform augmentation (core.audio.augment) before the log-mel, training
    # batches only: augmented copies per track (0: off), and the chance a
    # batch item is swapped for one (core.training.wave_augment).
    wave_augment: int = 0
    wave_augment_p: float = 0.5
    num_threads: int | None = None
    # Transfer learning (cnn_msd / crnn_msd): pretrained layers outside the
    # frozen trunk learn at lr · pretrained_lr_scale (0 freezes them too);
    # dropout on the cached trunk features is the augmentation.
    pretrained_lr_scale: float = 0.1
    feature_dropout: float = 0.2
    # "auto": CUDA when a GPU is present, else the CPU.
    device: str = "auto"
    # Continue from these weights (a .safetensors of the same model), e.g. to
    # extend a run that hit its time budget.
    init_from: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


PRECISION_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class AdaptConfig:
    """Adapting the default model's genre head to a music library without a
    label of it (:mod:`core.training.library_head`; README, "Adapting the
    genre head to your library").

    ``frac`` / ``rounds``: self-training's share of each predicted genre and
    its rounds (:func:`~core.training.self_train.self_train`), the choice
    that leave-one-source-out made; ``rank``: principal directions kept per
    genre in the shipped replay statistics; ``min_tracks``: below this a
    library is too small to adapt to (``python -m benchmarks.self_train_probe
    --library-sizes``: random held-out libraries of 10 tracks gained nothing
    on average, of 20 tracks +0.023);
    ``seed``: the replay draw.
    """

    frac: float = 1.0
    rounds: int = 2
    rank: int = 32
    min_tracks: int = 20
    seed: int = 0


@dataclass(frozen=True)
class InferenceConfig:
    """How the inference copies of the models compute
    (:func:`core.models.optimise.optimise_for_inference`).

    ``bfloat16``: ``"auto"`` (default) runs the conv layers that tolerate it
    in bfloat16 where the CPU has native bfloat16 (AVX512-BF16 / AMX) and in
    float32 elsewhere; ``"on"`` / ``"off"`` force it. The default comes from
    ``$GENRE_BFLOAT16`` (``python -m core --precision`` sets it). The val
    accuracy it costs is measured and stated in
    :func:`~core.models.optimise.optimise_for_inference`.

    ``int8``: ``"auto"`` (default) runs the musicnn trunks' front-end
    products in int8 (:class:`~core.models.trunks_fast.FastMusicnn`) where
    the CPU has int8 dot products (VNNI) and no AMX (whose bfloat16 tiles
    were not measured against it); ``"on"`` / ``"off"`` force it; default
    from ``$GENRE_INT8``. Its cost on leave-one-source-out val is stated in
    :func:`~core.models.optimise.use_int8`.
    """

    bfloat16: str = field(default_factory=lambda: os.environ.get("GENRE_BFLOAT16", "auto").strip().lower())
    int8: str = field(default_factory=lambda: os.environ.get("GENRE_INT8", "auto").strip().lower())

    def __post_init__(self):
        for name in ("bfloat16", "int8"):
            value = getattr(self, name)
            mode = {"1": "on", "true": "on", "yes": "on", name: "on",
                    "0": "off", "false": "off", "no": "off", "float32": "off"}.get(value, value)
            object.__setattr__(self, name, mode)
            if mode not in PRECISION_MODES:
                raise ValueError(f"{name} must be one of {PRECISION_MODES}, got {value!r}")


@dataclass
class Paths:
    """Where things live; each can be overridden by an environment variable."""

    artifacts: Path = field(default_factory=lambda: Path(os.environ.get(
        "GENRE_ARTIFACTS", PROJECT_ROOT / "artifacts")))
    cache: Path = field(default_factory=lambda: Path(os.environ.get(
        "GENRE_CACHE", PROJECT_ROOT / ".cache" / "logmel")))
    library: Path = field(default_factory=lambda: Path(os.environ.get(
        "GENRE_LIBRARY", PROJECT_ROOT / "library")))
    index: Path = field(default_factory=lambda: Path(os.environ.get(
        "GENRE_INDEX", PROJECT_ROOT / "index")))
    study_db: Path = field(default_factory=lambda: Path(os.environ.get(
        "GENRE_STUDY_DB", PROJECT_ROOT / "study.sqlite")))


def shared_data_dirs() -> list[Path]:
    """Data folders under ``../shared/data`` (or $GENRE_DATA, ':'-separated)."""
    env = os.environ.get("GENRE_DATA")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    root = PROJECT_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "metadata.csv").is_file())
