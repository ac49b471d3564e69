"""Import the harness from src/ when the package is not installed (before `pip install -e .`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("aiswarm_loadtest") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))
