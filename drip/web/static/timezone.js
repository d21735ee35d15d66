// Fill the signup form's timezone from the browser, so lessons arrive at a sensible local hour.
// Without script, the form shows a timezone list instead (inside <noscript>).
document.querySelectorAll("input[data-detect-timezone]").forEach(function (field) {
  try { field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { field.value = ""; }
});
