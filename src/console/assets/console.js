// hubsync console: a little progressive enhancement. Every page works
// without it. Served from the binary; no build step.
//
// Pages whose <main> has data-refresh="N" re-fetch themselves every N
// seconds while visible and swap in the new <main>, unless the operator is
// typing in a form on the page. A session that ended sends the browser to
// the login page.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.refresh) return;
  var every = Math.max(5, parseInt(main.dataset.refresh, 10) || 15) * 1000;
  var note = document.getElementById("refreshed");

  function busy() {
    var a = document.activeElement;
    return a && a !== document.body && main.contains(a) &&
      /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }

  function refresh() {
    if (document.hidden || busy()) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.redirected && /\/console\/login/.test(r.url)) {
          window.location.assign(r.url);
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh || busy()) return;
        main.innerHTML = fresh.innerHTML;
        if (note) {
          note.textContent = "Updated " + new Date().toISOString().slice(11, 19) +
            " UTC; this page refreshes itself every " + every / 1000 + " s.";
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }

  window.setInterval(refresh, every);
})();
