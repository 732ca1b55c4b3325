// Live update without a build step: every data-refresh seconds, fetch this page again and swap
// its <main>. Skipped while the user types in a form or the tab is hidden.
//
// An open tab must never pass old figures off as current. So: an answer that is not the page
// (the 503 "cannot be read" when the state database cannot be read, a 404...) is swapped in
// like the page, since it names the failure; no answer (serve stopped, the network down, or
// none within two refreshes, at least 10 s) puts a red banner on the page saying since when
// the dashboard does not answer and as of when the figures below are. The ages ("8 s ago")
// count on in the browser from the page's render (<main data-rendered-ms>, the server's
// clock; each age's data-age-s, its age then), so figures that stopped updating grow old
// visibly instead of standing still.
(function () {
  "use strict";
  // <select data-autosubmit> submits its form on change (no inline handlers: see the CSP).
  Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  // When the <main> shown arrived, on the browser's monotonic clock: elapsed time is measured
  // on it, never by comparing the browser's wall clock with the server's.
  var received = performance.now();
  var failingSince = null; // the server's time, as estimated, of the first refresh that failed
  var why = "";

  function renderedMs() {
    var main = document.querySelector("main");
    return parseInt((main && main.getAttribute("data-rendered-ms")) || "0", 10);
  }
  // The server's clock now, as this page estimates it: its render time and the time since.
  function serverNow() { return renderedMs() + (performance.now() - received); }
  function utc(ms) { return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC"; }
  // As the server writes an age (bot.dashboard.app._age).
  function age(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    if (s < 120) { return s + " s"; }
    if (s < 7200) { return Math.floor(s / 60) + " min"; }
    if (s < 172800) { return Math.floor(s / 3600) + " h"; }
    return Math.floor(s / 86400) + " d";
  }
  function banner() {
    var main = document.querySelector("main");
    if (!main || failingSince === null) { return; }
    var note = document.getElementById("not-answering");
    if (!note) {
      note = document.createElement("div");
      note.id = "not-answering";
      note.className = "notice bad";
      main.insertBefore(note, main.firstChild);
    }
    note.textContent = "DASHBOARD NOT ANSWERING since " + utc(failingSince) + " (" + why +
      "): the figures below are as of " + utc(renderedMs()) + " (" +
      age((serverNow() - renderedMs()) / 1000) + " ago) and do not follow the account.";
  }
  function count() {
    var elapsed = (performance.now() - received) / 1000;
    Array.prototype.forEach.call(document.querySelectorAll("[data-age-s]"), function (el) {
      el.textContent = age(parseFloat(el.getAttribute("data-age-s")) + elapsed);
    });
    banner();
  }
  window.setInterval(count, 1000);

  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds) { return; }
  var patience = Math.max(2 * seconds, 10) * 1000; // two refreshes, at least 10 s
  var asked = null; // when the refresh under way was sent (performance.now()), or null
  var stop = null; // aborts it

  function busy() {
    var a = document.activeElement;
    return document.hidden || (a && (a.tagName === "INPUT" || a.tagName === "SELECT"));
  }
  function failed(reason) {
    if (failingSince === null) { failingSince = serverNow(); }
    why = reason;
    banner();
  }
  function swap(fresh) {
    var here = document.querySelector("main");
    if (here) { here.replaceWith(fresh); }
    received = performance.now();
    failingSince = null;
    count();
  }
  function refresh() {
    if (asked !== null) {
      // No answer within two refreshes: a server that hangs is not answering either.
      if (performance.now() - asked > patience && stop) { stop.abort(); }
      return;
    }
    if (busy()) { return; }
    asked = performance.now();
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    stop = controller;
    var timedOut = false;
    fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      signal: controller ? controller.signal : undefined
    })
      .then(function (r) {
        return r.text().then(function (html) { return { status: r.status, ok: r.ok, html: html }; });
      })
      .then(function (answer) {
        var doc = new DOMParser().parseFromString(answer.html, "text/html");
        var fresh = doc.querySelector("main");
        if (fresh) {
          swap(fresh); // an error page too: it says what cannot be read
        } else {
          failed(answer.ok ? "its answer holds no page" : "HTTP " + answer.status);
        }
      })
      .catch(function () {
        timedOut = controller !== null && controller.signal.aborted;
        failed(timedOut ? "no answer for " + Math.round(patience / 1000) + " s" : "no connection");
      })
      .then(function () { asked = null; stop = null; });
  }
  window.setInterval(refresh, seconds * 1000);
})();
