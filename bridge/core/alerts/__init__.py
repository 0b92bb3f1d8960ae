"""Alerts (issue 15): rules in ``alerts:`` of ``bridge.yaml``, evaluated by every engine node against
the store, notified by webhook and email, with no PHI in any notice.

- :mod:`.config` validates the section (``bridge check``);
- :mod:`.conditions` holds one check per ``when:`` and the one store read each makes;
- :mod:`.notify` sends a notice (JSON webhook; SMTP with STARTTLS);
- :mod:`.monitor` runs the rounds: state changes and notices through the store's compare-and-set
  writes, so each happens once however many nodes run, and survives a restart.

docs/operations.md#alerts describes them for operators.
"""

from .config import AlertRule, AlertsConfig, parse_alerts
from .monitor import AlertMonitor, alerts_view

__all__ = ["AlertMonitor", "AlertRule", "AlertsConfig", "alerts_view", "parse_alerts"]
