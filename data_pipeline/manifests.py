"""Manifest files: written atomically, so a killed build never leaves half a manifest."""
from typing import Any

from data_pipeline import atomic_files


def write_json_atomically(path: str, obj: Any) -> None:
  atomic_files.write_json(path, obj, indent=1)
