"""Email templates: every type names the user; the HTML escapes the id exactly once."""

from __future__ import annotations

import pytest

from errand.mail.templates import NOTIFICATION_TYPES, render


@pytest.mark.parametrize("kind", NOTIFICATION_TYPES)
def test_every_type_names_the_user_in_every_part(kind: str) -> None:
    email = render(kind, "u-42", "<m@x>")
    assert "u-42" in email.text and "u-42" in email.html
    assert email.to == "u-42@users.errand.local"
    assert email.message_id == "<m@x>"
    assert email.subject and "\n" not in email.subject


def test_html_escapes_the_user_id_once_and_text_not_at_all() -> None:
    email = render("welcome", "<b>&{x}", "<m@x>")
    assert email.subject == "Welcome aboard, <b>&{x}!"
    assert "Welcome, <b>&{x}" in email.text
    assert "Welcome, &lt;b&gt;&amp;{x}</h1>" in email.html
    assert "&amp;amp;" not in email.html and "<b>" not in email.html


def test_unknown_type_raises() -> None:
    with pytest.raises(KeyError):
        render("sms", "u", "<m@x>")
