// The live overview: ask /live every few seconds whether events arrived; when they did, redraw
// the figures with the HTML the server sends (the same as a reload would show). No library.
(function () {
  "use strict";
  var figures = document.getElementById("figures");
  var status = document.getElementById("live-status");
  if (!figures || !window.fetch) { return; }
  var seen = figures.getAttribute("data-seq") || "";
  var every = 2000;

  function schedule(ms) { window.setTimeout(poll, ms); }

  function poll() {
    if (document.hidden) { schedule(every); return; }
    var query = window.location.search ? window.location.search.slice(1) + "&" : "";
    window.fetch("/live?" + query + "seen=" + encodeURIComponent(seen), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 401) {
        status.textContent = "Signed out: live updates stopped. Reload to sign in again.";
        return null;
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (answer) {
      if (answer === null) { return; }
      if (answer.html !== null) {
        figures.innerHTML = answer.html;
        figures.setAttribute("data-seq", String(answer.seq));
        status.textContent = "Live: updated at " + new Date().toLocaleTimeString() + ".";
      }
      seen = String(answer.seq);
      schedule(every);
    }).catch(function () {
      status.textContent = "Live: the server did not answer; trying again.";
      schedule(every * 5);
    });
  }

  schedule(every);
})();
