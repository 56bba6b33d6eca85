"""Attach figures to their studies as Optuna artifacts so that optuna-dashboard shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

ARTIFACT_DIR_NAME = "artifacts"
_ATTR_PREFIX = "artifacts:"  # the key prefix optuna.artifacts.upload_artifact writes


def artifact_store(out: Path) -> FileSystemArtifactStore:
    """The file-system artifact store under <out>/artifacts (created if missing)."""
    base = out / ARTIFACT_DIR_NAME
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base_path=base)


def attach_figures(study: optuna.Study, files: Sequence[Path], store: FileSystemArtifactStore) -> int:
    """Upload each file to `study`, first retiring earlier uploads of the same name from a previous analysis.

    Retiring writes a null meta under the old key, as optuna-dashboard's own delete does, so a
    rerun replaces figures instead of piling up copies.
    """
    names = {path.name for path in files}
    storage = study._storage
    study_id = study._study_id
    for key, value in storage.get_study_system_attrs(study_id).items():
        if not key.startswith(_ATTR_PREFIX) or not isinstance(value, str):
            continue
        meta = json.loads(value)
        if isinstance(meta, Mapping) and meta.get("filename") in names:
            storage.set_study_system_attr(study_id, key, json.dumps(None))
            try:
                store.remove(key[len(_ATTR_PREFIX):])
            except (ArtifactNotFound, OSError):
                pass  # the old upload went to another output folder
    for path in files:
        upload_artifact(study_or_trial=study, file_path=str(path), artifact_store=store)
    return len(files)
