"""Finding the project's data files (calibration/, launch/) from any working directory."""

from __future__ import annotations

from pathlib import Path

from perception.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_data_path(path: str | Path) -> Path:
    """``path`` as given if it exists, else relative to the project root (where
    ``calibration/`` and ``launch/`` live); a clear error when it is in neither place."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        if not p.exists():
            raise UserError(f"{p} does not exist")
        return p.resolve()
    candidate = PROJECT_ROOT / p
    if candidate.exists():
        return candidate
    raise UserError(f"{p} does not exist (looked in {Path.cwd()} and {PROJECT_ROOT})")
