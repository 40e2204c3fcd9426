"""Shipped artifacts: model weights (safetensors, no pickle), JSON side files
and a SHA-256 manifest that every load verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save

from core.config import FeatureConfig, Paths
from core.errors import ArtifactError
from core.files import atomic_write_text, sha256_of, write_safetensors
from core.models import MODELS, GenreModel, build_model
from core.models.optimise import optimise_for_inference

if TYPE_CHECKING:  # pragma: no cover
    from core.training.baseline import BaselineClassifier

MANIFEST = "manifest.json"
REGENERATE = "make artifacts"


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=1, allow_nan=True) + "\n")


def save_model(model: GenreModel, out_dir: str | Path, extra: dict | None = None) -> Path:
    """``<out>/<name>.safetensors`` with labels and feature config in its header;
    the same weights and header give the same bytes (:func:`~core.files.write_safetensors`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": model.name, "labels": json.dumps(model.labels),
            "feature_config": json.dumps(model.cfg.to_dict()),
            "extra": json.dumps(extra or {})}
    return write_safetensors(out / f"{model.name}.safetensors", save(model.saved_state(), metadata=meta))


def model_extra(name: str, artifacts_dir: str | Path | None = None) -> dict:
    """The ``extra`` record (train config, best epoch, …) stored with a model's weights."""
    from safetensors import safe_open

    path = Path(artifacts_dir or Paths().artifacts) / f"{name}.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("extra", "{}"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"artifact unreadable: {path} ({exc})") from None


def _artifact_files(out: Path) -> list[Path]:
    """The files the manifest covers: every file under ``out`` but the manifest
    itself and half-written ``*.tmp`` files, sorted."""
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not p.name.endswith(".tmp"))


def update_manifest(out_dir: str | Path) -> dict:
    """Record the SHA-256 of every artifact file in ``manifest.json``."""
    out = Path(out_dir)
    files = _artifact_files(out)
    manifest = {"files": {str(p.relative_to(out)): sha256_of(p) for p in files},
                "regenerate": REGENERATE}
    write_json(out / MANIFEST, manifest)
    return manifest


def write_report(path: str | Path, obj, artifacts_dir: str | Path | None = None) -> None:
    """Write a JSON report; when it lands in the artifacts folder, update the
    manifest too (so the app never meets a shipped file that does not verify)."""
    path = Path(path)
    write_json(path, obj)
    root = Path(artifacts_dir or Paths().artifacts).resolve()
    if path.resolve().parent == root and (root / MANIFEST).is_file():
        update_manifest(root)


def manifest_problems(out_dir: str | Path) -> list[str]:
    """One line per file of ``out_dir`` that does not verify: listed but
    missing, listed with another SHA-256, or shipped but not listed
    (``[]`` when the folder and its ``manifest.json`` agree)."""
    out = Path(out_dir)
    try:
        listed = json.loads((out / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        return [f"{out / MANIFEST} unreadable ({exc})"]
    shipped = {str(p.relative_to(out)) for p in _artifact_files(out)}
    problems = [f"{name}: listed but missing" for name in sorted(set(listed) - shipped)]
    problems += [f"{name}: not in manifest" for name in sorted(shipped - set(listed))]
    problems += [f"{name}: checksum mismatch" for name in sorted(shipped & set(listed))
                 if sha256_of(out / name) != listed[name]]
    return problems


def verify(path: Path, root: Path) -> None:
    """Raise :class:`ArtifactError` unless ``path`` matches the manifest."""
    rel = str(path.relative_to(root))
    if not path.is_file():
        raise ArtifactError(f"artifact missing: {path} — regenerate with `{REGENERATE}`")
    man_path = root / MANIFEST
    if not man_path.is_file():
        raise ArtifactError(f"artifact manifest missing: {man_path} — regenerate with `{REGENERATE}`")
    try:
        expected = json.loads(man_path.read_text())["files"].get(rel)
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"artifact manifest unreadable: {man_path} ({exc})") from None
    if expected is None:
        raise ArtifactError(f"artifact not in manifest: {path} — regenerate with `{REGENERATE}`")
    if sha256_of(path) != expected:
        raise ArtifactError(f"artifact checksum mismatch (tampered or corrupt): {path} — "
                            f"regenerate with `{REGENERATE}`")


def load_model(name: str, artifacts_dir: str | Path | None = None, check: bool = True) -> GenreModel:
    """Load ``<artifacts>/<name>.safetensors`` (verified against the manifest)."""
    root = Path(artifacts_dir or Paths().artifacts)
    path = root / f"{name}.safetensors"
    if check:
        verify(path, root)
    elif not path.is_file():
        raise ArtifactError(f"artifact missing: {path} — regenerate with `{REGENERATE}`")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
        labels = json.loads(meta["labels"])
        cfg = FeatureConfig.from_dict(json.loads(meta["feature_config"]))
        model = build_model(meta.get("model", name), labels, cfg)
        model.load_saved_state(state)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"artifact unreadable: {path} ({type(exc).__name__}: {exc}) — "
                            f"regenerate with `{REGENERATE}`") from None
    model.eval()
    return model


def available_models(artifacts_dir: str | Path | None = None) -> list[str]:
    """Names of the models whose weights are in the artifacts folder."""
    root = Path(artifacts_dir or Paths().artifacts)
    return [n for n in MODELS if (root / f"{n}.safetensors").is_file()]


def load_models(artifacts_dir: str | Path | None = None, optimise: bool = False) -> dict[str, GenreModel]:
    """Every shipped model, by name (``{"cnn": …, "crnn": …}``).

    ``optimise=True`` returns the served inference copies (batch norm
    folded, the MSD trunk rewritten, bfloat16 convolutions where the CPU has
    them; the tolerances are in :func:`core.models.optimise.optimise_for_inference`)
    — for serving and evaluation, not training.
    """
    models = {n: load_model(n, artifacts_dir) for n in available_models(artifacts_dir)}
    if optimise:
        models = {n: optimise_for_inference(m) for n, m in models.items()}
    return models


def load_baseline(artifacts_dir: str | Path | None = None) -> BaselineClassifier | None:
    """The shipped MFCC baseline, or ``None`` when the artifacts have none."""
    # Imported here: scikit-learn costs ~1 s to import, and only this loader
    # needs it (not the indexer's workers, the CLI's other commands or Ray tasks).
    from core.training.baseline import BASELINE_FILE, BaselineClassifier

    root = Path(artifacts_dir or Paths().artifacts)
    if not (root / BASELINE_FILE).is_file():
        return None
    try:
        return BaselineClassifier.from_dict(read_json(BASELINE_FILE, root))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"artifact unreadable: {root / BASELINE_FILE} ({exc})") from None


def read_json(name: str, artifacts_dir: str | Path | None = None) -> dict:
    """A verified JSON artifact such as ``metrics.json``."""
    root = Path(artifacts_dir or Paths().artifacts)
    path = root / name
    verify(path, root)
    return json.loads(path.read_text())
