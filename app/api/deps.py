"""What routers get injected: the stores built by the lifespan, the caller's tenant."""

from typing import Annotated

from fastapi import Depends, Request

from app.settings import Settings
from app.stores import Stores


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def current_tenant(request: Request) -> str:
    # One tenant until API keys exist; every store call is already scoped by it.
    return request.app.state.settings.default_tenant


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TenantDep = Annotated[str, Depends(current_tenant)]


def get_stores(request: Request) -> Stores:
    return request.app.state.stores


StoresDep = Annotated[Stores, Depends(get_stores)]
