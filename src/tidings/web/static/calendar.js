/* The calendar: the "now" line, dragging a post to another slot (with undo), and the post
 * peek (state, error, link, move by keyboard, delete). Moves go through the posts API. */
(function () {
  "use strict";
  var T = window.Tidings;
  var tz = T.userZone();
  var calendar = document.querySelector("[data-calendar]");
  if (!calendar) return;

  function timeLabel(date) {
    var p = T.zoneParts(date, tz);
    return T.pad(p.hour) + ":" + T.pad(p.minute);
  }

  /* ---- the now line ------------------------------------------------------------------ */

  function placeNowLine() {
    var line = document.querySelector("[data-now-line]");
    if (!line) return;
    var p = T.zoneParts(new Date(), tz);
    var minutes = p.hour * 60 + p.minute;
    line.style.top = (minutes / 1440 * 100) + "%";
    line.title = "Now, " + T.pad(p.hour) + ":" + T.pad(p.minute);
  }

  placeNowLine();
  setInterval(placeNowLine, 30000);

  var scroller = document.querySelector("[data-scroll]");
  if (scroller) {
    // Open on the working day: two hours before now (today shown), else 07:00.
    var hour = document.querySelector("[data-now-line]") ? Math.max(0, T.zoneParts(new Date(), tz).hour - 2) : 7;
    var slot = scroller.querySelector('.cal-slot[data-hour="' + hour + '"]');
    if (slot) scroller.scrollTop = slot.offsetTop;
  }

  /* ---- moving ------------------------------------------------------------------------ */

  function chipsOf(group, start) {
    return Array.prototype.filter.call(document.querySelectorAll(".post-chip"), function (c) {
      return c.dataset.group === group && c.dataset.start === start;
    });
  }

  function dropTargetFor(element) {
    return element && element.closest ? element.closest(".cal-slot, .cal-month-day") : null;
  }

  function newStartFor(chip, target) {
    if (target.classList.contains("cal-slot")) {
      return new Date(new Date(target.dataset.dropStart).getTime() + Number(chip.dataset.secondsIntoHour) * 1000);
    }
    return new Date(new Date(target.dataset.dayStart).getTime() + Number(chip.dataset.secondsIntoDay) * 1000);
  }

  function place(chips, start, target) {
    var iso = start.toISOString();
    chips.forEach(function (chip) {
      chip.dataset.start = iso;
      chip.dataset.local = T.toLocalInput(start, tz);
      chip.querySelector(".chip-time").textContent = timeLabel(start);
      if (target) target.appendChild(chip);
      chip.classList.add("moved");
    });
  }

  async function move(chip, start, target, undoable) {
    var group = chip.dataset.group;
    var oldIso = chip.dataset.start;
    var chips = chipsOf(group, oldIso);
    var oldTarget = dropTargetFor(chip);
    var result = await T.api("PUT", "/api/posts/group/" + encodeURIComponent(group) + "/date", { date: start.toISOString() });
    if (!result.ok) {
      T.toast(result.data.message || "The post could not be moved.", { error: true });
      return false;
    }
    place(chips, start, target);
    if (undoable) {
      var label = (target && target.dataset.label ? target.dataset.label.replace(/\s\d\d:00$/, "") + " " : "") + timeLabel(start);
      T.toast("Moved to " + label + ".", {
        action: {
          label: "Undo",
          run: async function () {
            var back = await move(chips[0], new Date(oldIso), oldTarget, false);
            if (back) T.toast("Move undone.");
          }
        }
      });
    }
    return true;
  }

  var dragged = null;
  calendar.addEventListener("dragstart", function (ev) {
    var chip = ev.target.closest && ev.target.closest("[data-movable]");
    if (!chip) { ev.preventDefault(); return; }
    dragged = chip;
    chip.classList.add("dragging");
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", chip.dataset.post);
  });
  calendar.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    calendar.querySelectorAll(".drop-over").forEach(function (el) { el.classList.remove("drop-over"); });
  });
  calendar.addEventListener("dragover", function (ev) {
    var target = dropTargetFor(ev.target);
    if (!dragged || !target) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "move";
    calendar.querySelectorAll(".drop-over").forEach(function (el) { if (el !== target) el.classList.remove("drop-over"); });
    target.classList.add("drop-over");
  });
  calendar.addEventListener("dragleave", function (ev) {
    var target = dropTargetFor(ev.target);
    if (target && !target.contains(ev.relatedTarget)) target.classList.remove("drop-over");
  });
  calendar.addEventListener("drop", function (ev) {
    var target = dropTargetFor(ev.target);
    if (!dragged || !target) return;
    ev.preventDefault();
    target.classList.remove("drop-over");
    var chip = dragged;
    var start = newStartFor(chip, target);
    if (start.toISOString() === new Date(chip.dataset.start).toISOString()) return;
    if (start.getTime() < Date.now() && chip.dataset.state !== "draft" &&
        !window.confirm("This time has passed: the post will be published at once. Move it?")) return;
    move(chip, start, target, true);
  });

  // A double click on an empty slot starts a post at that time.
  calendar.addEventListener("dblclick", function (ev) {
    if (ev.target.closest(".post-chip")) return;
    var target = dropTargetFor(ev.target);
    if (!target) return;
    var start = target.dataset.dropStart || target.dataset.dayStart;
    if (start) location.assign("/compose?date=" + encodeURIComponent(start));
  });

  /* ---- the peek ---------------------------------------------------------------------- */

  var peek = document.getElementById("post-peek");
  var current = null;

  function openPeek(chip) {
    current = chip;
    var d = chip.dataset;
    peek.querySelector("[data-peek-channel]").textContent = d.channelName;
    peek.querySelector("[data-peek-time]").textContent = d.timeLabel;
    var state = peek.querySelector("[data-peek-state]");
    state.textContent = chip.querySelector(".chip-state").textContent;
    state.className = "pill state-" + d.state;
    peek.querySelector("[data-peek-repeat]").textContent = d.repeat ? "· repeats every " + d.repeat + " days" : "";
    peek.querySelector("[data-peek-text]").textContent = d.preview;
    var error = peek.querySelector("[data-peek-error]");
    error.hidden = !d.error;
    error.textContent = d.error ? "The platform said: " + d.error : "";
    var release = peek.querySelector("[data-peek-release]");
    release.hidden = !d.releaseUrl;
    if (d.releaseUrl) release.querySelector("a").href = d.releaseUrl;
    peek.querySelector("[data-peek-open]").href = "/posts/" + encodeURIComponent(d.post);
    var edit = peek.querySelector("[data-peek-edit]");
    edit.href = "/compose?group=" + encodeURIComponent(d.group);
    edit.hidden = d.state === "published";
    var form = peek.querySelector("[data-peek-move]");
    form.hidden = chip.dataset.movable === undefined;
    T.clearErrors(form);
    form.querySelector("input").value = d.local;
    peek.showModal();
  }

  calendar.addEventListener("click", function (ev) {
    var chip = ev.target.closest(".post-chip");
    if (chip) openPeek(chip);
  });
  calendar.addEventListener("keydown", function (ev) {
    var chip = ev.target.closest && ev.target.closest(".post-chip");
    if (chip && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); openPeek(chip); }
  });

  peek.querySelector("[data-peek-move]").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var form = ev.currentTarget;
    var input = form.querySelector("input");
    var start = T.zonedToUtc(input.value, tz);
    if (!start) { T.showErrors(form, { field: "peek-date", message: "Enter a date and time." }); return; }
    var result = await T.api("PUT", "/api/posts/group/" + encodeURIComponent(current.dataset.group) + "/date", { date: start.toISOString() });
    if (!result.ok) { T.showErrors(form, result.data); return; }
    location.reload();
  });

  peek.querySelector("[data-peek-delete]").addEventListener("click", async function () {
    if (!window.confirm("Delete this post on every channel of its group?")) return;
    var result = await T.api("DELETE", "/api/posts/group/" + encodeURIComponent(current.dataset.group));
    if (!result.ok) { T.toast(result.data.message, { error: true }); return; }
    location.reload();
  });
})();
