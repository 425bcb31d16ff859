"""The accounts API: registration, sign-in (password and OAuth), sessions, password reset,
profile, and the global super admin's tools."""

from __future__ import annotations

import logging
import re
from typing import Annotated
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from tidings.accounts import limits, oauth, service
from tidings.accounts.auth import (
    ORG_COOKIE,
    ORG_HEADER,
    CurrentSession,
    CurrentUser,
    DbSession,
    SuperAdmin,
    bearer_token,
    clear_auth_cookies,
    client_agent,
    client_ip,
    secure_cookies,
    set_org_cookie,
    set_session_cookie,
)
from tidings.accounts.mailer import send_mail
from tidings.accounts.models import User
from tidings.accounts.schemas import (
    AdminOrgList,
    AdminOrgOut,
    AuthOut,
    ImpersonateIn,
    ImpersonatorOut,
    LoginIn,
    MembershipOut,
    MeOut,
    MeUpdateIn,
    OAuthProviderOut,
    PasswordChangeIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RegisterIn,
    UserOut,
)
from tidings.accounts.sessions import resolve_session, revoke_session
from tidings.config import Settings
from tidings.core.errors import TidingsError
from tidings.core.ids import new_token
from tidings.db import Database

logger = logging.getLogger("tidings.accounts")

router = APIRouter(prefix="/api", tags=["accounts"])

ProviderName = Annotated[str, Path(max_length=40, pattern=r"^[a-z0-9_-]+$")]
_BROWSER_SECRET = re.compile(r"[A-Za-z0-9_-]{20,100}")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _signed_in(
    request: Request,
    response: Response,
    signed: service.SignIn,
    impersonator: User | None = None,
) -> AuthOut:
    set_session_cookie(request, response, signed.token, signed.session.expires_at)
    if signed.session.organization_id:
        # A chosen organization left in the browser by another account must not stick.
        set_org_cookie(request, response, signed.session.organization_id)
    else:
        response.delete_cookie(ORG_COOKIE, path="/")
    return AuthOut(
        token=signed.token,
        expires_at=signed.session.expires_at,
        user=UserOut.model_validate(signed.user),
        organization_id=signed.session.organization_id,
        impersonator=ImpersonatorOut(id=impersonator.id, email=impersonator.email)
        if impersonator
        else None,
    )


@router.post("/auth/register", status_code=status.HTTP_201_CREATED)
async def register(
    body: RegisterIn, request: Request, response: Response, db: DbSession
) -> AuthOut:
    """Create an account and its organization (or join the organization of ``invite``)."""
    ip = client_ip(request)
    await limits.check(_database(request), "registration", "ip", ip, limits.REGISTER_PER_IP)
    user, org_id = await service.register(
        db,
        _settings(request),
        email=body.email,
        password=body.password,
        name=body.name,
        organization_name=body.organization_name,
        invite_token=body.invite,
    )
    signed = await service.open_session(
        db, user, ip=ip, agent=client_agent(request), organization_id=org_id
    )
    return _signed_in(request, response, signed)


@router.post("/auth/login")
async def login(body: LoginIn, request: Request, response: Response, db: DbSession) -> AuthOut:
    """Sign in with email and password."""
    ip = client_ip(request)
    database = _database(request)
    # Counted before the password is checked, so failures count too.
    await limits.check(database, "sign-in", "ip", ip, limits.LOGIN_PER_IP)
    await limits.check(
        database, "sign-in", "account", body.email.strip().lower(), limits.LOGIN_PER_ACCOUNT
    )
    user = await service.authenticate(db, body.email, body.password)
    signed = await service.open_session(db, user, ip=ip, agent=client_agent(request))
    return _signed_in(request, response, signed)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, db: DbSession) -> Response:
    """End the current session (and forget its cookies); harmless when already signed out."""
    token = bearer_token(request)
    active = await resolve_session(db, token) if token else None
    if active is not None:
        await revoke_session(db, active.session.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_auth_cookies(request, response)
    return response


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeIn, request: Request, active: CurrentSession, db: DbSession
) -> None:
    """Change the password; every other session of the account ends."""
    await limits.check(
        _database(request),
        "password change",
        "account",
        active.user.id,
        limits.PASSWORD_CHANGE_PER_ACCOUNT,
    )
    await service.change_password(
        db,
        active.user,
        current=body.current_password,
        new=body.new_password,
        keep_session_id=active.session.id,
    )


@router.post("/auth/password-reset", status_code=status.HTTP_202_ACCEPTED)
async def request_password_reset(
    body: PasswordResetIn, request: Request, db: DbSession, background: BackgroundTasks
) -> dict[str, str]:
    """Email a reset link if an account has this email (the answer is the same either way,
    and as fast: the mail goes out after the answer)."""
    database = _database(request)
    await limits.check(database, "password reset", "ip", client_ip(request), limits.RESET_PER_IP)
    await limits.check(database, "password reset", "account", body.email, limits.RESET_PER_ACCOUNT)
    mail = await service.request_password_reset(db, _settings(request), body.email)
    if mail is not None:
        background.add_task(send_mail, mail, _settings(request))
    return {"message": "if an account uses this email, a reset link is on its way"}


@router.post("/auth/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(
    body: PasswordResetConfirmIn, request: Request, db: DbSession
) -> None:
    """Choose a new password with a reset link's token; every session of the account ends."""
    await limits.check(
        _database(request), "password reset", "ip", client_ip(request), limits.RESET_PER_IP
    )
    await service.confirm_password_reset(db, _settings(request), body.token, body.new_password)


@router.get("/auth/oauth/providers")
async def oauth_providers(request: Request) -> list[OAuthProviderOut]:
    """The sign-in providers configured on this instance."""
    settings = _settings(request)
    return [
        OAuthProviderOut(
            name=name,
            display_name=oauth.display_name(settings, name),
            start_url=f"/api/auth/oauth/{name}/start",
        )
        for name in oauth.configured_providers(settings)
    ]


@router.get("/auth/oauth/{provider}/start")
async def oauth_start(
    provider: ProviderName,
    request: Request,
    db: DbSession,
    next: Annotated[str | None, Query(max_length=oauth.MAX_NEXT_LENGTH)] = None,
    invite: Annotated[str | None, Query(max_length=1000)] = None,
) -> RedirectResponse:
    """Send the browser to the provider's consent page."""
    await limits.check(_database(request), "sign-in", "ip", client_ip(request), limits.LOGIN_PER_IP)
    # One secret per browser (kept across sign-ins started in several tabs).
    browser = request.cookies.get(oauth.BROWSER_COOKIE) or ""
    if not _BROWSER_SECRET.fullmatch(browser):
        browser = new_token(24)
    async with httpx.AsyncClient() as client:
        url = await oauth.start(
            db,
            _settings(request),
            client,
            provider,
            next_path=next,
            invite=invite,
            browser=browser,
        )
    response = RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        oauth.BROWSER_COOKIE,
        browser,
        max_age=int(oauth.STATE_TTL.total_seconds()),
        path="/api/auth/oauth",
        httponly=True,
        # Lax: sent on the provider's top-level redirect back to the callback.
        samesite="lax",
        secure=secure_cookies(request),
    )
    return response


@router.get("/auth/oauth/{provider}/callback")
async def oauth_callback(
    provider: ProviderName,
    request: Request,
    db: DbSession,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back: sign in (creating the account on first
    visit) and land on the page the sign-in started from.

    A browser is never left on a JSON error: a failed sign-in lands on
    ``/login?error=<code>`` (e.g. ``invalid_state``, ``sign_in_refused``, ``email_taken``,
    ``registration_disabled``, ``upstream_error``), with nothing of it saved.
    """
    from tidings.orgs.invites import accept_invite, invite_from_token

    try:
        # A savepoint: a failure after the account was created (say, a spent invite) must
        # not leave half of it behind when the redirect below commits the request.
        async with db.begin_nested():
            async with httpx.AsyncClient() as client:
                done = await oauth.complete(
                    db,
                    _settings(request),
                    client,
                    provider,
                    code=code,
                    state=state,
                    error=error,
                    browser=request.cookies.get(oauth.BROWSER_COOKIE),
                )
            organization_id = None
            if done.invite:
                invite = await invite_from_token(db, done.invite)
                await accept_invite(db, invite, done.user)
                organization_id = invite.organization_id
            signed = await service.open_session(
                db,
                done.user,
                ip=client_ip(request),
                agent=client_agent(request),
                organization_id=organization_id,
            )
    except TidingsError as exc:
        log = logger.warning if exc.status_code >= 500 else logger.info
        log("sign-in with %s failed (%s): %s", provider, exc.code, exc.message)
        return RedirectResponse(
            f"/login?{urlencode({'error': exc.code})}", status_code=status.HTTP_303_SEE_OTHER
        )
    response = RedirectResponse(done.next_path, status_code=status.HTTP_303_SEE_OTHER)
    _signed_in(request, response, signed)
    return response


@router.get("/me")
async def me(request: Request, active: CurrentSession, db: DbSession) -> MeOut:
    """The signed-in user, their organizations and the one requests act in by default."""
    orgs = await service.memberships(db, active.user.id)
    ids = [org.id for org, _ in orgs]
    wanted = (
        request.headers.get(ORG_HEADER)
        or request.cookies.get(ORG_COOKIE)
        or active.session.organization_id
    )
    current = wanted if wanted in ids else (ids[0] if ids else None)
    impersonator = None
    if active.session.impersonator_id:
        admin = await db.get(User, active.session.impersonator_id)
        if admin is not None:
            impersonator = ImpersonatorOut(id=admin.id, email=admin.email)
    return MeOut(
        user=UserOut.model_validate(active.user),
        organizations=[MembershipOut(id=o.id, name=o.name, role=role) for o, role in orgs],
        current_organization_id=current,
        impersonator=impersonator,
    )


@router.patch("/me")
async def update_me(body: MeUpdateIn, user: CurrentUser, db: DbSession) -> UserOut:
    """Change the profile (only the fields sent)."""
    changes = body.model_dump(include=body.model_fields_set)
    return UserOut.model_validate(await service.update_profile(db, user, changes))


@router.get("/admin/orgs")
async def admin_list_orgs(
    admin: SuperAdmin,
    db: DbSession,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AdminOrgList:
    """Every organization of the instance (global super admins only)."""
    rows, total = await service.list_all_organizations(db, query=q, limit=limit, offset=offset)
    return AdminOrgList(
        items=[
            AdminOrgOut(id=o.id, name=o.name, created_at=o.created_at, members=n) for o, n in rows
        ],
        total=total,
    )


@router.post("/admin/impersonate")
async def admin_impersonate(
    body: ImpersonateIn, admin: SuperAdmin, request: Request, response: Response, db: DbSession
) -> AuthOut:
    """Sign in as another user (global super admins only; recorded in the session, logged)."""
    signed = await service.impersonate(
        db, admin, body.user_id, ip=client_ip(request), agent=client_agent(request)
    )
    return _signed_in(request, response, signed, impersonator=admin)


@router.delete("/admin/impersonate")
async def admin_stop_impersonating(
    active: CurrentSession, request: Request, response: Response, db: DbSession
) -> AuthOut:
    """End an impersonation and sign the super admin back in as themselves."""
    signed = await service.stop_impersonating(
        db, active, ip=client_ip(request), agent=client_agent(request)
    )
    return _signed_in(request, response, signed)
