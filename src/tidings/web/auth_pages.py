"""Pages of signing in and out: sign in, sign up, password reset, invites, organization switch."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tidings.accounts import oauth
from tidings.accounts.auth import DbSession, clear_auth_cookies, set_org_cookie
from tidings.accounts.passwords import MIN_PASSWORD_LENGTH
from tidings.accounts.service import registration_open
from tidings.accounts.sessions import revoke_session
from tidings.config import Settings
from tidings.core.errors import TidingsError
from tidings.orgs import invites as invite_service
from tidings.orgs.service import switch_organization
from tidings.web.context import Page, render, signed_in

router = APIRouter()

NextPath = Annotated[str | None, Query(max_length=oauth.MAX_NEXT_LENGTH)]
TokenParam = Annotated[str | None, Query(max_length=1000)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _providers(request: Request, next_path: str) -> list[dict[str, str]]:
    settings = _settings(request)
    query = f"?next={next_path}" if next_path != "/" else ""
    return [
        {
            "name": name,
            "display_name": oauth.display_name(settings, name),
            "start_url": f"/api/auth/oauth/{name}/start{query}",
        }
        for name in oauth.configured_providers(settings)
    ]


#: What a failed OAuth sign-in (``/login?error=<code>``, set by the accounts callback) means
#: for the person who tried, by code.
SIGN_IN_ERRORS = {
    "invalid_state": "That sign-in link expired or was opened in another browser. "
    "Please start again from this page.",
    "sign_in_refused": "The sign-in was cancelled or refused at the provider. "
    "Try again, or sign in with your email and password.",
    "invalid_code": "The provider's answer could not be verified (it may have expired "
    "or been used already). Please try again.",
    "email_not_verified": "The provider did not share a verified email address. Verify your "
    "email there first, or sign in with your email and password.",
    "email_taken": "Another account at that provider already uses this email address. "
    "Sign in with that account instead.",
    "registration_disabled": "This server does not accept new accounts. "
    "Ask an administrator of your organization for an invitation.",
    "account_disabled": "This account is disabled. Contact the administrator of this server.",
    "upstream_error": "The sign-in provider could not be reached or answered with an error. "
    "Please try again in a moment.",
}
SIGN_IN_FAILED = "Signing in did not work. Please try again."


def sign_in_error(code: str | None) -> str | None:
    """The message for a failed sign-in's ``error`` code: the generic one for a code we do
    not know (the parameter itself is never shown)."""
    if code is None:
        return None
    return SIGN_IN_ERRORS.get(code, SIGN_IN_FAILED)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/")
async def home(request: Request, db: DbSession) -> Response:
    """The calendar for signed-in users, the sign-in page for everyone else."""
    if await signed_in(request, db) is None:
        return _redirect("/login")
    return _redirect("/calendar")


@router.get("/login")
async def login_page(request: Request, db: DbSession, next: NextPath = None) -> Response:
    """Sign in with email and password or a configured OAuth provider."""
    target = oauth.safe_next(next)
    if target.startswith(("/login", "/signup")):
        target = "/"
    if await signed_in(request, db) is not None:
        return _redirect(target)
    notice = None
    if request.query_params.get("reset"):
        notice = "Your password was changed. Sign in with the new one."
    # Read as is (no length rule): a page must not answer a 422 to a mangled link.
    error = sign_in_error(request.query_params.get("error"))
    return render(
        request,
        "auth/login.html",
        next=target,
        providers=_providers(request, target),
        registration_open=await registration_open(db, _settings(request)),
        notice=notice,
        error=error,
    )


async def _invite_preview(db: DbSession, token: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        invite = await invite_service.invite_from_token(db, token)
        org = await invite_service.invite_organization(db, invite)
    except TidingsError as exc:
        return None, exc.message
    return {
        "organization_name": org.name,
        "email": invite.email,
        "role": invite.role.value,
    }, None


@router.get("/signup")
async def signup_page(
    request: Request, db: DbSession, next: NextPath = None, invite: TokenParam = None
) -> Response:
    """Create an account (with its own organization, or joining an invite's)."""
    target = oauth.safe_next(next)
    if await signed_in(request, db) is not None and not invite:
        return _redirect(target)
    preview = None
    if invite:
        preview, error = await _invite_preview(db, invite)
        if error:
            return render(request, "auth/invite.html", error=error, status_code=400)
    if target == "/":
        target = "/channels?welcome=1"
    return render(
        request,
        "auth/signup.html",
        next=target,
        invite=preview,
        invite_token=invite,
        providers=_providers(request, target),
        registration_open=await registration_open(db, _settings(request)),
        min_password=MIN_PASSWORD_LENGTH,
    )


@router.get("/forgot-password")
async def forgot_password_page(request: Request) -> Response:
    """Ask for a password reset link."""
    return render(request, "auth/forgot.html")


@router.get("/reset-password")
async def reset_password_page(request: Request, token: TokenParam = None) -> Response:
    """Choose a new password (the emailed link lands here)."""
    return render(request, "auth/reset.html", token=token, min_password=MIN_PASSWORD_LENGTH)


@router.get("/invite")
async def invite_page(request: Request, db: DbSession, token: TokenParam = None) -> Response:
    """What an invite offers, and how to accept it (the emailed link lands here)."""
    if not token:
        return render(
            request, "auth/invite.html", error="This page needs the invite link.", status_code=400
        )
    preview, error = await _invite_preview(db, token)
    if error:
        return render(request, "auth/invite.html", error=error, status_code=400)
    active = await signed_in(request, db)
    return render(
        request,
        "auth/invite.html",
        invite=preview,
        token=token,
        signed_in=active.user if active else None,
    )


@router.post("/logout")
async def logout(request: Request, db: DbSession) -> Response:
    """Sign out (the form in the header) and go to the sign-in page."""
    active = await signed_in(request, db)
    if active is not None:
        await revoke_session(db, active.session.id)
    response = _redirect("/login")
    clear_auth_cookies(request, response)
    return response


@router.post("/switch-org")
async def switch_org(
    request: Request,
    page: Page,
    db: DbSession,
    organization_id: Annotated[str, Form(min_length=1, max_length=100)],
    next: Annotated[str | None, Form(max_length=oauth.MAX_NEXT_LENGTH)] = None,
) -> Response:
    """Make another of my organizations the current one (the header's switcher)."""
    org = await switch_organization(db, page.session.session, organization_id)
    target = oauth.safe_next(next)
    # A post or channel page of the previous organization would be a 404 in the new one.
    if target.count("/") > 1 and not target.startswith("/settings"):
        target = "/" + target.strip("/").split("/")[0]
    response = _redirect(target)
    set_org_cookie(request, response, org.id)
    return response
