"""optuna-dashboard over a bioscale storage, on the loopback interface unless told otherwise."""

from __future__ import annotations

import sys

from bioscale.errors import UsageError

from bioscale.storages import open_storage, parse_storage


def dashboard_command(storage: str, artifact_dir: str | None = None) -> list[str]:
    """The `bioscale dashboard` command line for `storage`, runnable as printed (full path when not on PATH)."""
    import shutil
    from pathlib import Path

    script = Path(sys.executable).with_name("bioscale")
    on_path = shutil.which("bioscale")
    program = "bioscale" if not script.is_file() or (on_path and Path(on_path).resolve() == script.resolve()) else str(script)
    return [program, "dashboard", "--storage", storage] + (["--artifact-dir", artifact_dir] if artifact_dir else [])


def serve_dashboard(storage: str | None, host: str = "127.0.0.1", port: int = 8080,
                    artifact_dir: str | None = None) -> None:
    """Serve optuna-dashboard for an existing storage until interrupted (blocks)."""
    import socket

    from optuna_dashboard import run_server

    if not 0 < port < 65536:
        raise UsageError(f"port must lie in 1..65535 (got {port})")
    spec = parse_storage(storage, must_exist=True)
    storage_obj = open_storage(spec, heartbeat=False, create=False)
    artifact_store = None
    if artifact_dir is not None:
        from optuna.artifacts import FileSystemArtifactStore

        artifact_store = FileSystemArtifactStore(artifact_dir)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # a clear message for a busy port
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    print(f"optuna-dashboard for {spec.display()} at http://{host}:{port}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    run_server(storage_obj, host=host, port=port, artifact_store=artifact_store)
