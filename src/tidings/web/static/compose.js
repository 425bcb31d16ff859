/* The composer: channels, one shared thread with per-channel overrides, media with alt text,
 * live counters with each provider's counting and media rules, tags, signatures, free slots,
 * repetition, and saving through the posts API (which has the last word on every rule). */
(function () {
  "use strict";
  var T = window.Tidings;
  var C = window.TidingsCounting;
  var M = window.TidingsMedia;
  var form = document.getElementById("composer");
  if (!form) return;
  var data = JSON.parse(document.getElementById("composer-data").textContent);
  var tz = data.timezone;
  var channels = {};
  data.channels.forEach(function (c) { channels[c.id] = c; });
  var editing = data.group;

  var state = {
    selected: [],
    shared: [newPart("")],
    overrides: {},
    partIds: {},
    settings: {},
    open: {},
    tags: [],
    attempted: false
  };
  var lastText = null;

  function newPart(content) { return { content: content || "", media: [], delay: 0 }; }

  function clone(parts) {
    return parts.map(function (p) {
      return { content: p.content, delay: p.delay, media: p.media.map(function (m) { return Object.assign({}, m); }) };
    });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function kindOf(media) {
    var mime = (media.mime_type || "").toLowerCase();
    if (media.type === "video" || mime.indexOf("video/") === 0) return "video";
    if (media.type === "image" || mime.indexOf("image/") === 0) return "image";
    return /\.(mp4|mov|webm|m4v|mpeg)(\?|$)/i.test(media.path || "") ? "video" : "image";
  }

  function mimeOf(media) {
    if (media.mime_type) return media.mime_type.toLowerCase();
    var ext = ((media.path || "").split("?")[0].split(".").pop() || "").toLowerCase();
    return { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", gif: "image/gif", webp: "image/webp",
      mp4: "video/mp4", mov: "video/quicktime", webm: "video/webm" }[ext] || "";
  }

  function partFromApi(p) {
    return {
      content: p.content || "",
      delay: p.delay || 0,
      media: (p.image || []).map(function (m) {
        var known = (m.id && data.library && data.library[m.id]) || {};
        return { id: m.id || null, path: m.path, alt: m.alt || "", thumbnail: m.thumbnail || null,
          type: m.type || known.type || null, mime_type: m.mime_type || m.mimeType || known.mime_type || null,
          name: m.name || known.name || null };
      })
    };
  }

  function sameParts(a, b) {
    var key = function (parts) {
      return JSON.stringify(parts.map(function (p) {
        return [p.content, p.delay, p.media.map(function (m) { return [m.path, m.alt || ""]; })];
      }));
    };
    return key(a) === key(b);
  }

  /* ---- starting state --------------------------------------------------------------- */

  var dateInput = form.querySelector("[data-date]");
  var repeatBox = form.querySelector("[data-repeat]");
  var intervalInput = form.querySelector("[data-interval]");

  if (editing) {
    state.shared = editing.posts[0].value.map(partFromApi);
    editing.posts.forEach(function (thread) {
      var id = thread.integration.id;
      if (!channels[id]) return;
      state.selected.push(id);
      state.partIds[id] = thread.value.map(function (p) { return p.id; });
      var settings = Object.assign({}, thread.settings || {});
      delete settings.__type;
      state.settings[id] = settings;
      var parts = thread.value.map(partFromApi);
      if (!sameParts(parts, state.shared)) state.overrides[id] = parts;
    });
    state.tags = (editing.tags || []).map(function (t) { return t.name; });
    dateInput.value = T.toLocalInput(new Date(editing.publish_date), tz);
    if (editing.interval_in_days) { repeatBox.checked = true; intervalInput.value = editing.interval_in_days; }
  } else {
    var auto = data.signatures.filter(function (s) { return s.auto_add; })[0];
    if (auto) state.shared[0].content = "\n\n" + auto.content;
    if (data.date) dateInput.value = T.toLocalInput(new Date(data.date), tz);
    if (data.preselect && channels[data.preselect] && !channels[data.preselect].problem) state.selected.push(data.preselect);
  }

  /* ---- channels ---------------------------------------------------------------------- */

  var picks = form.querySelectorAll("[data-channel-pick]");
  picks.forEach(function (box) {
    box.checked = state.selected.indexOf(box.value) >= 0;
    box.addEventListener("change", function () {
      state.selected = Array.prototype.filter.call(picks, function (b) { return b.checked; })
        .map(function (b) { return b.value; });
      renderOverrides();
      update();
      loadSlots();
    });
  });

  /* ---- parts ------------------------------------------------------------------------- */

  function partsOf(scope) { return scope === "shared" ? state.shared : state.overrides[scope]; }

  function partLabel(scope, index) {
    var base = index === 0 ? "Post text" : "Part " + (index + 1) + " text";
    return scope === "shared" ? base : base + " on " + channels[scope].name;
  }

  function renderParts(scope) {
    var container = form.querySelector('[data-parts="' + CSS.escape(scope) + '"]');
    if (!container) return;
    var parts = partsOf(scope);
    container.innerHTML = "";
    parts.forEach(function (part, index) {
      container.appendChild(partElement(scope, parts, index));
    });
    var add = form.querySelector('[data-add-part="' + CSS.escape(scope) + '"]');
    if (add) add.textContent = parts.length > 1 ? "Add another part" : "Add a part to the thread";
  }

  function partElement(scope, parts, index) {
    var part = parts[index];
    var id = "text-" + scope + "-" + index;
    var wrap = el("div", { class: "part", "data-scope": scope, "data-index": index });
    var head = el("div", { class: "part-head" });
    head.appendChild(el("label", { for: id }, partLabel(scope, index)));
    if (index > 0) {
      var remove = el("button", { type: "button", class: "button small ghost", "aria-label": "Remove part " + (index + 1) + (scope === "shared" ? "" : " on " + channels[scope].name) }, "Remove");
      remove.addEventListener("click", function () {
        parts.splice(index, 1);
        renderParts(scope);
        update();
        var prev = form.querySelector("#text-" + CSS.escape(scope) + "-" + (index - 1));
        if (prev) prev.focus();
      });
      head.appendChild(remove);
    }
    wrap.appendChild(head);
    var text = el("textarea", { id: id, rows: index === 0 ? 6 : 4, "data-text": true, "aria-describedby": id + "-counters" });
    text.value = part.content;
    text.addEventListener("input", function () { part.content = text.value; update(); });
    text.addEventListener("focus", function () { lastText = { scope: scope, index: index, node: text }; });
    wrap.appendChild(text);
    wrap.appendChild(el("div", { class: "counters", id: id + "-counters", "data-counters": true }));

    if (part.media.length) {
      var list = el("ul", { class: "attachments", "aria-label": "Media of " + partLabel(scope, index).replace(" text", "") });
      part.media.forEach(function (media, m) {
        var li = el("li", { class: "attachment" });
        var name = media.name || (media.path || "").split("/").pop() || "media";
        var kind = kindOf(media);
        if (kind === "image" || media.thumbnail) li.appendChild(el("img", { src: media.thumbnail || media.path, alt: "", loading: "lazy" }));
        else li.appendChild(el("span", { class: "attachment-kind" }, "▶"));
        var altId = id + "-alt-" + m;
        var field = el("div", { class: "attachment-alt" });
        field.appendChild(el("label", { for: altId }, "Alt text of " + name));
        var alt = el("input", { id: altId, value: media.alt || "", maxlength: 2000 });
        alt.addEventListener("input", function () { media.alt = alt.value; });
        field.appendChild(alt);
        li.appendChild(field);
        var drop = el("button", { type: "button", class: "button small ghost", "aria-label": "Remove " + name }, "Remove");
        drop.addEventListener("click", function () {
          part.media.splice(m, 1);
          renderParts(scope);
          update();
        });
        li.appendChild(drop);
        list.appendChild(li);
      });
      wrap.appendChild(list);
    }

    var tools = el("div", { class: "part-tools" });
    var addMedia = el("button", { type: "button", class: "button small", "aria-label": "Add media to " + partLabel(scope, index).replace(" text", "").toLowerCase() }, "Add media");
    addMedia.addEventListener("click", function () { openMedia(scope, index); });
    tools.appendChild(addMedia);
    if (index > 0) {
      var delayId = id + "-delay";
      var delayWrap = el("span", { class: "delay" });
      delayWrap.appendChild(el("label", { for: delayId }, "Delay after part " + index + " (minutes)"));
      var delay = el("input", { id: delayId, type: "number", min: 0, max: 43200, value: part.delay || 0 });
      delay.addEventListener("input", function () { part.delay = Math.max(0, parseInt(delay.value, 10) || 0); });
      delayWrap.appendChild(delay);
      tools.appendChild(delayWrap);
    }
    wrap.appendChild(tools);
    wrap.appendChild(el("ul", { class: "part-problems", "data-problems": true }));
    return wrap;
  }

  form.addEventListener("click", function (ev) {
    var add = ev.target.closest("[data-add-part]");
    if (!add) return;
    var scope = add.dataset.addPart;
    partsOf(scope).push(newPart(""));
    renderParts(scope);
    update();
    var created = form.querySelector("#text-" + CSS.escape(scope) + "-" + (partsOf(scope).length - 1));
    if (created) created.focus();
  });

  /* ---- per-channel customizing and settings ------------------------------------------- */

  function resolve(schema, node) {
    if (node && node.$ref) {
      var name = node.$ref.split("/").pop();
      return (schema.$defs || schema.definitions || {})[name] || {};
    }
    return node || {};
  }

  function settingsFields(id) {
    var channel = channels[id];
    var schema = channel.settings_schema || {};
    var props = schema.properties || {};
    var required = schema.required || [];
    var keys = Object.keys(props);
    if (!keys.length) return null;
    var values = state.settings[id] || (state.settings[id] = {});
    var box = el("fieldset", { class: "settings" });
    box.appendChild(el("legend", {}, channel.provider + " settings"));
    keys.forEach(function (key) {
      var prop = resolve(schema, props[key]);
      var options = (prop.anyOf || []).map(function (o) { return resolve(schema, o); });
      var main = prop.enum || prop.type ? prop : (options.filter(function (o) { return o.type !== "null"; })[0] || {});
      var nullable = options.some(function (o) { return o.type === "null"; });
      var label = (props[key].title || prop.title || key).replace(/_/g, " ");
      var fid = "setting-" + id + "-" + key;
      var field = el("div", { class: "field" });
      var input;
      var current = values[key] !== undefined ? values[key] : prop.default;
      if (main.enum) {
        input = el("select", { id: fid, "data-setting": key });
        if (nullable || required.indexOf(key) < 0) input.appendChild(el("option", { value: "" }, "—"));
        main.enum.forEach(function (v) { input.appendChild(el("option", { value: v }, String(v))); });
        input.value = current === undefined || current === null ? "" : String(current);
      } else if (main.type === "boolean") {
        input = el("input", { id: fid, type: "checkbox", "data-setting": key });
        input.checked = !!current;
      } else if (main.type === "integer" || main.type === "number") {
        input = el("input", { id: fid, type: "number", "data-setting": key });
        if (current !== undefined && current !== null) input.value = current;
      } else if (main.type === "string") {
        input = el("input", { id: fid, "data-setting": key, maxlength: main.maxLength || null });
        if (current !== undefined && current !== null) input.value = current;
      } else if (main.type === "array" && (resolve(schema, main.items).type === "string")) {
        input = el("input", { id: fid, "data-setting": key, "data-list": true });
        if (Array.isArray(current)) input.value = current.join(", ");
      } else {
        return;
      }
      var labelEl = el("label", { for: fid }, label.charAt(0).toUpperCase() + label.slice(1) + (required.indexOf(key) >= 0 ? "" : " (optional)"));
      if (main.type === "boolean") { field.className = "field check"; field.appendChild(input); field.appendChild(labelEl); }
      else { field.appendChild(labelEl); field.appendChild(input); }
      if (prop.description || main.description) field.appendChild(el("p", { class: "help" }, prop.description || main.description));
      input.addEventListener("change", function () {
        var value;
        if (input.type === "checkbox") value = input.checked;
        else if (input.type === "number") value = input.value === "" ? null : Number(input.value);
        else if (input.dataset.list !== undefined) value = input.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
        else value = input.value === "" ? null : input.value;
        if (value === null) delete values[key]; else values[key] = value;
      });
      box.appendChild(field);
    });
    return box;
  }

  function renderOverrides() {
    var container = form.querySelector("[data-overrides]");
    container.innerHTML = "";
    state.selected.forEach(function (id) {
      var channel = channels[id];
      var details = el("details", { class: "channel-custom", "data-channel-custom": id });
      if (state.open[id] || state.overrides[id]) details.open = true;
      details.addEventListener("toggle", function () { state.open[id] = details.open; });
      var summary = el("summary", {});
      summary.appendChild(el("span", {}, "Customize for " + channel.name));
      summary.appendChild(el("span", { class: "muted small" }, " · " + channel.provider + (state.overrides[id] ? " · own text" : "")));
      details.appendChild(summary);
      var toggleId = "custom-" + id;
      var toggle = el("div", { class: "field check" });
      var box = el("input", { type: "checkbox", id: toggleId });
      box.checked = !!state.overrides[id];
      toggle.appendChild(box);
      toggle.appendChild(el("label", { for: toggleId }, "Use different text on " + channel.name));
      box.addEventListener("change", function () {
        if (box.checked) state.overrides[id] = clone(state.shared);
        else delete state.overrides[id];
        state.open[id] = true;
        renderOverrides();
        update();
        var first = form.querySelector("#text-" + CSS.escape(id) + "-0");
        (first || form.querySelector("#" + CSS.escape(toggleId))).focus();
      });
      details.appendChild(toggle);
      if (state.overrides[id]) {
        details.appendChild(el("div", { "data-parts": id }));
        details.appendChild(el("button", { type: "button", class: "button small", "data-add-part": id }, "Add a part to the thread"));
      }
      var settings = settingsFields(id);
      if (settings) details.appendChild(settings);
      details.appendChild(el("ul", { class: "part-problems", "data-channel-problems": id }));
      container.appendChild(details);
      if (state.overrides[id]) renderParts(id);
    });
  }

  /* ---- counters and rules ------------------------------------------------------------ */

  function mediaProblems(channel, part, index) {
    var rules = channel.media_rules || {};
    var out = [];
    var images = part.media.filter(function (m) { return kindOf(m) === "image"; });
    var videos = part.media.filter(function (m) { return kindOf(m) === "video"; });
    var name = channel.name + " (" + channel.provider + ")";
    if (index > 0 && rules.replies_allow_media === false && part.media.length) out.push(name + " allows no media in replies");
    if (index === 0 && part.media.length < (rules.min_media || 0)) out.push(name + " needs at least " + rules.min_media + " media file" + (rules.min_media > 1 ? "s" : ""));
    if (images.length && videos.length && !rules.allow_mixed) out.push(name + " cannot mix images and videos in one post");
    if (rules.max_images !== undefined && images.length > rules.max_images) out.push(name + " allows at most " + rules.max_images + " image" + (rules.max_images === 1 ? "" : "s") + " per post");
    if (rules.max_videos !== undefined && videos.length > rules.max_videos) out.push(name + " allows at most " + rules.max_videos + " video" + (rules.max_videos === 1 ? "" : "s") + " per post");
    part.media.forEach(function (m) {
      var mime = mimeOf(m);
      var allowed = kindOf(m) === "video" ? rules.video_mime_types : rules.image_mime_types;
      if (mime && allowed && allowed.length && allowed.indexOf(mime) < 0) out.push(name + " does not accept " + mime + " files");
    });
    return out;
  }

  /** Every reason the post cannot be saved as ``kind`` (drafts only need content). */
  function problems(kind) {
    var out = [];
    if (!state.selected.length) out.push({ where: "channels", message: "Pick at least one channel." });
    var seenEmpty = {};
    state.selected.forEach(function (id) {
      var channel = channels[id];
      var scope = state.overrides[id] ? id : "shared";
      var parts = partsOf(scope);
      parts.forEach(function (part, index) {
        var key = scope + ":" + index;
        if (!part.content.trim() && !part.media.length && !seenEmpty[key]) {
          seenEmpty[key] = true;
          out.push({ scope: scope, index: index, message: "This part is empty.", field: "text" });
        }
      });
      if (kind === "draft") return;
      if (channel.problem) out.push({ where: "channels", channel: id, message: channel.problem });
      if (parts.length > 1 && !channel.supports_replies) {
        out.push({ scope: scope, index: 1, message: channel.name + " (" + channel.provider + ") does not publish threads: use one part or customize it." });
      }
      parts.forEach(function (part, index) {
        var length = C.count(channel.text_counting, part.content);
        if (length > channel.max_length) {
          out.push({ scope: scope, index: index, field: "text", message: "Too long for " + channel.name + " (" + channel.provider + "): " + length + " of " + channel.max_length + " characters." });
        }
        mediaProblems(channel, part, index).forEach(function (message) {
          out.push({ scope: scope, index: index, field: "media", message: message + "." });
        });
      });
    });
    return out;
  }

  function renderCounters() {
    form.querySelectorAll(".part").forEach(function (node) {
      var scope = node.dataset.scope;
      var part = partsOf(scope) && partsOf(scope)[Number(node.dataset.index)];
      var box = node.querySelector("[data-counters]");
      if (!part || !box) return;
      var ids = scope === "shared"
        ? state.selected.filter(function (id) { return !state.overrides[id]; })
        : [scope];
      box.innerHTML = "";
      if (!ids.length && scope === "shared" && state.selected.length) {
        box.appendChild(el("span", { class: "muted small" }, "Every channel has its own text."));
      }
      ids.forEach(function (id) {
        var channel = channels[id];
        var length = C.count(channel.text_counting, part.content);
        var over = length > channel.max_length;
        var near = !over && length > channel.max_length * 0.9;
        var counter = el("span", { class: "counter" + (over ? " over" : near ? " near" : ""), "data-counter-for": id },
          channel.name + " " + length + "/" + channel.max_length);
        counter.title = channel.provider + " counts " + ({ x_weighted: "links as 23 and wide characters as 2", mastodon: "links as 23 characters", graphemes: "characters as you see them", utf16: "emoji as 2" }[channel.text_counting] || "characters");
        box.appendChild(counter);
      });
    });
  }

  function renderProblems(list) {
    form.querySelectorAll("[data-problems], [data-channel-problems]").forEach(function (ul) { ul.innerHTML = ""; });
    form.querySelectorAll("textarea[data-text]").forEach(function (t) { t.removeAttribute("aria-invalid"); });
    var channelBox = form.querySelector('[data-error-for="channels"]');
    channelBox.innerHTML = "";
    list.forEach(function (problem) {
      if (problem.where === "channels") {
        if (state.attempted || problem.channel) channelBox.appendChild(el("p", { class: "field-error" }, problem.message));
        return;
      }
      if (problem.where === "settings") {
        var ul = form.querySelector('[data-channel-problems="' + CSS.escape(problem.channel) + '"]');
        if (ul) ul.appendChild(el("li", { class: "field-error" }, problem.message));
        return;
      }
      if (problem.where === "date") return;
      var node = form.querySelector('.part[data-scope="' + CSS.escape(problem.scope) + '"][data-index="' + problem.index + '"]');
      if (!node) return;
      if (problem.message === "This part is empty." && !state.attempted) return;
      node.querySelector("[data-problems]").appendChild(el("li", { class: "field-error" }, problem.message));
      if (problem.field === "text") node.querySelector("textarea").setAttribute("aria-invalid", "true");
    });
  }

  var lastKind = "schedule";
  function update() {
    renderCounters();
    var list = problems(lastKind);
    renderProblems(list);
    if (state.attempted) showSummary(list, false);
  }

  var summary = form.querySelector("[data-summary]");
  function showSummary(list, focus) {
    if (!list.length) { summary.hidden = true; summary.innerHTML = ""; return; }
    summary.innerHTML = "";
    summary.appendChild(el("p", {}, "Fix " + (list.length === 1 ? "this" : "these") + " before saving:"));
    var ul = el("ul", {});
    list.slice(0, 8).forEach(function (p) { ul.appendChild(el("li", {}, p.message)); });
    summary.appendChild(ul);
    summary.hidden = false;
    if (focus) summary.focus();
  }

  /* ---- media ------------------------------------------------------------------------- */

  var mediaDialog = document.getElementById("media-dialog");
  var library = mediaDialog.querySelector("[data-library]");
  var attach = mediaDialog.querySelector("[data-attach]");
  var more = mediaDialog.querySelector("[data-more]");
  var target = null;
  var picked = [];
  var known = {};
  var libraryPage = 1;

  function syncAttach() {
    attach.disabled = !picked.length;
    attach.textContent = picked.length ? "Attach " + picked.length : "Attach";
  }

  function libraryItem(media, selected) {
    known[media.id] = media;
    var li = el("li", {});
    var button = el("button", { type: "button", class: "media-pick", "aria-pressed": selected ? "true" : "false", "data-media": media.id });
    if (media.type === "image" || media.thumbnail) button.appendChild(el("img", { src: media.thumbnail || media.path, alt: "", loading: "lazy" }));
    else button.appendChild(el("span", { class: "attachment-kind" }, media.type === "video" ? "▶" : "PDF"));
    button.appendChild(el("span", { class: "media-name" }, media.name));
    button.addEventListener("click", function () {
      var on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(on));
      if (on) picked.push(media.id); else picked = picked.filter(function (x) { return x !== media.id; });
      syncAttach();
    });
    if (selected) picked.push(media.id);
    li.appendChild(button);
    return li;
  }

  async function loadLibrary(page) {
    try {
      var result = await M.list(page, 24);
      if (page === 1) library.innerHTML = "";
      result.items.forEach(function (m) { library.appendChild(libraryItem(m, false)); });
      if (!result.items.length && page === 1) library.appendChild(el("li", { class: "muted" }, "The library is empty: upload a file."));
      libraryPage = result.page;
      more.hidden = result.page >= result.pages;
    } catch (err) {
      library.innerHTML = "";
      library.appendChild(el("li", { class: "field-error" }, err.message));
    }
  }

  function openMedia(scope, index) {
    target = { scope: scope, index: index };
    picked = [];
    syncAttach();
    mediaDialog.querySelector("[data-progress]").innerHTML = "";
    mediaDialog.showModal();
    library.innerHTML = "";
    library.appendChild(el("li", { class: "muted" }, "Loading…"));
    loadLibrary(1);
  }

  more.addEventListener("click", function () { loadLibrary(libraryPage + 1); });

  mediaDialog.querySelector("[data-upload]").addEventListener("change", function (ev) {
    var files = Array.prototype.slice.call(ev.target.files || []);
    ev.target.value = "";
    var progress = mediaDialog.querySelector("[data-progress]");
    files.forEach(function (file) {
      var row = M.progressRow(progress, file);
      M.upload(file, { onProgress: row.progress }).then(function (media) {
        row.done();
        var empty = library.querySelector("li.muted");
        if (empty) empty.remove();
        library.insertBefore(libraryItem(media, true), library.firstChild);
        syncAttach();
      }, function (err) { row.failed(err.message); });
    });
  });

  attach.addEventListener("click", function () {
    var parts = partsOf(target.scope);
    var part = parts && parts[target.index];
    if (!part) return;
    var before = part.media.length;
    picked.forEach(function (id) {
      var m = known[id];
      if (!m) return;
      part.media.push({ id: m.id, path: m.path, alt: m.alt || "", thumbnail: m.thumbnail || null,
        type: m.type, mime_type: m.mime_type, name: m.name });
    });
    mediaDialog.close();
    renderParts(target.scope);
    update();
    var alt = form.querySelector("#text-" + CSS.escape(target.scope) + "-" + target.index + "-alt-" + before);
    if (alt) alt.focus();
  });

  /* ---- tags, signatures -------------------------------------------------------------- */

  var tagInput = form.querySelector("[data-tag-input]");
  var tagList = form.querySelector("[data-tags]");
  function renderTags() {
    tagList.innerHTML = "";
    state.tags.forEach(function (name, i) {
      var li = el("li", { class: "tag-chip" });
      li.appendChild(el("span", {}, name));
      var remove = el("button", { type: "button", class: "button small ghost", "aria-label": "Remove tag " + name }, "×");
      remove.addEventListener("click", function () { state.tags.splice(i, 1); renderTags(); tagInput.focus(); });
      li.appendChild(remove);
      tagList.appendChild(li);
    });
  }
  function addTag() {
    var name = tagInput.value.trim();
    if (!name) return;
    if (!state.tags.some(function (t) { return t.toLowerCase() === name.toLowerCase(); })) state.tags.push(name.slice(0, 100));
    tagInput.value = "";
    renderTags();
  }
  form.querySelector("[data-add-tag]").addEventListener("click", addTag);
  tagInput.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { ev.preventDefault(); addTag(); } });

  var signatureButton = form.querySelector("[data-insert-signature]");
  if (signatureButton) {
    signatureButton.addEventListener("click", function () {
      var id = form.querySelector("[data-signature]").value;
      var signature = data.signatures.filter(function (s) { return s.id === id; })[0];
      if (!signature) return;
      var where = lastText && document.body.contains(lastText.node) ? lastText : { scope: "shared", index: 0, node: form.querySelector("#text-shared-0") };
      var node = where.node;
      var part = partsOf(where.scope)[where.index];
      var at = node.selectionStart === undefined ? node.value.length : node.selectionEnd;
      var before = node.value.slice(0, at);
      var insert = (before && !/\n$/.test(before) ? "\n" : "") + signature.content;
      node.value = before + insert + node.value.slice(at);
      part.content = node.value;
      node.focus();
      node.selectionStart = node.selectionEnd = at + insert.length;
      update();
    });
  }

  /* ---- free slots -------------------------------------------------------------------- */

  var slotList = form.querySelector("[data-slots]");
  var setSelect = form.querySelector("[data-set]");
  var slotTimer = null;
  function loadSlots() {
    clearTimeout(slotTimer);
    slotTimer = setTimeout(async function () {
      var ids = state.selected.slice(0, 6);
      if (!ids.length) {
        slotList.innerHTML = "";
        slotList.appendChild(el("li", { class: "muted small" }, "Pick a channel to see its next free slot."));
        return;
      }
      var set = setSelect && setSelect.value ? "&set=" + encodeURIComponent(setSelect.value) : "";
      var answers = await Promise.all(ids.map(function (id) {
        return T.api("GET", "/api/posts/find-slot?integration=" + encodeURIComponent(id) + set);
      }));
      slotList.innerHTML = "";
      answers.forEach(function (result, i) {
        var channel = channels[ids[i]];
        var li = el("li", {});
        if (!result.ok) { li.appendChild(el("span", { class: "muted small" }, channel.name + ": " + (result.data.message || "no free slot"))); slotList.appendChild(li); return; }
        var when = new Date(result.data.date);
        var p = T.zoneParts(when, tz);
        var label = new Intl.DateTimeFormat("en-GB", { timeZone: tz, weekday: "short", day: "numeric", month: "short" }).format(when) + ", " + T.pad(p.hour) + ":" + T.pad(p.minute);
        var button = el("button", { type: "button", class: "button small", "data-slot-date": when.toISOString() }, "Use " + label);
        button.setAttribute("aria-label", "Use the next free slot of " + channel.name + ": " + label);
        button.addEventListener("click", function () {
          dateInput.value = T.toLocalInput(when, tz).slice(0, 16);
          dateInput.dispatchEvent(new Event("input", { bubbles: true }));
          T.toast("Date set to " + label + ".");
        });
        li.appendChild(button);
        li.appendChild(el("span", { class: "muted small" }, " " + channel.name));
        slotList.appendChild(li);
      });
    }, 150);
  }
  if (setSelect) setSelect.addEventListener("change", loadSlots);

  /* ---- saving ------------------------------------------------------------------------ */

  function request(kind, republish) {
    var date = dateInput.value ? T.zonedToUtc(dateInput.value, tz) : null;
    var body = {
      type: kind,
      timezone: tz,
      tags: state.tags.map(function (t) { return { value: t, label: t }; }),
      inter: repeatBox.checked ? Math.max(1, parseInt(intervalInput.value, 10) || 1) : null,
      posts: state.selected.map(function (id) {
        var parts = state.overrides[id] || state.shared;
        var ids = state.partIds[id] || [];
        return {
          integration: { id: id },
          settings: Object.assign({ __type: channels[id].identifier }, state.settings[id] || {}),
          value: parts.map(function (p, j) {
            var part = {
              content: p.content,
              delay: j ? (parseInt(p.delay, 10) || 0) : 0,
              image: p.media.map(function (m) {
                return { id: m.id || null, path: m.path, alt: m.alt || null, thumbnail: m.thumbnail || null };
              })
            };
            if (ids[j]) part.id = ids[j];
            return part;
          })
        };
      })
    };
    if (date && kind !== "now") body.date = date.toISOString();
    if (republish) body.republish = true;
    return body;
  }

  function serverProblems(error) {
    var list = [];
    var violations = Array.isArray(error.violations) && error.violations.length ? error.violations
      : [{ field: error.field, message: error.message, channel: error.channel }];
    violations.forEach(function (v) {
      var match = /^posts\[(\d+)\](?:\.value\[(\d+)\]\.(content|image)|\.(settings)|\.integration)/.exec(v.field || "");
      if (match) {
        var id = state.selected[Number(match[1])];
        if (match[4]) { list.push({ where: "settings", channel: id, message: v.message }); state.open[id] = true; return; }
        if (match[2] !== undefined) {
          list.push({ scope: state.overrides[id] ? id : "shared", index: Number(match[2]), field: match[3] === "content" ? "text" : "media", message: v.message });
          return;
        }
        list.push({ where: "channels", channel: id, message: v.message });
        return;
      }
      if (v.field === "date") { list.push({ where: "date", message: v.message }); return; }
      list.push({ where: "general", message: v.message || "The post could not be saved." });
    });
    return list;
  }

  var saving = false;
  async function save(kind) {
    if (saving) return;
    lastKind = kind;
    state.attempted = true;
    var list = problems(kind);
    T.clearErrors(form);
    if (kind === "schedule" && !dateInput.value) {
      list.push({ where: "date", message: "Pick a date and time, or use a free slot." });
    } else if (dateInput.value && !T.zonedToUtc(dateInput.value, tz)) {
      list.push({ where: "date", message: "The date is not valid." });
    }
    renderProblems(list);
    var dateProblem = list.filter(function (p) { return p.where === "date"; })[0];
    if (dateProblem) T.showErrors(form, { field: "date", message: dateProblem.message });
    if (list.length) { showSummary(list, true); return; }
    showSummary([], false);

    var due = dateInput.value ? T.zonedToUtc(dateInput.value, tz) : null;
    if (kind === "schedule" && due && due.getTime() < Date.now() - 60000 &&
        !window.confirm("This date has passed: the post will be published at once. Continue?")) return;
    var republish = false;
    if (editing && editing.state === "PUBLISHED" && kind !== "draft") {
      if (!window.confirm("This post was published already. Publish it again?")) return;
      republish = true;
    }
    saving = true;
    form.setAttribute("aria-busy", "true");
    var body = request(kind, republish);
    var result = editing
      ? await T.api("PUT", "/api/posts/group/" + encodeURIComponent(editing.group), body)
      : await T.api("POST", "/api/posts", body);
    saving = false;
    form.removeAttribute("aria-busy");
    if (!result.ok) {
      var server = serverProblems(result.data || {});
      renderProblems(server);
      var onDate = server.filter(function (p) { return p.where === "date"; })[0];
      if (onDate) T.showErrors(form, { field: "date", message: onDate.message });
      showSummary(server, true);
      return;
    }
    var when = body.date ? new Date(body.date) : new Date();
    var day = T.toLocalInput(when, tz).slice(0, 10);
    location.assign("/calendar?view=week&date=" + day + "&saved=" + kind);
  }

  form.addEventListener("submit", function (ev) { ev.preventDefault(); save("schedule"); });
  form.querySelectorAll('[data-submit]:not([type="submit"])').forEach(function (button) {
    button.addEventListener("click", function () { save(button.dataset.submit); });
  });

  /* ---- go ---------------------------------------------------------------------------- */

  renderParts("shared");
  renderOverrides();
  renderTags();
  update();
  loadSlots();
})();
