"""The pretrained trunk family: every tagger of the ``musicnn`` wheel, one
decode and one log-mel per clip for all of them.

All four checkpoints share one input, :data:`~core.models.msd.MSD_FEATURES`
(16 kHz, n_fft 512, hop 256, 96 mels, ``log10(10000·P + 1)`` with ``10000·P``
in float32) cut into 3 s patches (187 frames; a 30 s clip gives 10, the
2-frame tail is dropped, as musicnn's ``batch_data`` does). Each trunk runs
once per clip on all its patches and returns a :class:`TrunkOutput`:

* ``features`` ``(N, 2·D)``: the penultimate layer averaged over the clip's
  patches, then its maximum over them (``[mean₀…mean_D, max₀…max_D]``);
  D = 200 for musicnn (batch-normed dense layer), 256 for the VGGs (pool 5
  flattened, the tag layer's input);
* ``tags`` ``(N, 50)``: the tag probabilities (sigmoid of the logits)
  averaged over patches.

A bank may run on fewer of a clip's patches (``patches=k``: :func:`patch_choice`
spreads k of them evenly over the clip); the pooled layout stays the same.
How many a served model uses is chosen leave-one-source-out
(:mod:`core.training.fused_trunks_train`) from per-patch outputs
(:meth:`TrunkBank.patch_outputs`, re-pooled by :func:`pool_patches`).

Adding a checkpoint is one :data:`TRUNKS` entry (and its port in
:func:`core.models.musicnn.pretrained`). :func:`trunk_outputs` is the API
for training and evaluation; :class:`TrunkBank` is what a served model holds
(loaded once, run on the log-mel the inference path already computed).

Serving: a genre model built on the trunks (e.g. a fused head) plugs into
the one inference path (:func:`core.models.inference.predict_all`, used by
the indexer, evaluation and the app) by exposing ``trunk_key()`` =
:meth:`TrunkBank.key`, ``trunk_features(logmel)`` = :meth:`TrunkBank.vector`
and ``predict_trunk(vectors)``: :func:`~core.models.transfer.trunk_group`
then runs the bank once per clip for every model that shares it.
:func:`shared_bank` gives one bank per process and setting.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.audio.features import normalise_level
from core.config import FeatureConfig
from core.errors import ArtifactError
from core.models.msd import MSD_FEATURES, MSD_TAGS, PATCH_FRAMES, patches
from core.models.musicnn import MTT_TAGS


@dataclass(frozen=True)
class TrunkSpec:
    """One pretrained checkpoint of the wheel."""

    name: str                 # registry key (lower case)
    checkpoint: str           # folder in the musicnn wheel
    paper: str
    tags: tuple[str, ...]
    embed_dim: int            # D: width of the penultimate layer
    # Revision of the bfloat16 inference copy, named in the bank key from 2 on
    # so cached features of an earlier copy are recomputed, not mixed in (its
    # float32 outputs do not change). mtt_vgg 2: conv 1 and the overlapping
    # pool 1 in float32 (FastMSDTrunk), not all under autocast.
    bf16_revision: int = 1

    @property
    def feature_dim(self) -> int:
        """Width of :attr:`TrunkOutput.features` (mean and max over patches)."""
        return 2 * self.embed_dim


_PONS_SERRA = "Pons & Serra 2019, musicnn (ISMIR LBD)"
_PONS_2018 = "Pons et al. 2018, End-to-end learning for music audio tagging at scale (ISMIR)"
TRUNKS: dict[str, TrunkSpec] = {s.name: s for s in (
    TrunkSpec("msd_vgg", "MSD_vgg", _PONS_2018 + ", trained on MSD for " + _PONS_SERRA, tuple(MSD_TAGS), 256),
    TrunkSpec("msd_musicnn", "MSD_musicnn", _PONS_SERRA, tuple(MSD_TAGS), 200),
    TrunkSpec("mtt_musicnn", "MTT_musicnn", _PONS_SERRA, tuple(MTT_TAGS), 200),
    TrunkSpec("mtt_vgg", "MTT_vgg", _PONS_2018, tuple(MTT_TAGS), 256, bf16_revision=2),
)}


@dataclass(frozen=True)
class TrunkOutput:
    """One trunk's outputs for N clips: ``features (N, 2·D)``, ``tags (N, 50)``, float32."""

    features: np.ndarray
    tags: np.ndarray


def resolve(trunks: Sequence[str] | None = None) -> list[TrunkSpec]:
    """Specs of ``trunks`` (default: all of :data:`TRUNKS`, registry order)."""
    names = list(TRUNKS) if trunks is None else [t.lower() for t in trunks]
    unknown = [n for n in names if n not in TRUNKS]
    if unknown or not names:
        raise ArtifactError(f"unknown trunk(s) {unknown or names}; choose from {sorted(TRUNKS)}")
    return [TRUNKS[n] for n in names]


def check_patches(keep: int | None) -> int | None:
    """``keep`` patches per clip as an int (None: all); raises for fewer than one."""
    if keep is not None and int(keep) < 1:
        raise ArtifactError(f"a trunk needs at least one patch per clip (patches ≥ 1), got {keep}")
    return None if keep is None else int(keep)


def patch_choice(n: int, keep: int | None) -> list[int]:
    """Indices of ``keep`` of a clip's ``n`` patches, spread evenly: the i-th is
    ``⌊(i + ½)·n / keep⌋`` (10 patches: keep 5 → 1, 3, 5, 7, 9; keep 3 → 1, 5, 8;
    keep 1 → 5). ``keep`` None or ≥ ``n``: all of them."""
    keep = check_patches(keep)
    if keep is None or keep >= n:
        return list(range(n))
    return [int((i + 0.5) * n / keep) for i in range(keep)]


def pool_patches(pen, tags):
    """Per-patch outputs → a clip's pooled ones: ``pen`` ``(P, B, D)``, ``tags``
    ``(P, B, 50)`` (torch tensors or numpy arrays) → (features ``(B, 2·D)`` =
    [mean over patches, max over patches], tags ``(B, 50)`` = mean)."""
    if isinstance(pen, torch.Tensor):
        return torch.cat([pen.mean(0), pen.amax(0)], 1), tags.mean(0)
    return np.concatenate([pen.mean(0), pen.max(0)], 1), tags.mean(0)


def pool_clips(pen: np.ndarray, tags: np.ndarray, keep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored per-patch outputs of N clips, ``pen`` ``(N, P, D)`` and ``tags``
    ``(N, P, 50)``, pooled over ``keep`` patches of each clip
    (:func:`patch_choice`) as a bank with ``patches=keep`` pools them:
    (features ``(N, 2·D)``, tags ``(N, 50)``)."""
    idx = patch_choice(pen.shape[1], keep)
    return pool_patches(pen[:, idx].transpose(1, 0, 2), tags[:, idx].transpose(1, 0, 2))


# The trunk whose conv blocks 1–4 the MSD transfer models also run over whole
# clips: a served bank computes it that way and takes their pass (ClipVGG).
CLIP_TRUNK = "msd_vgg"


def load_trunk(spec: TrunkSpec, fast: bool = True, bfloat16: bool | None = None,
               clip: bool = False, int8: bool | None = None) -> tuple[nn.Module, str]:
    """The port of ``spec`` with the wheel's weights, and the SHA-256 (16 hex)
    of those weights; ``fast``: its inference copy
    (:func:`core.models.trunks_fast.fast_tagger`, same outputs to ~1e-6 in
    float32; ``bfloat16`` / ``int8`` default :func:`~core.models.optimise.use_bfloat16`
    / :func:`~core.models.optimise.use_int8`);
    ``clip`` (:data:`CLIP_TRUNK` only): wrapped in
    :class:`~core.models.trunks_fast.ClipVGG` (blocks 1–4 once over the whole clip)."""
    from core.models.base import hash_state
    from core.models.musicnn import pretrained
    model = pretrained(spec.checkpoint)
    digest = hash_state(hashlib.sha256(), model, as_float=True).hexdigest()[:16]
    sha = None
    if clip and spec.name == CLIP_TRUNK:
        from core.models.msd import trunk_digest
        sha = trunk_digest(model.trunk)
    if fast:
        from core.models.trunks_fast import fast_tagger
        model = fast_tagger(model, bfloat16=bfloat16, int8=int8)
    if sha is not None:
        from core.models.trunks_fast import ClipVGG
        model = ClipVGG(model, sha)
    return model, digest


class TrunkBank:
    """Loaded trunks, run together on one log-mel.

    ``run(logmel)`` takes MSD_FEATURES log-mels ``(B, 1, 96, T)`` (``T ≥ 187``),
    normalises each clip's level as ``cfg.level_db`` says (default
    MSD_FEATURES; :func:`~core.audio.features.normalise_level`), and returns
    ``{name: (features (B, 2·D), tags (B, 50))}`` as tensors;
    :meth:`vector` concatenates them into ``(B, F)`` (per trunk in order:
    mean, max, tags) — the layout :meth:`split` undoes. ``patches``: run on
    that many of each clip's 3 s patches (:func:`patch_choice`; None: all).
    ``clip`` (default: ``fast``): MSD_vgg's blocks 1–4 run once over the whole
    clip (:class:`~core.models.trunks_fast.ClipVGG`), so served models share
    that pass with the MSD transfer models (:meth:`shared_trunk_key`).
    ``int8``: the musicnn trunks' front end in int8 (default
    :func:`~core.models.optimise.use_int8`); :attr:`int8` says whether any
    tagger of the bank runs so.
    """

    def __init__(self, trunks: Sequence[str] | None = None, fast: bool = True,
                 bfloat16: bool | None = None, models: dict[str, nn.Module] | None = None,
                 patches: int | None = None, clip: bool | None = None, digests: dict[str, str] | None = None,
                 cfg: FeatureConfig | None = None, int8: bool | None = None):
        from core.models.optimise import use_bfloat16
        self.specs = resolve(trunks if models is None else list(models))
        self.bfloat16 = bool(fast and (use_bfloat16() if bfloat16 is None else bfloat16))
        if models is not None:      # taggers already built (tests, another bank's, copies made elsewhere)
            self.models, self.digests = dict(models), dict(digests or {n: "given" for n in models})
        else:
            clip = fast if clip is None else bool(clip)
            loaded = {s.name: load_trunk(s, fast=fast, bfloat16=self.bfloat16, clip=clip, int8=int8)
                      for s in self.specs}
            self.models = {n: m for n, (m, _) in loaded.items()}
            self.digests = {n: d for n, (_, d) in loaded.items()}
        self.int8 = any(getattr(m, "int8", False) is True for m in self.models.values())
        self.cfg = cfg or MSD_FEATURES
        if self.cfg.key() != MSD_FEATURES.key():
            raise ArtifactError("trunks need MSD_FEATURES log-mels (the input every trunk was trained on)")
        self.patches = check_patches(patches)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def dim(self) -> int:
        """F: width of :meth:`vector`."""
        return sum(s.feature_dim + len(s.tags) for s in self.specs)

    def key(self) -> str:
        """Identifies the outputs: trunk names, their checkpoint digests and the
        precision (bfloat16 changes tag probabilities by up to ~0.01, the int8
        musicnn front end by up to ~0.03), and the patches per clip
        (:meth:`patch_key` without them). Caches key on it."""
        return self.patch_key() if self.patches is None else f"{self.patch_key()}:p{self.patches}"

    def patch_key(self) -> str:
        """Identifies the per-patch outputs (:meth:`patch_outputs`), whatever
        :attr:`patches`: also the level normalisation (``cfg.level_db``)."""
        h = hashlib.sha256(repr(sorted(self.digests.items())).encode()).hexdigest()[:12]
        precision = ("bf16" if self.bfloat16 else "f32") + ("+int8" if self.int8 else "")
        if self.bfloat16:
            precision += "".join(f"+{t.name}.r{t.bf16_revision}" for t in self.specs if t.bf16_revision > 1)
        key = f"{'+'.join(self.names)}:{h}:{precision}{self.cfg.level_tag()}"
        return key + (":clip" if self._clip() is not None else "")

    def _clip(self):
        from core.models.trunks_fast import ClipVGG
        return next((m for m in self.models.values() if isinstance(m, ClipVGG)), None)

    def shared_trunk_key(self) -> str | None:
        """The MSD trunk pass this bank can take from another model
        (:func:`~core.models.msd.msd_trunk_key`), or None."""
        from core.models.msd import msd_trunk_key
        clip = self._clip()
        return None if clip is None else msd_trunk_key(self.cfg, clip.trunk_sha, clip.bfloat16)

    def patch_input(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mels ``(B, 96, T)`` or ``(B, 1, 96, T)`` → what the trunks read:
        (the level-normalised clips ``(B, 1, 96, T)``, their 3 s patches
        ``(P·B, 1, 96, 187)``, patch-major)."""
        x = torch.as_tensor(logmel, dtype=torch.float32)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.cfg.n_mels or x.shape[-1] < PATCH_FRAMES:
            raise ArtifactError(f"trunks need log-mels (B, 1, {self.cfg.n_mels}, ≥{PATCH_FRAMES}), "
                                f"got {tuple(x.shape)}")
        x = normalise_level(x, self.cfg)                    # per clip, before the patches
        return x, patches(x)

    @torch.inference_mode()
    def patch_outputs(self, logmel: torch.Tensor, keep: int | None = None, shared: torch.Tensor | None = None
                      ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-patch outputs of ``keep`` patches per clip (:func:`patch_choice`;
        None: all P): ``{name: (penultimate (P, B, D), tags (P, B, 50))}``.
        ``shared``: the MSD trunk pass ``(B, 128, 6, T4)`` over these clips, when
        another model has made it (:meth:`shared_trunk_key`)."""
        from core.models.trunks_fast import ClipVGG
        x, p = self.patch_input(logmel)
        b = x.shape[0]
        n = p.shape[0] // b
        idx = patch_choice(n, keep)
        if len(idx) < n:
            p = p.reshape(n, b, *p.shape[1:])[idx].flatten(0, 1)
        out = {}
        for name, model in self.models.items():
            if isinstance(model, ClipVGG):
                pen, logits = model.embed_clip(x, idx, shared)
            else:
                pen, logits = model.embed(p)
            out[name] = (pen.float().reshape(-1, b, pen.shape[-1]),
                         torch.sigmoid(logits.float()).reshape(-1, b, logits.shape[-1]))
        return out

    def run(self, logmel: torch.Tensor, shared: torch.Tensor | None = None
            ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {n: pool_patches(*o) for n, o in self.patch_outputs(logmel, self.patches, shared).items()}

    def vector(self, logmel: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 1, 96, T)`` → ``(B, F)``: every trunk's features and tags, concatenated
        (``shared``: see :meth:`patch_outputs`)."""
        return torch.cat([torch.cat(v, 1) for v in self.run(logmel, shared).values()], 1)

    def split(self, vec: np.ndarray | torch.Tensor) -> dict[str, TrunkOutput]:
        """Undo :meth:`vector`: ``(N, F)`` → ``{name: TrunkOutput}``."""
        v = np.asarray(vec, dtype=np.float32)
        out, i = {}, 0
        for s in self.specs:
            f, t = s.feature_dim, len(s.tags)
            out[s.name] = TrunkOutput(v[:, i: i + f], v[:, i + f: i + f + t])
            i += f + t
        return out


def key_level(key: str) -> float | None:
    """The level step (``level_db``) a bank's :meth:`TrunkBank.key` records
    (its :meth:`~core.config.FeatureConfig.level_tag`), or None."""
    return next((float(s[1:]) for s in key.split(":")[3:] if s.startswith("L")), None)


_BANKS: dict[tuple, TrunkBank] = {}
_BANKS_LOCK = threading.Lock()


def shared_bank(trunks: Sequence[str] | None = None, bfloat16: bool | None = None,
                patches: int | None = None, fast: bool = True, cfg: FeatureConfig | None = None,
                int8: bool | None = None) -> TrunkBank:
    """One :class:`TrunkBank` per process and (trunks, precisions, ``fast``,
    patches, ``cfg``'s level): loading reads ~35 MB of checkpoints, so served
    models share it (banks that differ only in ``patches`` or level share the
    loaded taggers; ``fast=False``: the plain float32 ports as written, the
    naive baseline's). The bank holds no state that changes after construction."""
    from core.models.optimise import use_bfloat16, use_int8
    cfg = cfg or MSD_FEATURES
    bf16 = bool(fast and (use_bfloat16() if bfloat16 is None else bfloat16))
    i8 = bool(fast and (use_int8() if int8 is None else int8))
    key = (tuple(s.name for s in resolve(trunks)), bf16, bool(fast), i8, None if patches is None else int(patches),
           cfg.input_key())
    with _BANKS_LOCK:
        if key not in _BANKS:
            twin = next((b for k, b in _BANKS.items() if k[:4] == key[:4]), None)
            if twin is None:
                _BANKS[key] = TrunkBank(list(key[0]), fast=key[2], bfloat16=key[1], int8=key[3], patches=key[4],
                                        cfg=cfg)
            else:
                _BANKS[key] = TrunkBank(list(key[0]), fast=key[2], bfloat16=key[1], models=twin.models,
                                        patches=key[4], digests=twin.digests, cfg=cfg)
        return _BANKS[key]


def trunk_outputs(inputs, trunks: Sequence[str] | None = None, bank: TrunkBank | None = None,
                  batch: int = 4) -> dict[str, TrunkOutput]:
    """Every trunk's pooled features and tags for N clips.

    ``inputs``: MSD_FEATURES log-mels (``(N, 1, 96, T)`` or ``(N, 96, T)``,
    array or tensor), or a sequence of audio sources (paths, bytes) — each
    decoded once (:func:`core.audio.load.load`) and turned into one log-mel
    (:func:`core.audio.features.logmels`) that every trunk shares.
    ``trunks``: names from :data:`TRUNKS` (default all). Returns
    ``{name: TrunkOutput(features (N, 2·D), tags (N, 50))}``.
    """
    bank = bank or TrunkBank(trunks)
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        mels = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
        chunks = [mels[i: i + batch] for i in range(0, len(mels), batch)]
    else:
        chunks = (clip_logmel(src)[None] for src in inputs)
    vecs = [bank.vector(c).numpy() for c in chunks]
    return bank.split(np.concatenate(vecs) if vecs else np.zeros((0, bank.dim), np.float32))


def clip_logmel(source) -> torch.Tensor:
    """One decode, one log-mel: ``source`` → ``(1, 96, 1872)`` MSD_FEATURES log-mel."""
    from core.audio.features import logmels
    from core.audio.load import load
    return logmels(load(source, MSD_FEATURES), MSD_FEATURES)[0]
