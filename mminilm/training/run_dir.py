"""One run per output directory: an exclusive lock, one configuration, nothing replaced unasked.

A run directory holds exactly one training run. Three mechanisms keep it that way:
- an exclusive `flock` on `OUT/.run.lock` for the life of the process (the kernel releases it
  when the process dies, even by SIGKILL, so a stale lock cannot exist; the file names the
  holder's pid and host for the error message);
- `OUT/config.json` is the run's configuration: resuming compares every field that changes the
  result with it and refuses a difference, listing the fields (a field that is safe to change,
  e.g. `steps` to extend a run, can be allowed explicitly with --allow-config-change). A field
  the saved config lacks (an option added since) counts as its default: a new option's default
  must reproduce what runs did before it existed;
- an existing run (config, log, checkpoints or model) is never replaced without --overwrite.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

LOCK_FILE = ".run.lock"
RUN_ARTIFACTS = ("config.json", "config.yaml", "train_log.jsonl", "train.log", "summary.json", "checkpoints", "model")
# Fields that never change what a run computes: where it logs, how often, on which device it resumes.
NEUTRAL_FIELDS = frozenset({"output_dir", "resume", "overwrite", "allow_config_change", "log_every", "save_every",
                            "tensorboard", "cache_dir", "device",
                            "probe_every", "probe_sentences", "probe_data"})  # they observe, never change, the run


class RunDirectoryError(ValueError):
    """The output directory cannot take this run (in use, another configuration, or would be overwritten)."""


class RunLock:
    """An exclusive lock on a run directory, held until `release()` or process exit."""

    def __init__(self, output: Path) -> None:
        output.mkdir(parents=True, exist_ok=True)
        self.path = output / LOCK_FILE
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise RunDirectoryError(f"{output} is in use by {holder}: one run per output directory; wait for it, "
                                    f"or choose another --output-dir") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.handle.flush()

    def release(self) -> None:
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def config_differences(saved: dict[str, Any], requested: dict[str, Any], allowed: set[str],
                       defaults: dict[str, Any] | None = None) -> list[str]:
    """'field: saved -> requested' for every result-changing field that differs; a field missing
    from `saved` (added to the configuration after the run was saved) has its value in `defaults`."""
    saved = {**(defaults or {}), **saved}
    differences = []
    for name in sorted(set(saved) | set(requested)):
        if name in NEUTRAL_FIELDS or name in allowed:
            continue
        if saved.get(name) != requested.get(name):
            differences.append(f"{name}: {saved.get(name)!r} -> {requested.get(name)!r}")
    return differences


def existing_artifacts(output: Path) -> list[str]:
    return [name for name in RUN_ARTIFACTS if (output / name).exists()]


def prepare_run_dir(output: Path, requested: dict[str, Any], resume: bool, overwrite: bool,
                    allowed_changes: set[str], defaults: dict[str, Any] | None = None) -> None:
    """Refuse to mix runs; with --overwrite, remove the previous run's artifacts first.

    Called by the main process while it holds the lock.
    """
    found = existing_artifacts(output)
    if not found:
        return
    if overwrite:
        for name in found:
            path = output / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    saved_path = output / "config.json"
    if not resume:
        raise RunDirectoryError(f"{output} already holds a run ({', '.join(found)}): pass --resume to continue it, "
                                f"--overwrite to replace it, or choose another --output-dir")
    if not saved_path.is_file():
        raise RunDirectoryError(f"{output} holds {', '.join(found)} but no config.json, so it cannot be resumed safely: "
                                f"pass --overwrite to replace it, or choose another --output-dir")
    try:
        saved = json.loads(saved_path.read_text())
    except json.JSONDecodeError as error:
        raise RunDirectoryError(f"{saved_path} is not valid JSON ({error}); pass --overwrite to replace the run") from None
    differences = config_differences(saved, requested, allowed_changes, defaults)
    if differences:
        raise RunDirectoryError(
            f"{output} was trained with another configuration ({'; '.join(differences)}). A run dir holds one "
            f"configuration: choose another --output-dir, or, for a field that is safe to change (e.g. steps, to "
            f"extend a run), pass --allow-config-change FIELD")
