// tritonctl web view: live updates without a page reload. The page names a
// live region (data-live: the URL of its HTML) and an event stream
// (data-events: server-sent events from the controller's event stream).
// On each event the region is fetched again and replaced; a burst of
// events costs one fetch at a time.
(function () {
  "use strict";
  var region = document.querySelector("[data-live]");
  if (!region || !window.EventSource) { return; }
  var note = document.getElementById("live-note");
  var say = function (text) { if (note) { note.textContent = text; } };
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(region.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) { region.innerHTML = html; say("live"); })
      .catch(function (e) { say("update failed: " + e.message); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var source = new EventSource(region.getAttribute("data-events"));
  source.addEventListener("change", refresh);
  // Whatever happened between the page's rendering and the subscription.
  source.onopen = function () { say("live"); refresh(); };
  source.onerror = function () { say("reconnecting…"); };
})();
