from __future__ import annotations

from tests.canary.conftest import gate, root  # noqa: F401 - fixtures re-exported
from tests.monitor.conftest import activated  # noqa: F401
