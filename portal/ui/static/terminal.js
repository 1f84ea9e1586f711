// The node terminal page: xterm.js in #terminal, relayed by the portal's WebSocket to an SSH
// session on the node (portal/terminal.py). Keystrokes go as binary frames, the terminal's
// size as a JSON text frame ({"resize": [cols, rows]}) whenever the window changes; the node's
// output comes back as binary frames. Why a session ended is the close frame's reason.
(function () {
  "use strict";
  const box = document.getElementById("terminal");
  const status = document.getElementById("terminal-status");
  const reconnect = document.getElementById("terminal-reconnect");
  const node = box.dataset.node;
  const address = new URL(box.dataset.socket, window.location.href);
  address.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontSize: 14,
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();

  const encoder = new TextEncoder();
  let socket = null;

  function show(state, text) {
    box.dataset.state = state;
    status.textContent = text;
    reconnect.hidden = state !== "closed";
  }

  function sendSize() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ resize: [term.cols, term.rows] }));
    }
  }

  function send(text) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(text));
  }

  function connect() {
    show("connecting", "Connecting to " + node + "…");
    socket = new WebSocket(address);
    socket.binaryType = "arraybuffer";
    socket.onopen = function () {
      show("open", "Connected to " + node + ".");
      sendSize();
      term.focus();
    };
    socket.onmessage = function (event) {
      if (typeof event.data === "string") term.write(event.data);
      else term.write(new Uint8Array(event.data));
    };
    socket.onclose = function (event) {
      // A refused handshake (not logged in, not your lab, another site) has code 1006.
      const why = event.reason || (event.code === 1006 ? "the portal refused or lost the connection" : "");
      show("closed", "Session closed" + (why ? ": " + why : "") + ".");
    };
  }

  term.onData(send);
  term.onBinary(function (data) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(Uint8Array.from(data, function (c) { return c.charCodeAt(0); }));
    }
  });
  term.onResize(sendSize);
  window.addEventListener("resize", function () { fit.fit(); });

  // Ctrl+Shift+C copies the selection (Ctrl+C stays the node's interrupt); Ctrl+Shift+V is
  // left to the browser, whose paste event xterm.js sends to the node.
  term.attachCustomKeyEventHandler(function (event) {
    if (event.type !== "keydown" || !event.ctrlKey || !event.shiftKey) return true;
    if (event.code === "KeyC") {
      if (term.hasSelection() && navigator.clipboard) {
        navigator.clipboard.writeText(term.getSelection());
      }
      return false;
    }
    return event.code !== "KeyV";
  });

  // Leaving the page ends the session now (a page kept in the back/forward cache would
  // otherwise keep its SSH session open).
  window.addEventListener("pagehide", function () {
    if (socket) socket.close(1000, "page closed");
  });
  reconnect.addEventListener("click", function () {
    term.reset();
    connect();
  });
  connect();
})();
