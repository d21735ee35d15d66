// The lesson editor's live preview: after a pause in typing, the form is posted to the
// preview endpoints. The HTML lands in a sandboxed iframe (its own strict CSP); the
// subject, the text part and any error come back as JSON.
//
// Drafts: what the writer types is kept in this browser (localStorage) until a save
// succeeds, because a save sent after the session ended goes to the login page and the
// form's text would be lost. A draft names the version it was started from, so one from
// an older version is offered with a warning, never put over newer text unasked. Only
// the lesson's four parts are kept: "preview as" holds a subscriber's address.
(function () {
  var form = document.getElementById("editor");
  if (!form) { return; }
  var frame = document.getElementById("preview-frame");
  var status = document.getElementById("preview-status");
  var offer = document.getElementById("draft-offer");
  var PARTS = ["subject", "preheader", "body_html", "body_text"];
  var DRAFTS = "drip-draft:";
  var key = DRAFTS + form.dataset.draft;
  var pending = null;
  var timer = null;

  function refreshFrame() {
    var saveAction = form.action;
    form.action = form.dataset.preview;
    form.target = "preview-frame";
    form.submit();
    form.action = saveAction;
    form.target = "_self";
  }

  function showParts(data) {
    status.textContent = data.ok ? "Preview up to date" : data.error;
    status.className = data.ok ? "" : "error";
    if (data.ok) {
      document.getElementById("preview-subject").textContent = data.subject;
      document.getElementById("preview-text").textContent = data.text;
    }
  }

  function sessionEnded() {
    var login = document.createElement("a");
    login.href = form.dataset.login;
    login.target = "_blank";
    login.rel = "noopener";
    login.textContent = "Log in again (opens a new tab)";
    status.replaceChildren(
      "Your session has ended. Your changes are kept in this browser. ", login, ", then save here."
    );
    status.className = "error";
  }

  // The frame is posted to only while the session lasts: after it, the answer would be
  // the login page, which refuses to be framed.
  function refresh() {
    var headers = { Accept: "application/json" };
    fetch(form.dataset.previewJson, { method: "POST", body: new FormData(form), headers: headers, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { sessionEnded(); return; }
        refreshFrame();
        return response.json().then(showParts);
      })
      .catch(function () { status.textContent = "Preview unavailable"; });
  }

  function fields() {
    var values = {};
    PARTS.forEach(function (name) { values[name] = form.elements[name].value; });
    return values;
  }

  function read(name) {
    try { return JSON.parse(localStorage.getItem(name)); } catch (e) { return null; }
  }

  function forget(name) {
    try { localStorage.removeItem(name); } catch (e) { /* no storage, so no draft either */ }
  }

  function keep() {
    try {
      localStorage.setItem(key, JSON.stringify({ version: form.dataset.version, saved: Date.now(), fields: fields() }));
    } catch (e) { /* storage full or turned off: the editor works as it did without drafts */ }
  }

  function differs(draft) {
    var now = fields();
    return PARTS.some(function (name) { return draft.fields[name] !== now[name]; });
  }

  function close(keepFields) {
    pending = null;
    offer.hidden = true;
    if (keepFields) { keep(); } else { forget(key); }
    form.elements.subject.focus();
  }

  function offerDraft(draft) {
    var when = new Date(draft.saved).toLocaleString();
    var message = "You have unsaved changes to this lesson from " + when + ", kept in this browser.";
    if (draft.version !== form.dataset.version) {
      message = "You have unsaved changes from " + when + ", kept in this browser, but the lesson " +
        "has been saved since they were started: restoring them replaces the newer text.";
    }
    document.getElementById("draft-message").textContent = message;
    pending = draft;
    offer.hidden = false;
  }

  // A draft as the page shows it needs no offer; one from an older version is then the
  // text of a save since, and is forgotten so that it is not offered over a later one.
  if (form.dataset.savedDraft) { forget(DRAFTS + form.dataset.savedDraft); }
  var stored = read(key);
  if (stored && stored.fields && differs(stored)) {
    offerDraft(stored);
  } else if (stored && stored.version !== form.dataset.version) {
    forget(key);
  }

  document.getElementById("draft-restore").addEventListener("click", function () {
    var draft = pending;
    PARTS.forEach(function (name) { form.elements[name].value = draft.fields[name]; });
    close(true);
    refresh();
  });
  document.getElementById("draft-discard").addEventListener("click", function () { close(false); });

  // While a draft is on offer it stays as it is; a save is the writer's choice of the form's text.
  form.addEventListener("input", function () {
    if (!pending) { keep(); }
    clearTimeout(timer);
    timer = setTimeout(refresh, 500);
  });
  form.addEventListener("submit", keep);

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
    if (!pending) { keep(); }
    refresh();
  });

  refresh();
})();
