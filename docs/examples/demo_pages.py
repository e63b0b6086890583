"""The pages every example app serves, written once; each example adds only its framework's wiring.

The examples import this module as a sibling (``from demo_pages import ...``): running an
example as a script, or with ``gunicorn --chdir docs/examples``, puts this folder on the path.
"""

from __future__ import annotations

import html
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any


def home_page(session: Mapping[str, Any]) -> str:
    """The home page: this session's visit counter, its user and its notes."""
    user = session.get("user")
    notes = "".join(
        f"<li class='note'>{html.escape(text)}</li>"
        for key, text in sorted(session.items())
        if key.startswith("note:")
    )
    if user:
        account = f"<p>Logged in as <b id='user'>{html.escape(user)}</b>.</p>" + form("/logout", "Log out")
    else:
        account = form("/login", "Log in", "name")
    return (
        f"<h1>Home</h1><p>Visits in this session: <b id='visits'>{session['visits']}</b></p>{account}"
        f"<ul>{notes}</ul>{form('/notes', 'Add note', 'text')}<p><a href='/cached'>A cached page</a></p>"
    )


def form(action: str, label: str, field: str = "") -> str:
    """A POST form with one optional text field."""
    entry = f"<input name='{field}' required> " if field else ""
    return f"<form method='post' action='{action}'>{entry}<button>{label}</button></form>"


def note_key() -> str:
    """A new session key for one note: overlapping requests that add notes all keep theirs."""
    return f"note:{time.time_ns()}:{secrets.token_hex(4)}"


def rendered_page() -> str:
    """The cached page's body: when and by which process it was rendered."""
    return f"<p id='rendered'>Rendered at {time.time():.6f} by process {os.getpid()}.</p>"
