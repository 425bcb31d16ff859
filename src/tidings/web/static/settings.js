/* Small helpers of the settings and media pages: a set's time rows, webhook and connector test
 * results, a connector's events, and uploads to the library with progress. */
(function () {
  "use strict";
  var T = window.Tidings;

  /* ---- sets: weekday + time rows ---------------------------------------------------- */
  var setForm = document.querySelector("form[data-set-form]");
  if (setForm) {
    var list = setForm.querySelector("[data-set-times]");
    var template = document.getElementById("set-time-row");
    var counter = list.children.length;
    setForm.addEventListener("click", function (ev) {
      if (ev.target.closest("[data-add-set-time]")) {
        counter += 1;
        var row = template.content.firstElementChild.cloneNode(true);
        var labels = row.querySelectorAll("label");
        var day = row.querySelector("[data-day]");
        var time = row.querySelector("[data-time]");
        day.id = "set-day-" + counter; time.id = "set-time-" + counter;
        labels[0].setAttribute("for", day.id); labels[0].textContent = "Day of time " + counter;
        labels[1].setAttribute("for", time.id); labels[1].textContent = "Time " + counter;
        row.querySelector("[data-remove-set-time]").setAttribute("aria-label", "Remove time " + counter);
        list.appendChild(row);
        day.focus();
        return;
      }
      var remove = ev.target.closest("[data-remove-set-time]");
      if (remove) { remove.closest("li").remove(); setForm.querySelector("[data-add-set-time]").focus(); }
    });
    setForm.addEventListener("tidings:serialize", function (ev) {
      ev.detail.body.times = Array.prototype.map.call(list.querySelectorAll("[data-set-time]"), function (row) {
        return { day: Number(row.querySelector("[data-day]").value), time: row.querySelector("[data-time]").value };
      });
    });
  }

  /* ---- connectors: events only go with a webhook URL ---------------------------------- */
  var connectorForm = document.querySelector("form[data-connector-form]");
  if (connectorForm) {
    connectorForm.addEventListener("tidings:serialize", function (ev) {
      if (!ev.detail.body.webhook_url) delete ev.detail.body.events;
    });
  }

  /* ---- webhooks (and connectors): what the endpoint answered to the test ------------- */
  document.addEventListener("tidings:success", function (ev) {
    if (ev.detail.how !== "webhook-test") return;
    ev.preventDefault();
    var section = ev.target.closest("[data-webhook]");
    var box = section && section.querySelector("[data-test-result]");
    var d = ev.detail.data && ev.detail.data.delivery;
    if (!box || !d) return;
    box.hidden = false;
    box.className = d.succeeded ? "small form-success" : "small form-error";
    box.textContent = d.succeeded
      ? "Test event delivered: the endpoint answered " + d.status_code + " in " + d.duration_ms + " ms. Reload to see it in the log."
      : "Test event failed: " + (d.error || ("HTTP " + d.status_code)) + (d.response_excerpt ? " — " + d.response_excerpt.slice(0, 200) : "");
  });

  /* ---- media library uploads ---------------------------------------------------------- */
  var input = document.querySelector("[data-library-upload]");
  if (input && window.TidingsMedia) {
    input.addEventListener("change", async function () {
      var files = Array.prototype.slice.call(input.files || []);
      input.value = "";
      var progress = document.querySelector("[data-progress]");
      progress.hidden = false;
      var results = await Promise.all(files.map(function (file) {
        var row = window.TidingsMedia.progressRow(progress, file);
        return window.TidingsMedia.upload(file, { onProgress: row.progress }).then(
          function () { row.done(); return true; },
          function (err) { row.failed(err.message); return false; });
      }));
      if (results.every(Boolean)) { T.toast("Uploaded."); setTimeout(function () { location.reload(); }, 600); }
    });
  }
})();
