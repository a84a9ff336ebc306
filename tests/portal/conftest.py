"""Shared by the accounts and imaging tests: puts this folder and imaging/ on sys.path so the helper module
``ct_factory`` (synthetic CT series) imports under any pytest import mode."""
import sys
from pathlib import Path

for folder in (Path(__file__).parent, Path(__file__).parent / "imaging"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
