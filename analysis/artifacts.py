"""Attach figures to their studies as Optuna artifacts so that optuna-dashboard shows them."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Mapping, Sequence

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

ARTIFACT_DIR_NAME = "artifacts"
_ATTR_PREFIX = "artifacts:"  # the key prefix optuna.artifacts.upload_artifact writes


def artifact_store(out: Path) -> FileSystemArtifactStore:
    """The file-system artifact store under <out>/artifacts (created if missing)."""
    base = out / ARTIFACT_DIR_NAME
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(base_path=base)


def attach_figures(study: optuna.Study, files: Sequence[Path], store: FileSystemArtifactStore) -> int:
    """Upload each file to `study`; a file whose name an earlier analysis attached replaces that artifact in place.

    Replacing keeps the artifact id and rewrites its content in `store`, so reruns neither pile up
    copies nor leave null metas behind (which optuna.artifacts.get_all_artifact_meta cannot read).
    """
    storage = study._storage
    study_id = study._study_id
    existing: dict[str, str] = {}
    for key, value in storage.get_study_system_attrs(study_id).items():
        if key.startswith(_ATTR_PREFIX) and isinstance(value, str):
            meta = json.loads(value)
            if isinstance(meta, Mapping) and "filename" in meta:
                existing[meta["filename"]] = key[len(_ATTR_PREFIX):]
    for path in files:
        artifact_id = existing.get(path.name)
        if artifact_id is None:
            upload_artifact(study_or_trial=study, file_path=str(path), artifact_store=store)
            continue
        mimetype, encoding = mimetypes.guess_type(path.name)
        meta = {"artifact_id": artifact_id, "filename": path.name,
                "mimetype": mimetype or "application/octet-stream", "encoding": encoding}
        with path.open("rb") as handle:
            store.write(artifact_id, handle)
        storage.set_study_system_attr(study_id, _ATTR_PREFIX + artifact_id, json.dumps(meta))
    return len(files)
