"""Settings of the re-ranking stage: a part of the API's settings (`ApiSettings.rules`), e.g.
`TRAWL_RULES__ENABLED=false`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class RulesSettings(BaseModel):
    enabled: bool = True
    # The SQLite file of the rules; None: `<data_dir>/rules.sqlite`.
    path: Path | None = None
