"""Settings of the API deployable: the shared core plus what only the HTTP service needs."""

from __future__ import annotations

from pydantic import SecretStr

from services.core.settings import CoreSettings


class ApiSettings(CoreSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: SecretStr | None = None
    load_model: bool = True  # off only for tools that never embed a query
