"""One email template per notification type: subject, plain text and HTML, with the userId in them."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment, StrictUndefined, select_autoescape

_env = Environment(autoescape=select_autoescape(default=True), undefined=StrictUndefined)

_HTML_LAYOUT = """<!doctype html>
<html><body style="font-family: system-ui, sans-serif; line-height: 1.5; color: #1f2933">
<h1 style="font-size: 20px">{{ heading }}</h1>
<p>{{ body }}</p>
<p style="color: #7b8794; font-size: 12px">Sent by errand to user {{ user_id }}.</p>
</body></html>
"""

_TEMPLATES: dict[str, tuple[str, str, str]] = {
    # type: (subject, heading, body)
    "welcome": (
        "Welcome aboard, {{ user_id }}!",
        "Welcome, {{ user_id }}",
        "Your account is ready. We are glad to have you with us.",
    ),
    "password-reset": (
        "Reset your password",
        "Password reset for {{ user_id }}",
        "Someone asked to reset the password of account {{ user_id }}. "
        "If it was you, follow the link in the app; if not, ignore this email.",
    ),
    "order-confirmed": (
        "Your order is confirmed",
        "Thank you, {{ user_id }}",
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
    values = {"user_id": user_id}
    subject = _env.from_string(subject_t).render(values)
    heading = _env.from_string(heading_t).render(values)
    body = _env.from_string(body_t).render(values)
    html = _env.from_string(_HTML_LAYOUT).render(heading=heading, body=body, user_id=user_id)
    text = f"{heading}\n\n{body}\n\n-- \nSent by errand to user {user_id}.\n"
    return RenderedEmail(recipient_for(user_id), subject, text, html, message_id)
