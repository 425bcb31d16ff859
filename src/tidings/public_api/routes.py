"""The Public API v1, wire-compatible with Postiz clients, under ``/public/v1`` and
``/api/public/v1``.

Every endpoint authenticates with the organization's API key (``Authorization: <key>``, a
``Bearer`` prefix accepted; missing or wrong: 401 JSON) and only ever sees that organization's
rows. Routes parse, call :mod:`tidings.public_api.service` (or a domain service directly) and
shape the answer. The API has its own OpenAPI document (``<prefix>/openapi.json``, kept out of
the app API's) and a small self-contained docs page (``<prefix>/docs``).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Final

from fastapi import APIRouter, FastAPI, Path, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from tidings import __version__
from tidings.accounts.auth import ApiKeyOrg, DbSession
from tidings.channels import service as channels
from tidings.config import Settings, get_settings
from tidings.core.errors import Unprocessable
from tidings.db import request_database
from tidings.media import service as media_service
from tidings.media.deps import MediaEnvDep, UploadApiKeyOrg
from tidings.media.schemas import PublicMediaRead
from tidings.posts import service as posts
from tidings.posts.schemas import (
    CreatedPost,
    DeletedOut,
    GroupOut,
    PostOut,
    ReleaseIdRequest,
    SettingsRequest,
    StatusRequest,
)
from tidings.public_api import posts_extra, service
from tidings.public_api.ratelimit import count_post_creation
from tidings.public_api.schemas import (
    ID_PATTERN,
    AnalyticsOut,
    ChannelDeletedOut,
    ConnectedOut,
    CreatePostsIn,
    CustomerRef,
    ErrorOut,
    IntegrationOut,
    IntegrationSettingsOut,
    MissingItem,
    MissingOut,
    NotificationsPage,
    PostsListOut,
    SlotOut,
    SocialUrlOut,
    TriggerIn,
    TriggerOut,
    UploadFromUrlIn,
    bad_json_value,
    check_date,
)

PREFIXES: Final = ("/public/v1", "/api/public/v1")

_DESCRIPTIONS: Final = {
    400: "The request breaks a rule (the message names the field or channel and the rule)",
    401: "Missing or wrong API key",
    404: "No such row in this organization",
    409: "Conflicts with the current state (e.g. a post being published right now)",
    413: "The file is larger than allowed for its type",
    415: "Not an accepted image or video",
    422: "A field is missing or malformed (``field`` names it, e.g. posts.0.value.1.content)",
    429: "Rate limited (see Retry-After)",
    502: "The social platform failed",
    503: "The media storage is unavailable (try again later)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (401 and 422 always)."""
    wanted = sorted({401, 422, *codes})
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in wanted}


def _operation_id(route: APIRoute) -> str:
    return route.name


v1 = APIRouter(tags=["Public API"], generate_unique_id_function=_operation_id)

ChannelId = Annotated[str, Path(pattern=ID_PATTERN, description="A channel (integration) id")]
# Parameters named as in the path templates (Postiz's camelCase).
IntegrationId = Annotated[str, Path(pattern=ID_PATTERN, description="A channel id")]
PostId = Annotated[str, Path(pattern=ID_PATTERN, description="A post id")]
GroupId = Annotated[
    str,
    Path(pattern=r"^[^\x00-\x1f\x7f]{1,200}$", description="The group shared by a submission"),
]
ProviderName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_.\-]{1,100}$", description="A provider identifier, e.g. x")
]
Days = Annotated[int, Query(ge=1, le=3650, description="Days to look back")]


def _storable(value: BaseModel) -> None:
    """422 naming the field when a body holds text or numbers PostgreSQL cannot store."""
    problem = bad_json_value(value.model_dump(mode="python", by_alias=True))
    if problem is not None:
        field, reason = problem
        raise Unprocessable(f"{field} {reason}", field=field)


def _date(value: datetime, field: str) -> datetime:
    try:
        checked = check_date(value, field)
    except ValueError as exc:
        raise Unprocessable(str(exc), field=field) from exc
    assert checked is not None
    return checked


def _settings(request: Request) -> Settings:
    settings: Settings | None = getattr(request.app.state, "settings", None)
    return settings or get_settings()


# ---- channels ------------------------------------------------------------------------------


@v1.get("/is-connected", response_model=ConnectedOut, responses=errors())
async def is_connected(caller: ApiKeyOrg) -> ConnectedOut:
    """Whether the API key is valid (it is, if this answers 200)."""
    return ConnectedOut(connected=True)


@v1.get("/integrations", response_model=list[IntegrationOut], responses=errors())
async def list_integrations(
    caller: ApiKeyOrg,
    db: DbSession,
    group: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="Only the channels of this customer")
    ] = None,
) -> list[IntegrationOut]:
    """The organization's channels."""
    return await service.list_integrations(db, caller.organization_id, customer_id=group)


@v1.get("/integration-settings/{id}", response_model=IntegrationSettingsOut, responses=errors(404))
async def integration_settings(
    id: ChannelId, caller: ApiKeyOrg, db: DbSession
) -> IntegrationSettingsOut:
    """The channel's rules, max length, JSON schema of its post settings and its tools."""
    return await service.integration_settings(db, caller.organization_id, id)


@v1.post(
    "/integration-trigger/{id}",
    response_model=TriggerOut,
    responses=errors(400, 404, 409, 429, 502),
)
async def integration_trigger(
    id: ChannelId, body: TriggerIn, caller: ApiKeyOrg, db: DbSession
) -> TriggerOut:
    """Run a provider tool of the channel (e.g. list flairs, playlists, pages)."""
    _storable(body)
    result = await service.trigger_tool(db, caller.organization_id, id, body.method_name, body.data)
    return TriggerOut(output=result)


@v1.get("/find-slot/{integrationId}", response_model=SlotOut, responses=errors(404, 409))
async def find_slot(
    integrationId: IntegrationId,
    caller: ApiKeyOrg,
    db: DbSession,
) -> SlotOut:
    """The channel's next free posting time (its posting times, skipping taken slots)."""
    return SlotOut(date=await service.find_slot(db, caller.organization_id, integrationId))


@v1.get("/groups", response_model=list[CustomerRef], responses=errors())
async def list_groups(caller: ApiKeyOrg, db: DbSession) -> list[CustomerRef]:
    """The organization's customers."""
    return await service.list_groups(db, caller.organization_id)


@v1.delete("/integrations/{id}", response_model=ChannelDeletedOut, responses=errors(404))
async def delete_integration(id: ChannelId, caller: ApiKeyOrg, db: DbSession) -> ChannelDeletedOut:
    """Delete a channel (softly: reconnecting the account brings it back)."""
    await channels.delete_channel(db, caller.organization_id, id)
    return ChannelDeletedOut(id=id)


@v1.get(
    "/social/{provider}",
    response_model=SocialUrlOut,
    responses=errors(400, 404, 429, 502),
    openapi_extra={
        "parameters": [
            {
                "name": "instance_url",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "maxLength": 2000},
                "description": "Instance inputs of the provider, e.g. Mastodon's server URL",
            },
            {
                "name": "customer",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
                "description": "Assign the new channel to this customer (by name)",
            },
        ]
    },
)
async def social_connect_url(
    provider: ProviderName, request: Request, caller: ApiKeyOrg, db: DbSession
) -> SocialUrlOut:
    """The URL that starts connecting a channel of ``provider`` (OAuth providers)."""
    query = dict(request.query_params)
    problem = bad_json_value(query)
    for key, value in query.items():
        if problem is None and any(ord(c) < 32 for c in key + value):
            problem = (key, "must not contain control characters")
    if problem is not None:
        raise Unprocessable(f"{problem[0]} {problem[1]}", field=problem[0])
    return SocialUrlOut(url=await service.connect_url(db, caller.organization_id, provider, query))


# ---- media ---------------------------------------------------------------------------------

_UPLOAD_BODY: Final = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                },
            }
        }
    },
}


@v1.post(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=PublicMediaRead,
    responses=errors(400, 413, 415, 503),
    openapi_extra={"requestBody": _UPLOAD_BODY},
)
async def upload(request: Request, caller: UploadApiKeyOrg, env: MediaEnvDep) -> PublicMediaRead:
    """Store an image or video (multipart field ``file``) in the organization's library; its
    ``path`` is a public URL to use in posts."""
    # No request session: none may stay checked out while the body streams.
    media = await media_service.upload_stream(
        request_database(request),
        caller.organization_id,
        request,
        media_service.IMAGES_AND_VIDEOS,
        env=env,
    )
    return PublicMediaRead.of(media)


@v1.post(
    "/upload-from-url",
    status_code=status.HTTP_201_CREATED,
    response_model=PublicMediaRead,
    responses=errors(400, 413, 415, 503),
)
async def upload_from_url(
    body: UploadFromUrlIn, request: Request, caller: UploadApiKeyOrg, env: MediaEnvDep
) -> PublicMediaRead:
    """Fetch an image or video from a public https URL into the organization's library."""
    _storable(body)
    # No request session: none may stay checked out while the file downloads.
    media = await media_service.upload_from_url(
        request_database(request),
        caller.organization_id,
        body.url,
        allowed_kinds=media_service.IMAGES_AND_VIDEOS,
        env=env,
    )
    return PublicMediaRead.of(media)


# ---- posts ---------------------------------------------------------------------------------


@v1.get("/posts", response_model=PostsListOut, responses=errors(400))
async def list_posts(
    caller: ApiKeyOrg,
    db: DbSession,
    start_date: Annotated[datetime, Query(alias="startDate", description="ISO 8601, inclusive")],
    end_date: Annotated[datetime, Query(alias="endDate", description="ISO 8601, exclusive")],
    customer: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="Only channels of this customer")
    ] = None,
) -> PostsListOut:
    """Posts whose publish date is in the range, recurring posts expanded into occurrences."""
    listed = await service.list_posts(
        db,
        caller.organization_id,
        start=_date(start_date, "startDate"),
        end=_date(end_date, "endDate"),
        customer_id=customer,
    )
    return PostsListOut(posts=listed.posts)


@v1.post(
    "/posts",
    status_code=status.HTTP_201_CREATED,
    response_model=list[CreatedPost],
    responses=errors(400, 404, 409, 429),
)
async def create_posts(
    body: CreatePostsIn, request: Request, caller: ApiKeyOrg, db: DbSession
) -> list[CreatedPost]:
    """Create posts on one or more channels (a thread each), as drafts, scheduled or now.

    Checked per channel before anything is stored; limited per organization per hour.
    """
    _storable(body)
    await count_post_creation(request_database(request), _settings(request), caller.organization_id)
    return await service.create_posts(db, caller.organization_id, body)


@v1.delete("/posts/group/{group}", response_model=DeletedOut, responses=errors(404))
async def delete_group(group: GroupId, caller: ApiKeyOrg, db: DbSession) -> DeletedOut:
    """Delete every post of a group (all channels, whole threads)."""
    return await posts.delete_group(db, caller.organization_id, group)


@v1.delete("/posts/{id}", response_model=DeletedOut, responses=errors(404))
async def delete_post(id: PostId, caller: ApiKeyOrg, db: DbSession) -> DeletedOut:
    """Delete a post with its whole group (all channels, the thread)."""
    return await posts.delete_post(db, caller.organization_id, id)


@v1.put("/posts/{id}/settings", response_model=PostOut, responses=errors(400, 404, 409))
async def change_settings(
    id: PostId, body: SettingsRequest, caller: ApiKeyOrg, db: DbSession
) -> PostOut:
    """Merge provider settings into a queued or draft post whose date has not passed."""
    _storable(body)
    result: PostOut = await service.change_settings(db, caller.organization_id, id, body.settings)
    return result


@v1.put("/posts/{id}/status", response_model=GroupOut, responses=errors(400, 404, 409))
async def change_status(
    id: PostId, body: StatusRequest, caller: ApiKeyOrg, db: DbSession
) -> GroupOut:
    """Move a post (its group) between draft and schedule; scheduling checks the rules."""
    result: GroupOut = await service.change_status(db, caller.organization_id, id, body.status)
    return result


@v1.get(
    "/posts/{id}/missing", response_model=list[MissingItem], responses=errors(400, 404, 429, 502)
)
async def missing_content(id: PostId, caller: ApiKeyOrg, db: DbSession) -> list[MissingItem]:
    """Platform content that may be this post, when it was published without a platform id."""
    return await posts_extra.missing_content(db, caller.organization_id, id)


@v1.put("/posts/{id}/release-id", response_model=PostOut, responses=errors(400, 404))
async def set_release_id(
    id: PostId, body: ReleaseIdRequest, caller: ApiKeyOrg, db: DbSession
) -> PostOut:
    """Connect a post to its platform id."""
    _storable(body)
    return await posts.set_release_id(db, caller.organization_id, id, body.release_id)


# ---- analytics and notifications -----------------------------------------------------------


@v1.get(
    "/analytics/post/{postId}",
    response_model=list[AnalyticsOut] | MissingOut,
    responses=errors(404),
)
async def post_analytics(
    postId: PostId,
    caller: ApiKeyOrg,
    db: DbSession,
    date: Days = 7,
) -> list[AnalyticsOut] | MissingOut:
    """A post's statistics, or ``{missing: true}`` when it has no platform id."""
    return await posts_extra.post_analytics(db, caller.organization_id, postId, date)


@v1.get("/analytics/{integrationId}", response_model=list[AnalyticsOut], responses=errors(404))
async def channel_analytics(
    integrationId: IntegrationId,
    caller: ApiKeyOrg,
    db: DbSession,
    date: Days = 7,
) -> list[AnalyticsOut]:
    """A channel's statistics (``[]`` where the platform offers none)."""
    return await posts_extra.channel_analytics(db, caller.organization_id, integrationId, date)


@v1.get("/notifications", response_model=NotificationsPage, responses=errors())
async def notifications(
    caller: ApiKeyOrg,
    db: DbSession,
    page: Annotated[int, Query(ge=0, le=100_000, description="Page number, from 0")] = 0,
) -> NotificationsPage:
    """The organization's notifications, newest first, 100 a page."""
    return await service.notifications_page(db, caller.organization_id, page)


# ---- the OpenAPI document and docs page ----------------------------------------------------

API_DESCRIPTION: Final = """\
The Tidings Public API, wire-compatible with Postiz's Public API v1: clients written for
Postiz (its CLI, SDKs, automation nodes, agents) work by pointing their base URL here.

Authenticate with the organization's API key in the `Authorization` header (the raw key; a
`Bearer ` prefix is accepted too). Errors are JSON: `{"error", "message", "field"}`.
`POST /posts` is limited per organization per hour (429 with `Retry-After`).
"""


@lru_cache(maxsize=len(PREFIXES))
def public_openapi(prefix: str) -> dict[str, Any]:
    """The OpenAPI document of the Public API as served under ``prefix``."""
    holder = FastAPI(
        title="Tidings Public API",
        version=f"v1 ({__version__})",
        description=API_DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    holder.include_router(v1, prefix=prefix)
    document = holder.openapi()
    document.setdefault("components", {})["securitySchemes"] = {
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The organization's API key (Settings > Public API)",
        }
    }
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}]
    return document


_DOCS_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tidings Public API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}
.op{border:1px solid #ddd;border-radius:6px;margin:.8rem 0;padding:.6rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;font-family:monospace}
.GET{color:#0a6}.POST{color:#06c}.PUT{color:#a60}.DELETE{color:#c03}
code,pre{font-family:ui-monospace,monospace;font-size:13px;background:#f5f5f5}
pre{padding:.5rem;overflow:auto}details summary{cursor:pointer;color:#555}
</style></head><body>
<h1>Tidings Public API</h1>
<p>Machine-readable document: <a href="openapi.json">openapi.json</a>.
Authenticate with <code>Authorization: &lt;your API key&gt;</code>.</p>
<div id="ops">Loading…</div>
<script>
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) =>
  ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
const name = (ref) => (ref || "").split("/").pop();
function schemaOf(s) {
  if (!s) return "";
  if (s.$ref) return name(s.$ref);
  if (s.type === "array") return schemaOf(s.items) + "[]";
  if (s.anyOf) return s.anyOf.map(schemaOf).join(" | ");
  return s.type || "object";
}
fetch("openapi.json").then((r) => r.json()).then((doc) => {
  let html = "";
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map((p) =>
        `<li><code>${esc(p.name)}</code> (${esc(p.in)}${p.required ? ", required" : ""})` +
        ` ${esc(p.description)}</li>`).join("");
      const body = op.requestBody ? Object.entries(op.requestBody.content).map(([t, c]) =>
        `<li>body <code>${esc(t)}</code>: ${esc(schemaOf(c.schema))}</li>`).join("") : "";
      const answers = Object.entries(op.responses).map(([code, r]) => {
        const c = r.content && r.content["application/json"];
        return `<li><b>${esc(code)}</b> ${esc(r.description)}` +
          (c ? `: <code>${esc(schemaOf(c.schema))}</code>` : "") + "</li>";
      }).join("");
      html += `<div class="op"><span class="m ${method.toUpperCase()}">` +
        `${method.toUpperCase()}</span> <code>${esc(path)}</code>` +
        `<div>${esc(op.description || op.summary)}</div>` +
        `<ul>${params}${body}</ul><details><summary>answers</summary><ul>${answers}` +
        `</ul></details></div>`;
    }
  }
  html += "<h2>Schemas</h2>";
  for (const [n, s] of Object.entries((doc.components || {}).schemas || {})) {
    html += `<details><summary><code>${esc(n)}</code></summary>` +
      `<pre>${esc(JSON.stringify(s, null, 2))}</pre></details>`;
  }
  document.getElementById("ops").innerHTML = html;
}).catch((e) => { document.getElementById("ops").textContent = "Could not load: " + e; });
</script></body></html>
"""


def _document_routes(prefix: str) -> APIRouter:
    docs = APIRouter(prefix=prefix, include_in_schema=False)

    @docs.get("/openapi.json")
    async def openapi_document() -> JSONResponse:
        """The Public API's OpenAPI document."""
        return JSONResponse(public_openapi(prefix))

    @docs.get("/docs")
    async def docs_page() -> HTMLResponse:
        """A page listing every endpoint, rendered from the OpenAPI document."""
        return HTMLResponse(_DOCS_PAGE)

    return docs


router = APIRouter()
for _prefix in PREFIXES:
    router.include_router(_document_routes(_prefix))
    # Kept out of the app API's own OpenAPI document: the Public API has its own.
    router.include_router(v1, prefix=_prefix, include_in_schema=False)

__all__ = ["PREFIXES", "public_openapi", "router", "v1"]
