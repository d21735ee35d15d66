// The lesson editor's live preview: after a pause in typing, the form is posted to the
// preview endpoints. The HTML lands in a sandboxed iframe (its own strict CSP); the
// subject, the text part and any error come back as JSON.
(function () {
  var form = document.getElementById("editor");
  if (!form) { return; }
  var frame = document.getElementById("preview-frame");
  var status = document.getElementById("preview-status");
  var timer = null;

  function refreshFrame() {
    var saveAction = form.action;
    form.action = form.dataset.preview;
    form.target = "preview-frame";
    form.submit();
    form.action = saveAction;
    form.target = "_self";
  }

  function refreshParts() {
    fetch(form.dataset.previewJson, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        status.textContent = data.ok ? "Preview up to date" : data.error;
        status.className = data.ok ? "" : "error";
        if (data.ok) {
          document.getElementById("preview-subject").textContent = data.subject;
          document.getElementById("preview-text").textContent = data.text;
        }
      })
      .catch(function () { status.textContent = "Preview unavailable"; });
  }

  function refresh() { refreshFrame(); refreshParts(); }

  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 500);
  });

  document.querySelectorAll("[data-width]").forEach(function (button) {
    button.addEventListener("click", function () {
      frame.className = button.dataset.width;
      document.querySelectorAll("[data-width]").forEach(function (other) {
        other.setAttribute("aria-pressed", String(other === button));
      });
    });
  });

  document.getElementById("generate-text").addEventListener("click", function () {
    var doc = new DOMParser().parseFromString(form.body_html.value, "text/html");
    doc.querySelectorAll("h1, h2, h3").forEach(function (h) { h.textContent = h.textContent + "\n" + "=".repeat(h.textContent.length); });
    doc.querySelectorAll("li").forEach(function (li) { li.textContent = "- " + li.textContent; });
    var blocks = Array.prototype.map.call(doc.body.children, function (el) { return el.textContent.trim(); });
    form.body_text.value = blocks.filter(Boolean).join("\n\n");
    refresh();
  });

  refresh();
})();
