"""One email template per notification type: subject, plain text and HTML, with the userId in them.

Templates are plain `str.format` strings: the subject and the text part get the
user id as it is, the HTML part gets it HTML-escaped exactly once. No template
engine is needed for three fixed messages, and rendering costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

_HTML_LAYOUT = """<!doctype html>
<html><body style="font-family: system-ui, sans-serif; line-height: 1.5; color: #1f2933">
<h1 style="font-size: 20px">{heading}</h1>
<p>{body}</p>
<p style="color: #7b8794; font-size: 12px">Sent by errand to user {user_id}.</p>
</body></html>
"""

_TEXT_LAYOUT = "{heading}\n\n{body}\n\n-- \nSent by errand to user {user_id}.\n"

_TEMPLATES: dict[str, tuple[str, str, str]] = {
    # type: (subject, heading, body)
    "welcome": (
        "Welcome aboard, {user_id}!",
        "Welcome, {user_id}",
        "Your account is ready. We are glad to have you with us.",
    ),
    "password-reset": (
        "Reset your password",
        "Password reset for {user_id}",
        "Someone asked to reset the password of account {user_id}. "
        "If it was you, follow the link in the app; if not, ignore this email.",
    ),
    "order-confirmed": (
        "Your order is confirmed",
        "Thank you, {user_id}",
        "We have received your order and will let you know when it ships.",
    ),
}

NOTIFICATION_TYPES = tuple(_TEMPLATES)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    to: str
    subject: str
    text: str
    html: str
    message_id: str


def recipient_for(user_id: str) -> str:
    """errand knows users by id only; the demo address book maps them to a local domain."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in user_id)
    return f"{safe}@users.errand.local"


def render(kind: str, user_id: str, message_id: str) -> RenderedEmail:
    """Render the email for a notification type. Raises KeyError for an unknown type."""
    subject_t, heading_t, body_t = _TEMPLATES[kind]
    # A user id is data, never a template: format() does not look inside the values.
    subject = subject_t.format(user_id=user_id)
    heading, body = heading_t.format(user_id=user_id), body_t.format(user_id=user_id)
    text = _TEXT_LAYOUT.format(heading=heading, body=body, user_id=user_id)
    html = _HTML_LAYOUT.format(heading=escape(heading), body=escape(body), user_id=escape(user_id))
    return RenderedEmail(recipient_for(user_id), subject, text, html, message_id)
