"""The optional heavy libraries: imported on demand, or one line saying which extra installs them.

The gates, scoreboard, canary lifecycle and monitor need none of them. Loading a model file (``qtsafe model ...``)
needs the ``models`` extra (torch, xgboost, lightgbm); building a dataset or reading a CSV/Parquet table needs
the ``dataset`` extra (pandas, pyarrow). A machine that installed plain ``qtsafe`` gets exit 2 and the pip
command, not an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from qtsafe.errors import QtsafeError

# The extra that installs each top-level module. xgboost-cpu provides the same `xgboost` module (never both).
EXTRA_OF = {"torch": "models", "xgboost": "models", "lightgbm": "models", "pandas": "dataset", "pyarrow": "dataset"}


class MissingDependencyError(QtsafeError):
    """Raised when a command needs an optional library (torch, xgboost, lightgbm, pandas, pyarrow) not installed."""


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the missing package, what needed it and the pip
    command. ``module`` may be one of qtsafe's own that imports an optional library at its top."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).partition(".")[0]
        extra = EXTRA_OF.get(missing)
        if extra is None:
            raise
        raise MissingDependencyError(
            f"{missing} is not installed, and {needed_for} needs it: pip install 'qtsafe[{extra}]' "
            f"(or pip install {missing}; README 'Lighter installs' has the CPU-only builds)"
        ) from exc
