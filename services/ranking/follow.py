"""Model reloads for a fleet: `POST /admin/model/reload` reaches one API process; it records what it now serves
in the registry (`SERVED`), and every process polls that record and reloads the same model. A process that
starts later follows the record too, so the fleet converges on the last reload within one poll interval."""

from __future__ import annotations

import logging
import threading

from services.ranking.model import ModelError
from services.ranking.registry import ServedRecord
from services.ranking.service import RankingService

log = logging.getLogger(__name__)


class ModelFollower:
    """Polls the registry's SERVED record and reloads when it changes. A reload that fails here keeps the
    model already served (as an admin reload does) and is not retried until the record changes again."""

    def __init__(self, ranking: RankingService, every_s: float) -> None:
        self._ranking = ranking
        self._every_s = every_s
        self._seen: ServedRecord | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="model-follower", daemon=True)

    def acknowledge(self, record: ServedRecord) -> None:
        """This process applied `record` itself (it received the reload): nothing to follow."""
        self._seen = record

    def poll(self) -> bool:
        """One check; True when a reload was applied."""
        record = self._ranking.registry.served()
        if record is None or record == self._seen:
            return False
        self._seen = record
        try:
            result = self._ranking.reload(record.name)
        except ModelError as exc:
            log.error("the fleet serves %r but this process cannot: %s; keeping its model", record.name, exc)
            return False
        log.info("followed a reload to %r: now %s", record.name, result.served.model_id if result.served else None)
        return True

    def start(self) -> None:
        if self._every_s > 0:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.poll()
            except Exception:  # a registry that is briefly unreachable must not end the thread
                log.exception("model follower: could not read the registry")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
