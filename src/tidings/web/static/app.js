/* Tidings web app: the small amount of JavaScript every page shares.
 *
 * - Tidings.api(): JSON calls to the app API with the CSRF token of the page.
 * - <form data-api="/api/..." data-method="PATCH" data-success="reload">: sends the form as JSON
 *   and shows the API's errors next to the field they name.
 * - <button data-api-action="/api/..." data-method="DELETE" data-confirm="...">: one call.
 * - <select data-api-change="/api/..." data-key="role">: saves on change.
 * - Dialogs, the phone-width menu, copy buttons, toasts, and the browser's time zone.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function api(method, url, body, options) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrf() };
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined && body !== null) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (options && options.signal) init.signal = options.signal;
    var response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      return { ok: false, status: 0, data: { message: "The server could not be reached: " + err.message } };
    }
    var data = null;
    var text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { message: text.slice(0, 300) }; }
    }
    if (!response.ok && (!data || typeof data !== "object")) {
      data = { message: "The request failed (" + response.status + ")" };
    }
    return { ok: response.ok, status: response.status, data: data };
  }

  /* ---- form serialisation ------------------------------------------------------------- */

  function setPath(target, name, value) {
    var parts = name.split(".");
    var node = target;
    for (var i = 0; i < parts.length - 1; i++) {
      if (typeof node[parts[i]] !== "object" || node[parts[i]] === null) node[parts[i]] = {};
      node = node[parts[i]];
    }
    node[parts[parts.length - 1]] = value;
  }

  function serialize(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled || el.name === "csrf_token" || el.dataset.skip !== undefined) return;
      if ((el.type === "radio") && !el.checked) return;
      if (el.type === "checkbox" && el.dataset.array !== undefined) {
        // Several checkboxes of one name make a list of the checked values.
        var list = body[el.name] || (body[el.name] = []);
        if (el.checked) list.push(el.value);
        return;
      }
      var value;
      if (el.type === "checkbox") value = el.checked;
      else if (el.type === "number") value = el.value === "" ? null : Number(el.value);
      else if (el.tagName === "SELECT" && el.multiple) {
        value = Array.prototype.filter.call(el.options, function (o) { return o.selected; })
          .map(function (o) { return o.value; });
      } else value = el.value;
      if (typeof value === "string" && value.trim() === "") {
        if (el.dataset.optional !== undefined) return;
        if (el.dataset.nullable !== undefined) value = null;
      }
      if (el.dataset.json !== undefined && typeof value === "string") {
        try { value = JSON.parse(value); } catch (e) { /* sent as typed: the API names the field */ }
      }
      setPath(body, el.name, value);
    });
    return body;
  }

  /* ---- errors ------------------------------------------------------------------------- */

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach(function (el) { el.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) {
      el.removeAttribute("aria-invalid");
      var ids = (el.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
        return id && id.indexOf("-error") !== id.length - 6;
      });
      if (ids.length) el.setAttribute("aria-describedby", ids.join(" "));
      else el.removeAttribute("aria-describedby");
    });
    var general = form.querySelector(".form-error");
    if (general) { general.hidden = true; general.textContent = ""; }
  }

  function fieldFor(form, name) {
    if (!name) return null;
    var candidates = [name, name.replace(/^body\./, ""), "fields." + name];
    for (var i = 0; i < candidates.length; i++) {
      var el = form.querySelector('[name="' + CSS.escape(candidates[i]) + '"]') ||
        form.querySelector('[data-error-for="' + CSS.escape(candidates[i]) + '"]');
      if (el) return el;
    }
    return null;
  }

  var errorSeq = 0;
  function markField(el, message) {
    var note = document.createElement("p");
    note.className = "field-error";
    note.id = "err" + (++errorSeq) + "-error";
    note.textContent = message;
    el.setAttribute("aria-invalid", "true");
    var described = el.getAttribute("aria-describedby");
    el.setAttribute("aria-describedby", (described ? described + " " : "") + note.id);
    var anchor = el.closest(".field") || el;
    if (anchor === el) el.insertAdjacentElement("afterend", note);
    else anchor.appendChild(note);
  }

  function showErrors(form, data) {
    clearErrors(form);
    data = data || {};
    var placed = false;
    var details = Array.isArray(data.details) && data.details.length
      ? data.details : [{ field: data.field, message: data.message }];
    var first = null;
    details.forEach(function (d) {
      var el = fieldFor(form, d.field);
      if (el) {
        markField(el, d.message || data.message || "Invalid value");
        placed = true;
        first = first || el;
      }
    });
    var general = form.querySelector(".form-error");
    if (!placed || details.length === 0) {
      if (general) {
        general.textContent = data.message || "Something went wrong.";
        general.hidden = false;
      } else {
        toast(data.message || "Something went wrong.", { error: true });
      }
    }
    if (first && typeof first.focus === "function") first.focus();
    else if (general && !general.hidden) general.focus && general.setAttribute("tabindex", "-1");
  }

  /* ---- success ------------------------------------------------------------------------ */

  async function succeed(element, how, data) {
    how = how || "";
    var event = new CustomEvent("tidings:success", { bubbles: true, detail: { data: data, how: how } });
    element.dispatchEvent(event);
    if (event.defaultPrevented) return;
    if (how === "reload") { location.reload(); return; }
    if (how.indexOf("redirect:") === 0) {
      // A new account takes the browser's time zone before its first page is drawn.
      if (element.dataset.api === "/api/auth/register") await rememberTimezone(true);
      location.assign(how.slice(9));
      return;
    }
    if (how.indexOf("message") === 0) {
      var text = how.indexOf(":") > 0 ? how.slice(how.indexOf(":") + 1) : (data && data.message) || "Done.";
      var box = element.querySelector(".form-success");
      if (box) { box.textContent = text; box.hidden = false; } else toast(text);
      if (element.dataset.reset !== undefined && element.reset) element.reset();
      return;
    }
    if (how === "switch-org" && data && data.id) {
      var switched = await api("POST", "/api/orgs/switch", { organization_id: data.id });
      if (switched.ok) location.assign("/channels");
      else toast(switched.data.message, { error: true });
      return;
    }
    if (how === "invite" && data) {
      if (element.reset) element.reset();
      var result = element.querySelector(".form-success");
      if (result) {
        result.innerHTML = "";
        var p = document.createElement("p");
        p.textContent = data.email_sent
          ? "Invite emailed to " + data.email + ". You can also pass on this link:"
          : "Mail is not configured: pass on this link to " + data.email + ":";
        var input = document.createElement("input");
        input.readOnly = true; input.value = data.url; input.className = "mono wide-input";
        input.setAttribute("aria-label", "Invite link");
        result.appendChild(p); result.appendChild(input);
        result.hidden = false;
      }
      return;
    }
    if (how === "api-key" && data && data.api_key) {
      var box2 = document.getElementById("api-key-result");
      var input2 = document.getElementById("api-key-value");
      if (box2 && input2) { input2.value = data.api_key; box2.hidden = false; input2.focus(); input2.select(); }
      return;
    }
    if (how === "duplicated" && data && data.group) {
      location.assign("/compose?group=" + encodeURIComponent(data.group));
      return;
    }
    if (how === "toast") toast("Saved.");
  }

  /* ---- wiring ------------------------------------------------------------------------- */

  document.addEventListener("submit", async function (ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    ev.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    var body = serialize(form);
    var detail = { body: body, cancel: false };
    form.dispatchEvent(new CustomEvent("tidings:serialize", { detail: detail }));
    if (detail.cancel) return;
    var method = (form.dataset.method || "POST").toUpperCase();
    var submit = form.querySelector('[type="submit"]');
    form.setAttribute("aria-busy", "true");
    if (submit) submit.disabled = true;
    try {
      var result = await api(method, form.dataset.api, detail.body);
      if (!result.ok) { showErrors(form, result.data); return; }
      clearErrors(form);
      await succeed(form, form.dataset.success, result.data);
    } finally {
      form.removeAttribute("aria-busy");
      if (submit) submit.disabled = false;
    }
  });

  document.addEventListener("click", async function (ev) {
    var target = ev.target instanceof Element ? ev.target : null;
    if (!target) return;
    var action = target.closest("[data-api-action]");
    if (action) {
      ev.preventDefault();
      if (action.dataset.confirm && !window.confirm(action.dataset.confirm)) return;
      var body = action.dataset.body ? JSON.parse(action.dataset.body) : undefined;
      action.disabled = true;
      var result = await api((action.dataset.method || "POST").toUpperCase(), action.dataset.apiAction, body);
      action.disabled = false;
      if (!result.ok) { toast(result.data.message || "The action failed.", { error: true }); return; }
      await succeed(action, action.dataset.success, result.data);
      return;
    }
    var opener = target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog && !dialog.open) {
        dialog.showModal();
        dialog.dispatchEvent(new CustomEvent("tidings:open", { detail: { opener: opener } }));
      }
      return;
    }
    var closer = target.closest("[data-close-dialog]");
    if (closer) { var d = closer.closest("dialog"); if (d) d.close(); return; }
    var copy = target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.dataset.copy);
      if (!source) return;
      var text = source.value !== undefined ? source.value : source.textContent;
      try { await navigator.clipboard.writeText(text); toast("Copied."); }
      catch (e) { source.select && source.select(); document.execCommand("copy"); toast("Copied."); }
      return;
    }
    var toggle = target.closest(".nav-toggle");
    if (toggle) {
      var open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", String(!open));
      document.body.classList.toggle("nav-open", !open);
    }
  });

  document.addEventListener("change", async function (ev) {
    var el = ev.target;
    if (!(el instanceof Element)) return;
    if (el.matches("[data-api-change]")) {
      var body = {};
      body[el.dataset.key || el.name] = el.value;
      var result = await api((el.dataset.method || "PATCH").toUpperCase(), el.dataset.apiChange, body);
      toast(result.ok ? "Saved." : (result.data.message || "Not saved."), { error: !result.ok });
      return;
    }
    var auto = el.closest("form[data-autosubmit]");
    if (auto && el.tagName === "SELECT") auto.submit();
  });

  /* ---- toasts ------------------------------------------------------------------------- */

  var toastTimer = null;
  function toast(message, options) {
    options = options || {};
    var box = document.getElementById("toast");
    if (!box) { if (options.error) window.alert(message); return; }
    box.innerHTML = "";
    var span = document.createElement("span");
    span.textContent = message;
    box.appendChild(span);
    box.classList.toggle("error", !!options.error);
    if (options.action) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button small";
      button.textContent = options.action.label;
      button.addEventListener("click", function () { box.hidden = true; options.action.run(); });
      box.appendChild(button);
    }
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, options.duration || (options.action ? 10000 : 4000));
  }

  /* ---- time zones --------------------------------------------------------------------- */
  // Times are shown and typed in the user's zone (settings), which may differ from the
  // browser's; Intl does the zone arithmetic.

  var formats = {};
  function zoneParts(date, tz) {
    var fmt = formats[tz] || (formats[tz] = new Intl.DateTimeFormat("en-GB", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit"
    }));
    var out = {};
    fmt.formatToParts(date).forEach(function (p) { if (p.type !== "literal") out[p.type] = Number(p.value); });
    if (out.hour === 24) out.hour = 0;
    return out;
  }

  function offsetMs(date, tz) {
    var p = zoneParts(date, tz);
    var wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    return wall - (date.getTime() - date.getMilliseconds());
  }

  /** "YYYY-MM-DDTHH:MM[:SS]" on the wall clock of ``tz`` -> Date (null when malformed). */
  function zonedToUtc(local, tz) {
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(local || "");
    if (!m) return null;
    var wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    var first = wall - offsetMs(new Date(wall), tz);
    return new Date(wall - offsetMs(new Date(first), tz));
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /** Date -> "YYYY-MM-DDTHH:MM:SS" on the wall clock of ``tz`` (for datetime-local inputs). */
  function toLocalInput(date, tz) {
    var p = zoneParts(date, tz);
    return p.year + "-" + pad(p.month) + "-" + pad(p.day) + "T" + pad(p.hour) + ":" + pad(p.minute) + ":" + pad(p.second);
  }

  function userZone() {
    return document.body.dataset.timezone || "UTC";
  }

  /* ---- page start --------------------------------------------------------------------- */

  async function rememberTimezone(now) {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (now) { if (zone) await api("PATCH", "/api/me", { timezone_name: zone }); return; }
    document.querySelectorAll("[data-browser-timezone]").forEach(function (el) { el.textContent = zone || "unknown"; });
    var body = document.body;
    if (!zone || body.dataset.timezoneSet !== "no") return;
    var result = await api("PATCH", "/api/me", { timezone_name: zone });
    // Times on this page were drawn in UTC; draw them again in the user's zone.
    if (result.ok && zone !== body.dataset.timezone) location.reload();
  }

  function start() {
    document.querySelectorAll(".avatar img").forEach(function (img) {
      var drop = function () { img.remove(); };
      if (img.complete && img.naturalWidth === 0) drop(); else img.addEventListener("error", drop);
    });
    document.querySelectorAll("dialog[data-open-on-load]").forEach(function (d) {
      d.showModal();
      d.dispatchEvent(new CustomEvent("tidings:open", { detail: {} }));
    });
    rememberTimezone();
  }

  // After every deferred script of the page (they add their listeners first).
  var started = false;
  function startOnce() { if (!started) { started = true; start(); } }
  if (document.readyState === "complete") startOnce();
  else {
    document.addEventListener("DOMContentLoaded", startOnce);
    window.addEventListener("load", startOnce);
  }

  window.Tidings = {
    api: api, csrf: csrf, serialize: serialize, showErrors: showErrors, clearErrors: clearErrors,
    toast: toast, succeed: succeed, zoneParts: zoneParts, zonedToUtc: zonedToUtc,
    toLocalInput: toLocalInput, userZone: userZone, pad: pad
  };
})();
