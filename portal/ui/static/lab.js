// The lab page: the running task's events as they come (server-sent events from
// /api/jobs/<id>/stream; polling /api/jobs/<id>/events if the stream cannot be used), the
// page reloaded when the task ends (to show the lab's new state), and copy buttons.
(function () {
  "use strict";

  var WORDS = {
    playbook_on_start: "playbook started", playbook_on_play_start: "play",
    playbook_on_task_start: "task", runner_on_start: "started", runner_on_ok: "ok",
    runner_on_changed: "changed", runner_on_failed: "failed",
    runner_on_unreachable: "unreachable", runner_on_skipped: "skipped",
    playbook_on_stats: "summary"
  };
  var POLL_MS = 2000;
  // EventSource errors in a row (no event between them) before falling back to polling.
  var STREAM_TRIES = 3;

  function words(name) { return WORDS[name] || name.replace(/_/g, " "); }

  function addEvent(list, event) {
    var li = document.createElement("li");
    li.className = "event event-" + event.event;
    var time = document.createElement("time");
    time.textContent = (event.created_at || "").slice(11, 19);
    li.appendChild(time);
    var text = " " + words(event.event);
    if (event.task) text += ": " + event.task;
    if (event.host) text += " (" + event.host + ")";
    li.appendChild(document.createTextNode(text));
    list.appendChild(li);
    li.scrollIntoView({block: "nearest"});
  }

  function ended(status) {
    var line = document.getElementById("job-status");
    var strong = line && line.querySelector("strong");
    if (strong) strong.textContent = status;
    // The lab's state changed: show the page as it is now.
    window.setTimeout(function () { window.location.reload(); }, 1000);
  }

  function poll(section, list, after) {
    fetch(section.dataset.eventsUrl + "?after=" + after, {credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (body) {
        body.events.forEach(function (e) { addEvent(list, e); });
        if (["queued", "started"].indexOf(body.job.status) === -1) {
          ended(body.job.status);
        } else {
          window.setTimeout(function () { poll(section, list, body.next_after); }, POLL_MS);
        }
      })
      .catch(function () {
        window.setTimeout(function () { poll(section, list, after); }, POLL_MS * 2);
      });
  }

  function follow(section) {
    var list = document.getElementById("events");
    var last = 0;
    if (!window.EventSource) { poll(section, list, 0); return; }
    var failures = 0;
    var source = new EventSource(section.dataset.streamUrl);
    source.addEventListener("progress", function (message) {
      failures = 0;
      var event = JSON.parse(message.data);
      last = event.seq;
      addEvent(list, event);
    });
    source.addEventListener("end", function (message) {
      source.close();
      ended(JSON.parse(message.data).status);
    });
    source.onerror = function () {
      failures += 1;
      if (failures >= STREAM_TRIES || source.readyState === EventSource.CLOSED) {
        source.close();
        poll(section, list, last);
      }
    };
  }

  function copy(button) {
    var source = document.getElementById(button.dataset.copyFrom);
    var text = source ? source.textContent : "";
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { select(source); });
    } else {
      select(source);
      if (document.execCommand("copy")) done();
    }
  }

  function select(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (button) copy(button);
  });
  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("progress");
    if (section && section.dataset.active === "true") follow(section);
    // A lab between states with no task of its own yet: look again shortly.
    var state = document.getElementById("lab-state");
    if (state && state.dataset.settling === "true") {
      window.setTimeout(function () { window.location.reload(); }, 5000);
    }
  });
})();
