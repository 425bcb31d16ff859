/* Media uploads with progress (XMLHttpRequest: fetch reports no upload progress) and the
 * library listing, shared by the composer and the media page. */
(function () {
  "use strict";

  /** Upload ``file`` to the library; ``onProgress(fraction)`` as it goes. Resolves to the
   * media (as /api/media answers it); rejects with the API's error message. */
  function upload(file, options) {
    options = options || {};
    return new Promise(function (resolve, reject) {
      var form = new FormData();
      form.append("file", file, file.name);
      if (options.alt) form.append("alt", options.alt);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/media");
      xhr.setRequestHeader("X-CSRF-Token", window.Tidings.csrf());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (ev) {
        if (ev.lengthComputable && options.onProgress) options.onProgress(ev.loaded / ev.total);
      });
      xhr.addEventListener("load", function () {
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        if (xhr.status >= 200 && xhr.status < 300 && data) { resolve(data); return; }
        reject(new Error((data && data.message) || ("The upload failed (" + xhr.status + ")")));
      });
      xhr.addEventListener("error", function () { reject(new Error("The server could not be reached.")); });
      xhr.send(form);
    });
  }

  /** One page of the library, newest first. */
  async function list(page, perPage) {
    var result = await window.Tidings.api("GET", "/api/media?page=" + (page || 1) + "&per_page=" + (perPage || 24));
    if (!result.ok) throw new Error(result.data.message || "The library could not be loaded.");
    return result.data;
  }

  /** A row of the upload list: file name, a progress bar and its state. */
  function progressRow(container, file) {
    var li = document.createElement("li");
    var name = document.createElement("span");
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 1; bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    var state = document.createElement("span");
    state.className = "muted small";
    state.textContent = "Uploading…";
    li.appendChild(name); li.appendChild(bar); li.appendChild(state);
    container.appendChild(li);
    return {
      progress: function (fraction) { bar.value = fraction; },
      done: function () { bar.value = 1; state.textContent = "Uploaded"; li.classList.add("done"); },
      failed: function (message) { state.textContent = message; state.className = "field-error"; li.classList.add("failed"); }
    };
  }

  window.TidingsMedia = { upload: upload, list: list, progressRow: progressRow };
})();
