// The topology editor: a gutter of line numbers beside the textarea (lines with errors
// marked), kept in step with typing and scrolling; problem links jump to their line.
(function () {
  "use strict";

  function badLines() {
    var problems = document.getElementById("problems");
    var text = problems ? problems.getAttribute("data-bad-lines") || "" : "";
    return text.split(" ").filter(Boolean).map(Number);
  }

  function renderGutter() {
    var area = document.getElementById("topology");
    var gutter = document.querySelector(".editor .gutter");
    if (!area || !gutter) return;
    var count = area.value.split("\n").length;
    var bad = badLines();
    var items = [];
    for (var n = 1; n <= count; n++) {
      var li = document.createElement("li");
      li.textContent = String(n);
      if (bad.indexOf(n) !== -1) li.className = "bad";
      items.push(li);
    }
    gutter.replaceChildren.apply(gutter, items);
    gutter.scrollTop = area.scrollTop;
  }

  function jumpTo(line) {
    var area = document.getElementById("topology");
    if (!area) return;
    var lines = area.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    var end = start + (lines[line - 1] || "").length;
    area.focus();
    area.setSelectionRange(start, end);
    var lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 20;
    area.scrollTop = Math.max(0, (line - 3) * lineHeight);
    renderGutter();
  }

  document.addEventListener("input", function (event) {
    if (event.target.id === "topology") renderGutter();
  });
  document.addEventListener("scroll", function (event) {
    if (event.target.id === "topology") {
      var gutter = document.querySelector(".editor .gutter");
      if (gutter) gutter.scrollTop = event.target.scrollTop;
    }
  }, true);
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a.jump");
    if (!link) return;
    event.preventDefault();
    jumpTo(Number(link.getAttribute("data-line")));
  });
  // A file chosen for upload fills the textarea, so it can be checked before uploading.
  document.addEventListener("change", function (event) {
    if (event.target.id !== "file" || !event.target.files.length) return;
    event.target.files[0].text().then(function (text) {
      var area = document.getElementById("topology");
      if (area) { area.value = text; renderGutter(); }
    });
  });
  document.addEventListener("htmx:afterSwap", renderGutter);
  document.addEventListener("DOMContentLoaded", renderGutter);
})();
