from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.core.engines.embedded import EmbeddedEngine
from services.core.settings import CoreSettings
from tests.contract.suite import EngineContract

pytestmark = pytest.mark.contract


class TestEmbeddedEngine(EngineContract):
    @pytest.fixture
    def engine(self, embedded_settings: CoreSettings) -> Iterator[EmbeddedEngine]:
        engine = EmbeddedEngine(embedded_settings)
        yield engine
        engine.close()
