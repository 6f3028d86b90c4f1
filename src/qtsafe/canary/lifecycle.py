"""Facade over the canary commands: the public entry points, re-exported from the module that does each job.

Kept for the monitor, incident bundle and chaos tests, which import ``qtsafe.canary.lifecycle``; new code
imports from the modules themselves: ``activate`` (and its ``preflight``), ``rollback``, ``rollback_last``,
``promote``, ``status``, the shared ``steps`` and the ``dropin`` renderer. Remove when nothing imports it.

Compute, then act: each command first gathers everything it needs and refuses (nothing changed) on any
doubt; then it applies a fixed sequence of small steps. Before each step that touches the live system the
state file says what is in flight and how to undo it, so a crash at any point leaves a state that
``status`` explains and ``rollback`` repairs. A failure while applying rolls back automatically.
"""

from __future__ import annotations

from qtsafe.canary.activate import ActivationResult, activate
from qtsafe.canary.dropin import render_dropin
from qtsafe.canary.promote import PromotionResult, promote
from qtsafe.canary.rollback import RollbackResult, _manual_steps, rollback
from qtsafe.canary.rollback_last import env_backups, rollback_last
from qtsafe.canary.status import StatusResult, canary_status
from qtsafe.canary.steps import ACTIVATION_STEPS, ROLLBACK_STEPS, rollback_command

__all__ = [
    "ACTIVATION_STEPS", "ROLLBACK_STEPS", "ActivationResult", "PromotionResult", "RollbackResult", "StatusResult",
    "_manual_steps", "activate", "canary_status", "env_backups", "promote", "render_dropin", "rollback",
    "rollback_command", "rollback_last",
]
