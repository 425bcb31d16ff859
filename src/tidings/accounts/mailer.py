"""Outgoing mail, pluggable.

:func:`get_mailer` returns the SMTP mailer when ``TIDINGS_SMTP_HOST`` is set and otherwise the
log mailer, which writes each message to the ``tidings.mail`` log (so a self-hoster without mail
can still copy a reset or invite link from the server log). :func:`set_mailer` installs another
implementation of :class:`Mailer` (an email API, say). :func:`send_mail` never raises: a mail
that cannot be sent is logged and reported as ``False``, so a mail server outage never turns a
password reset into a 500.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from tidings.config import Settings, get_settings

logger = logging.getLogger("tidings.mail")

SMTP_TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class Mail:
    """One plain-text message."""

    to: str
    subject: str
    text: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Deliver ``mail`` or raise."""


class LogMailer:
    """Writes every message to the log instead of sending it."""

    async def send(self, mail: Mail) -> None:
        logger.info("mail to %s: %s\n%s", mail.to, mail.subject, mail.text)


class SmtpMailer:
    """Sends through an SMTP server (implicit TLS on port 465, else STARTTLS when enabled)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("SmtpMailer needs TIDINGS_SMTP_HOST")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.user = settings.smtp_user
        self.password = settings.smtp_password
        self.sender = settings.smtp_from
        self.starttls = settings.smtp_starttls

    def _message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.text)
        return message

    def _send_blocking(self, mail: Mail) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.port == 465:
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS)
        with smtp:
            smtp.ehlo()
            if self.port != 465 and self.starttls:
                # Credentials and links must not cross the network in clear text.
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(self._message(mail))

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self._send_blocking, mail)


_override: Mailer | None = None


def set_mailer(mailer: Mailer | None) -> None:
    """Install ``mailer`` for the whole process (None: back to the configured one)."""
    global _override
    _override = mailer


def get_mailer(settings: Settings | None = None) -> Mailer:
    """The mailer in force: an installed override, else SMTP when configured, else the log."""
    if _override is not None:
        return _override
    settings = settings or get_settings()
    if settings.smtp_host:
        return SmtpMailer(settings)
    return LogMailer()


async def send_mail(mail: Mail, settings: Settings | None = None) -> bool:
    """Send ``mail`` with the mailer in force; False (and a log line) when it failed."""
    try:
        await get_mailer(settings).send(mail)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        logger.warning("could not send mail to %s (%s): %s", mail.to, mail.subject, exc)
        return False
    return True
