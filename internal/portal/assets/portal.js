// Coffer portal: small niceties. Every page works without this file.
(function () {
  "use strict";

  // Copy buttons: copy the text of the sibling element named by data-copy-from.
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-copy-from]");
    if (!b) return;
    var el = b.parentElement.querySelector(b.getAttribute("data-copy-from"));
    if (!el || !navigator.clipboard) return;
    navigator.clipboard.writeText(el.textContent.trim()).then(function () {
      b.classList.add("done");
      b.textContent = "Copied";
      setTimeout(function () { b.classList.remove("done"); b.textContent = "Copy"; }, 1500);
    });
  });

  // The CLI equivalent follows what is typed in the form it belongs to.
  function quote(s) {
    if (s === "") return "''";
    if (/^[A-Za-z0-9_\-.\/:=@,+]+$/.test(s)) return s;
    return "'" + s.replace(/'/g, "'\\''") + "'";
  }
  function syncCLI(form) {
    form.querySelectorAll("[data-cli] span[data-field]").forEach(function (span) {
      var f = form.elements[span.getAttribute("data-field")];
      if (!f) return;
      var v = (f.value || "").trim();
      // An option may name its value on the command line differently.
      if (f.tagName === "SELECT" && f.selectedOptions[0] && f.selectedOptions[0].hasAttribute("data-cli-value")) {
        v = f.selectedOptions[0].getAttribute("data-cli-value");
      }
      span.textContent = v === "" ? span.getAttribute("data-placeholder") : quote(v);
    });
  }
  document.addEventListener("input", function (ev) {
    var form = ev.target.form;
    if (form) syncCLI(form);
  });
  document.addEventListener("change", function (ev) {
    var form = ev.target.form;
    if (form) syncCLI(form);
  });

  // Pages showing running work reload themselves while visible.
  var m = document.querySelector('meta[name="coffer-refresh"]');
  if (m) {
    var secs = parseInt(m.getAttribute("content"), 10) || 5;
    setInterval(function () {
      if (document.visibilityState === "visible") location.reload();
    }, secs * 1000);
  }
})();
