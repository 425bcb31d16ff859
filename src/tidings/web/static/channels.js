/* The channels page: choosing a provider, OAuth redirects, credential forms, the page pick
 * and posting times. Every change goes through the channels API. */
(function () {
  "use strict";
  var T = window.Tidings;
  var dialog = document.getElementById("connect-dialog");
  var pickDialog = document.getElementById("pick-dialog");

  function showProvider(identifier) {
    var grid = dialog.querySelector("[data-provider-grid]");
    var gridActions = dialog.querySelector("[data-grid-actions]");
    var shown = null;
    dialog.querySelectorAll("[data-provider-form]").forEach(function (form) {
      var match = form.dataset.providerForm === identifier;
      form.hidden = !match;
      if (match) shown = form;
    });
    grid.hidden = !!shown;
    gridActions.hidden = !!shown;
    dialog.querySelector("[data-grid-help]").hidden = !!shown;
    if (shown) {
      var first = shown.querySelector("input:not([type=hidden]), button[type=submit]") || shown.querySelector("button");
      if (first) first.focus();
    }
  }

  function showGrid() {
    dialog.querySelectorAll("[data-provider-form]").forEach(function (form) { form.hidden = true; });
    dialog.querySelector("[data-provider-grid]").hidden = false;
    dialog.querySelector("[data-grid-actions]").hidden = false;
    dialog.querySelector("[data-grid-help]").hidden = false;
    var first = dialog.querySelector("[data-provider-choice]");
    if (first) first.focus();
  }

  if (dialog) {
    dialog.addEventListener("tidings:open", function (ev) {
      var opener = ev.detail && ev.detail.opener;
      if (opener && opener.dataset.providerChoice) showProvider(opener.dataset.providerChoice);
      else showGrid();
    });
    dialog.addEventListener("click", function (ev) {
      var choice = ev.target.closest("[data-provider-choice]");
      if (choice && dialog.contains(choice)) { showProvider(choice.dataset.providerChoice); return; }
      if (ev.target.closest("[data-back]")) showGrid();
    });

    // OAuth providers: ask the API for the authorization URL and go there; the platform sends
    // the browser back to the API's callback, which lands on this page again.
    dialog.querySelectorAll('[data-connect-kind="oauth"]').forEach(function (form) {
      form.addEventListener("submit", async function (ev) {
        ev.preventDefault();
        var params = new URLSearchParams();
        Array.prototype.forEach.call(form.elements, function (el) {
          if (el.name && el.value.trim()) params.set(el.name, el.value.trim());
        });
        params.set("return_to", "/channels");
        var submit = form.querySelector("[type=submit]");
        if (submit) submit.disabled = true;
        var result = await T.api("GET", "/api/channels/" + encodeURIComponent(form.dataset.providerForm) + "/connect?" + params.toString());
        if (submit) submit.disabled = false;
        if (!result.ok) { T.showErrors(form, result.data); return; }
        location.assign(result.data.url);
      });
    });

    // Credential-field providers answer at once; some still need a page picked.
    dialog.addEventListener("tidings:success", function (ev) {
      if (ev.detail.how !== "connected") return;
      ev.preventDefault();
      var data = ev.detail.data;
      if (data.choices && data.choices.length) {
        dialog.close();
        openPick(data.channel.id, data.choices);
      } else {
        location.assign("/channels?channel=" + encodeURIComponent(data.channel.id));
      }
    });
  }

  /* ---- the page pick ---------------------------------------------------------------- */

  function renderChoices(channelId, choices) {
    var box = pickDialog.querySelector("[data-choices]");
    box.innerHTML = "";
    if (!choices.length) {
      box.innerHTML = '<p class="muted">This account has no page to post to.</p>';
      return;
    }
    var list = document.createElement("ul");
    list.className = "choice-list";
    choices.forEach(function (choice) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button wide choice";
      button.textContent = choice.name + (choice.username ? " (@" + choice.username + ")" : "");
      button.addEventListener("click", async function () {
        button.disabled = true;
        var result = await T.api("POST", "/api/channels/" + encodeURIComponent(channelId) + "/choose", { choice_id: choice.id });
        button.disabled = false;
        if (!result.ok) { showPickError(result.data.message); return; }
        if (result.data.choices && result.data.choices.length) renderChoices(result.data.channel.id, result.data.choices);
        else location.assign("/channels?channel=" + encodeURIComponent(result.data.channel.id));
      });
      li.appendChild(button);
      list.appendChild(li);
    });
    box.appendChild(list);
    var first = list.querySelector("button");
    if (first) first.focus();
  }

  function showPickError(message) {
    var error = pickDialog.querySelector(".form-error");
    error.textContent = message || "Something went wrong.";
    error.hidden = false;
  }

  async function openPick(channelId, choices) {
    if (!pickDialog.open) pickDialog.showModal();
    if (choices) { renderChoices(channelId, choices); return; }
    var result = await T.api("GET", "/api/channels/" + encodeURIComponent(channelId) + "/choices");
    if (!result.ok) { showPickError(result.data.message); return; }
    renderChoices(channelId, result.data);
  }

  if (pickDialog) {
    pickDialog.addEventListener("tidings:open", function () {
      if (pickDialog.dataset.channel) openPick(pickDialog.dataset.channel);
    });
    document.addEventListener("click", function (ev) {
      var pick = ev.target.closest("[data-pick]");
      if (pick) openPick(pick.dataset.pick);
    });
  }

  /* ---- posting times ---------------------------------------------------------------- */

  document.addEventListener("click", function (ev) {
    var add = ev.target.closest("[data-add-slot]");
    if (add) {
      var list = add.closest("[data-slots]").querySelector(".slot-list");
      var n = list.children.length + 1;
      var li = document.createElement("li");
      var id = "slot-new-" + Date.now();
      li.innerHTML = '<label class="visually-hidden"></label><input type="time" data-slot value="09:00">' +
        ' <button type="button" class="button small ghost" data-remove-slot>Remove</button>';
      li.querySelector("label").setAttribute("for", id);
      li.querySelector("label").textContent = "Posting time " + n;
      li.querySelector("input").id = id;
      li.querySelector("button").setAttribute("aria-label", "Remove posting time " + n);
      list.appendChild(li);
      li.querySelector("input").focus();
      return;
    }
    var remove = ev.target.closest("[data-remove-slot]");
    if (remove) {
      var item = remove.closest("li");
      var next = item.nextElementSibling || item.previousElementSibling;
      var fieldset = item.closest("[data-slots]");
      item.remove();
      var focus = next ? next.querySelector("input") : fieldset.querySelector("[data-add-slot]");
      if (focus) focus.focus();
    }
  });

  document.querySelectorAll("form[data-channel-prefs]").forEach(function (form) {
    form.addEventListener("tidings:serialize", function (ev) {
      // The slots are typed in the user's zone; the API keeps minutes after 00:00 UTC.
      var offset = Number(form.dataset.utcOffset || 0);
      var times = [];
      form.querySelectorAll("[data-slot]").forEach(function (input) {
        if (!input.value) return;
        var parts = input.value.split(":");
        var local = Number(parts[0]) * 60 + Number(parts[1]);
        times.push({ time: (((local - offset) % 1440) + 1440) % 1440 });
      });
      ev.detail.body.posting_times = times;
    });
  });
})();
