"""Settings, stated once: defaults < config file < ``QTSAFE_*`` environment < command-line flags.

The config file is ``qtsafe.toml`` (or ``[tool.qtsafe]`` in ``pyproject.toml``) found in the working
directory, or the file named by ``--config`` / ``QTSAFE_CONFIG``. Top-level keys configure the system;
the sections ``[thresholds]``, ``[feature_sanity]``, ``[monitor]``, ``[canary]`` and ``[outcomes]`` configure
the rules.
Environment variables are ``QTSAFE_<KEY>`` for top-level keys and ``QTSAFE_<SECTION>_<KEY>`` for
section keys. An unknown key anywhere is an error with a "did you mean".

The settings dataclasses and their field metadata (default, which way loosens, meaning) are in ``settings``,
reading the file, the environment and the flags into them in ``load``, and the checks a loaded whole must
pass in ``validate``. Every name is importable from ``qtsafe.config``.
"""

from __future__ import annotations

from qtsafe.config.load import load_settings as load_settings
from qtsafe.config.settings import _LOOSER_WHEN as _LOOSER_WHEN
from qtsafe.config.settings import _SECTION_TYPES as _SECTION_TYPES
from qtsafe.config.settings import _SECTIONS as _SECTIONS
from qtsafe.config.settings import DEFAULT_NUMERIC_FIELDS as DEFAULT_NUMERIC_FIELDS
from qtsafe.config.settings import MAX_OUTCOME_HORIZON as MAX_OUTCOME_HORIZON
from qtsafe.config.settings import Canary as Canary
from qtsafe.config.settings import FeatureSanity as FeatureSanity
from qtsafe.config.settings import Monitor as Monitor
from qtsafe.config.settings import Outcomes as Outcomes
from qtsafe.config.settings import Settings as Settings
from qtsafe.config.settings import Thresholds as Thresholds
from qtsafe.config.validate import UNIT_NAME_MAX as UNIT_NAME_MAX
from qtsafe.config.validate import check_unit_name as check_unit_name
