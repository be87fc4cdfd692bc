"""HTTP routes, one module per resource, each a thin shell over a service built at startup.

A new resource adds its module here and one `include_router` line below; nothing else changes.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.api.routes import items, search, suggest

v1 = APIRouter(prefix="/v1")
v1.include_router(search.router)
v1.include_router(suggest.router)
v1.include_router(items.router)
# Slots for the routers other issues add (one line each, with the module imported above):
#   v1.include_router(interactions.router)      routes/interactions.py     POST /v1/events/interactions
#   v1.include_router(recommendations.router)   routes/recommendations.py  POST /v1/recommendations
# Routers that carry their own full prefix are included by app.py next to `v1`:
#   app.include_router(events.router)           routes/events.py           /v1/events/... (own prefix)
#   app.include_router(admin_rules.router)      routes/admin_rules.py      /admin/rules
#   app.include_router(admin_model.router)      routes/admin_model.py      /admin/model, /admin/model/reload
