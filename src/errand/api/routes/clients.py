"""Admin routes for clients and their API keys: create, list, add a key, revoke, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from errand.access.clients import Client, IssuedKey, LimitOverrides, RateLimit
from errand.api.admin_schemas import (
    ClientCreate,
    ClientCreated,
    ClientList,
    ClientPublic,
    KeyCreated,
)
from errand.api.deps import Services, services
from errand.api.gate import Gate
from errand.api.http.body import read_json_object, validate_body
from errand.api.http.problems import ProblemRoute
from errand.api.http.responses import json_response
from errand.api.routes._openapi import json_body
from errand.api.routes.admin import require_admin
from errand.clock import iso_ms
from errand.queue.schedules import delete_client_schedules

router = APIRouter(
    prefix="/admin/clients",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    route_class=ProblemRoute,
)


def client_view(gate: Gate, client: Client) -> dict[str, Any]:
    """A client as admins see it: its limits in effect, its key ids, never a key."""
    caller = gate.caller_for(client.client_id, client.overrides)
    return {
        "clientId": client.client_id,
        "name": client.name,
        "createdAt": iso_ms(client.created_ms),
        "rateLimit": {"perSecond": _number(caller.rate.per_second), "burst": caller.rate.burst},
        "notifyPerUserPerHour": caller.notify_per_user_per_hour,
        "keys": [{"keyId": k.key_id, "createdAt": iso_ms(k.created_ms)} for k in client.keys],
    }


def _number(value: float) -> float | int:
    """50.0 reads back as 50, as it was sent."""
    return int(value) if value.is_integer() else value


def _key_view(issued: IssuedKey) -> dict[str, Any]:
    return {
        "keyId": issued.key_id,
        "apiKey": issued.api_key,
        "createdAt": iso_ms(issued.created_ms),
    }


@router.post(
    "",
    status_code=201,
    response_model=ClientCreated,
    openapi_extra=json_body(ClientCreate),
)
async def create_client(request: Request, svc: Services = Depends(services)) -> Response:
    """A new client and its first API key, shown in this answer only."""
    body = validate_body(ClientCreate, await read_json_object(request, svc.settings.max_body_bytes))
    rate = body.rateLimit
    overrides = LimitOverrides(
        None if rate is None else RateLimit(rate.perSecond, rate.burst),
        body.notifyPerUserPerHour,
    )
    client, issued = await svc.gate.store.create(body.name, overrides)
    view = client_view(svc.gate, client)
    del view["keys"]
    return json_response({**view, "keyId": issued.key_id, "apiKey": issued.api_key}, 201)


@router.get("", response_model=ClientList)
async def list_clients(svc: Services = Depends(services)) -> Response:
    """Every client with its key ids (never a key)."""
    found = await svc.gate.store.all()
    return json_response({"items": [client_view(svc.gate, c) for c in found]})


@router.get("/{client_id}", response_model=ClientPublic)
async def get_client(client_id: str, svc: Services = Depends(services)) -> Response:
    """One client with its key ids (never a key)."""
    return json_response(client_view(svc.gate, await svc.gate.store.get(client_id)))


@router.post(
    "/{client_id}/keys",
    status_code=201,
    response_model=KeyCreated,
)
async def add_key(client_id: str, svc: Services = Depends(services)) -> Response:
    """Another key for the client (rotation: add, switch, revoke the old one)."""
    return json_response(_key_view(await svc.gate.store.add_key(client_id)), 201)


@router.delete("/{client_id}/keys/{key_id}", status_code=204)
async def revoke_key(client_id: str, key_id: str, svc: Services = Depends(services)) -> Response:
    """Revoke one key; every API process refuses it within 2 s."""
    await svc.gate.store.revoke_key(client_id, key_id)
    return Response(status_code=204)


@router.delete("/{client_id}", status_code=204)
async def delete_client(client_id: str, svc: Services = Depends(services)) -> Response:
    """Delete the client, revoke all its keys and delete its schedules; its jobs run to the
    end. The client goes first, so a 404 leaves everything as it was."""
    await svc.gate.store.delete(client_id)
    await delete_client_schedules(svc.queues, client_id)
    return Response(status_code=204)
