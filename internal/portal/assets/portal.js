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

  // Disk image upload: create the disk and a write grant (the form's POST),
  // write the image through the grant in 4 MiB pages with progress, then
  // end the grant, which finishes the upload.
  var up = document.querySelector("form[data-upload]");
  if (up) {
    up.addEventListener("submit", function (ev) {
      var file = document.getElementById("image").files[0];
      if (!file || !window.fetch) return; // the server explains
      ev.preventDefault();
      var bar = document.getElementById("upload-bar");
      var status = document.getElementById("upload-status");
      document.getElementById("upload-progress").hidden = false;
      up.querySelector('button[type="submit"]').disabled = true;
      up.elements["bytes"].value = String(file.size);
      var token = up.elements["csrf"].value;
      var fail = function (msg) {
        status.textContent = msg;
        status.classList.add("bad");
        up.querySelector('button[type="submit"]').disabled = false;
      };
      fetch(up.action, { method: "POST", body: new URLSearchParams(new FormData(up)), headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.ok) return r.json();
          return r.text().then(function (t) {
            var d = new DOMParser().parseFromString(t, "text/html");
            var e = d.querySelector(".error, .error-box");
            throw new Error(e ? e.textContent.trim() : "The upload was refused (" + r.status + ").");
          });
        })
        .then(function (start) {
          var chunk = 4 << 20, size = Math.ceil(file.size / 512) * 512;
          var put = function (off) {
            if (off >= size) return Promise.resolve();
            var end = Math.min(off + chunk, size);
            var part = file.slice(off, Math.min(end, file.size));
            var pad = (end - off) - Math.max(0, Math.min(end, file.size) - off);
            var body = pad > 0 ? new Blob([part, new Uint8Array(pad)]) : part;
            return fetch(start.data + "&comp=page", { method: "PUT", body: body, credentials: "omit",
              headers: { "x-ms-page-write": "update", "x-ms-range": "bytes=" + off + "-" + (end - 1), "x-ms-version": "2021-12-02" } })
              .then(function (r) {
                if (!r.ok) throw new Error("Writing at byte " + off + " failed (" + r.status + ").");
                bar.value = Math.round(end * 100 / size);
                status.textContent = Math.round(end * 100 / size) + "% — " + (end >> 20) + " of " + (size >> 20) + " MiB";
                return put(end);
              });
          };
          return put(0).then(function () {
            status.textContent = "Finishing…";
            return fetch(start.finish, { method: "POST", body: new URLSearchParams({ csrf: token }), credentials: "same-origin", redirect: "manual" });
          }).then(function () { location.href = start.disk; });
        })
        .catch(function (e) { fail(e.message); });
    });
  }
})();
