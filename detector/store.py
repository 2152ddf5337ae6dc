"""A model store: model versions side by side, and which one is live, which runs in shadow, which was live before.

::

    STORE/
      versions/<version>/    one artifact per version (metadata.json, weights.pt, signature.json if signed)
      live -> versions/<v>   the model the service scores with and publishes alerts from
      shadow -> versions/<v> a candidate the service scores every record with beside the live one, publishing
                             nothing (optional)
      previous -> versions/<v>   the model that was live before the last promotion (rollback's target)
      history.jsonl          one line per change: when, what, from which version to which, why, by whom

The roles are relative symlinks, swapped atomically (a new link renamed over the old one), so a service that
watches ``STORE/live`` (see :func:`detector.artifact.artifact_identity`) sees a promotion or a rollback at
its next check and reloads. Versions are never deleted here.

>>> store = ModelStore("models/store")  # doctest: +SKIP
>>> store.promote(reason="operator")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Any

from flowsentinel.detector.artifact import (
    METADATA,
    SIGNATURE,
    WEIGHTS,
    TrainedModel,
    load_artifact,
    save_artifact,
)
from flowsentinel.detector.errors import ArtifactError

ROLES = ("live", "shadow", "previous")


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.versions = self.root / "versions"

    def path(self, role: str) -> Path:
        return self.root / role

    def version_of(self, role: str) -> str | None:
        """The version a role points at, or None if the role is not set."""
        link = self.path(role)
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def add(self, model: TrainedModel | str | Path, *, key: bytes | None = None) -> str:
        """Put a model (trained, or a model directory, checked first) into ``versions/``; returns its version.
        Adding a version that is already there changes nothing."""
        if not isinstance(model, TrainedModel):
            source = Path(model)
            model = load_artifact(source)
            dest = self.versions / model.version
            if not dest.exists():
                tmp = self.versions / f".{model.version}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                for name in (METADATA, WEIGHTS, SIGNATURE):
                    if (source / name).is_file():
                        shutil.copy2(source / name, tmp / name)
                tmp.rename(dest)
            return model.version
        save_artifact(model, self.versions / ".staging", key=key)
        staged = load_artifact(self.versions / ".staging")
        dest = self.versions / staged.version
        if dest.exists():
            shutil.rmtree(self.versions / ".staging")
        else:
            (self.versions / ".staging").rename(dest)
        return staged.version

    def set(self, role: str, version: str | None, *, reason: str = "", action: str = "") -> None:
        """Point ``role`` at ``version`` (None: unset it), atomically, and write it to the history."""
        if role not in ROLES:
            raise ArtifactError(f"model store role {role!r} is not one of {', '.join(ROLES)}")
        before = self.version_of(role)
        link = self.path(role)
        if version is None:
            link.unlink(missing_ok=True)
        else:
            if not (self.versions / version / METADATA).is_file():
                raise ArtifactError(f"model store {str(self.root)!r} has no version {version!r}")
            tmp = self.root / f".{role}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(Path("versions") / version)
            tmp.replace(link)
        self._history(action or f"set-{role}", role, before, version, reason)

    def promote(self, *, reason: str) -> tuple[str | None, str]:
        """shadow becomes live, live becomes previous, shadow is unset. Returns (old live, new live)."""
        candidate = self.version_of("shadow")
        if candidate is None:
            raise ArtifactError(f"model store {str(self.root)!r} has no shadow model to promote")
        old = self.version_of("live")
        if old is not None and old != candidate:
            self.set("previous", old, reason=reason, action="promote")
        self.set("live", candidate, reason=reason, action="promote")
        self.set("shadow", None, reason=reason, action="promote")
        return old, candidate

    def rollback(self, *, reason: str) -> tuple[str, str]:
        """previous becomes live again and the live one previous (a second rollback undoes the first)."""
        back, now = self.version_of("previous"), self.version_of("live")
        if back is None or now is None:
            raise ArtifactError(f"model store {str(self.root)!r} has no previous model to roll back to")
        self.set("live", back, reason=reason, action="rollback")
        self.set("previous", now, reason=reason, action="rollback")
        return now, back

    def describe(self) -> dict[str, Any]:
        versions = (
            sorted(p.name for p in self.versions.iterdir() if p.is_dir() and not p.name.startswith("."))
            if self.versions.is_dir()
            else []
        )
        return {
            "store": str(self.root),
            **{role: self.version_of(role) for role in ROLES},
            "versions": versions,
            "history": self.history()[-10:],
        }

    def history(self) -> list[dict[str, Any]]:
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def _history(self, action: str, role: str, before: str | None, after: str | None, reason: str) -> None:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": action,
            "role": role,
            "from": before,
            "to": after,
            "reason": reason,
            "by": f"{user}@{os.uname().nodename} pid {os.getpid()}",
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "history.jsonl").open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
