"""Manifest files: written atomically, so a killed build never leaves half a manifest."""
import json
import os


def write_json_atomically(path, obj):
  tmp = path + ".partial"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)
