from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.core.engines.opensearch import OpenSearchEngine
from services.core.settings import CoreSettings, OpenSearchSettings
from tests.contract.suite import EngineContract

pytestmark = [pytest.mark.contract, pytest.mark.opensearch]


class TestOpenSearchEngine(EngineContract):
    @pytest.fixture
    def engine(self, opensearch_settings: OpenSearchSettings) -> Iterator[OpenSearchEngine]:
        engine = OpenSearchEngine(CoreSettings(engine="opensearch", opensearch=opensearch_settings))
        yield engine
        engine.close()
