"""A node's terminal in the browser: the page (xterm.js, static/terminal.js) and its
WebSocket, relayed to an SSH session on the node by portal.terminal.

The WebSocket's handshake is refused (an HTTP answer, no terminal) to an anonymous caller
(401), to a user who may not see the lab or names no node of it (404, like the lab's page)
and to a page of another site (403: the Origin header must be this host, against
cross-site WebSocket hijacking; browsers send the session cookie with any site's
WebSocket). Once accepted, a terminal that cannot open (lab not running, node down, too many
terminals open) says why in the terminal and closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apiflask import HTTPError
from flask import Response, current_app, render_template, request
from simple_websocket import ConnectionClosed, Server

from portal import labs as rules
from portal import terminal
from portal.access import lab_or_404
from portal.auth import current_user
from portal.ui import bp, page_login_required
from store.db import db

# Largest message the browser may send (a paste); larger ones close the socket.
MAX_MESSAGE_BYTES = 256 * 1024
# Pings keep proxies from closing a quiet terminal.
PING_SECONDS = 25
CLOSE_WAIT_SECONDS = 3


@bp.get("/labs/<int:lab_id>/nodes/<name>/terminal")
@page_login_required()
def node_terminal(lab_id: int, name: str):
    lab = lab_or_404(current_user(), lab_id)
    rules.find_node(lab, name)
    return render_template("terminal.html", lab=lab, node_name=name)


def same_origin() -> bool:
    """Whether the page that opened the WebSocket is this site's (portal.terminal)."""
    return terminal.origin_matches(request.headers.get("Origin"), request.host)


def slots() -> terminal.TerminalSlots:
    config = current_app.config
    # The service's own directory (LTB_TERMINALS_DIR); else one per lab store in /tmp.
    configured = config.get("LTB_TERMINALS_DIR")
    directory = (
        Path(configured)
        if configured
        else terminal.default_slots_dir(str(config["SQLALCHEMY_DATABASE_URI"]))
    )
    return terminal.slots_for(
        directory, config["LTB_TERMINALS_PER_USER"], config["LTB_TERMINALS_PER_WORKER"]
    )


# websocket=True: werkzeug routes WebSocket requests only to rules that say so.
@bp.route("/labs/<int:lab_id>/nodes/<name>/terminal/socket", websocket=True)
def node_terminal_socket(lab_id: int, name: str):
    user = current_user()
    if user is None:
        raise HTTPError(401, "Log in to open a terminal")
    if not same_origin():
        raise HTTPError(403, "A terminal opens only from this site's own pages")
    lab = lab_or_404(user, lab_id)
    rules.find_node(lab, name)
    user_id = user.id
    try:
        target: Any = terminal.node_target(lab, name)
    except terminal.TerminalRefused as refused:
        target = refused
    # A terminal lives for minutes or hours: give its database connection back now.
    db.session.remove()
    config = current_app.config
    ws = Server(request.environ, ping_interval=PING_SECONDS, max_message_size=MAX_MESSAGE_BYTES)
    try:
        if isinstance(target, terminal.TerminalRefused):
            raise target
        with slots().slot(user_id):
            terminal.check_container_running(target)
            session = terminal.open_ssh(target, rules.PLATFORM_SSH_KEY)
            try:
                terminal.relay(ws, session, config["LTB_TERMINAL_IDLE_SECONDS"])
            finally:
                session.close()
    except terminal.TerminalRefused as refused:
        terminal.say(ws, refused.message)
        terminal.close(ws, refused.code, refused.message)
    except ConnectionClosed:
        pass
    except Exception:
        # The handshake is done: an error page cannot be sent any more, only a close frame.
        current_app.logger.exception("terminal of node %s of lab %s failed", name, lab_id)
        terminal.close(ws, terminal.CLOSE_ERROR, "the portal failed; try again")
    finally:
        terminal.close(ws, terminal.CLOSE_NORMAL, "terminal closed")
        # Wait for the browser's answer to the close frame: a socket closed with its data
        # unread is reset, and the browser would lose the reason (and say 1006).
        ws.thread.join(timeout=CLOSE_WAIT_SECONDS)
    return WebSocketDone(ws.mode)


class WebSocketDone(Response):
    """The answer after a WebSocket ended: the socket was the server's to write, so nothing
    more may be written on it (an HTTP response after the close frame makes browsers report
    an abnormal close, 1006, and lose the reason)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def __call__(self, environ, start_response):
        if self.mode == "gunicorn":
            # gunicorn's gthread worker closes the connection on StopIteration.
            raise StopIteration()
        # werkzeug's server (tests, `flask run`) takes a ConnectionError as a dropped
        # connection and writes nothing.
        raise ConnectionAbortedError("the WebSocket has ended")
