// Fill the signup form's timezone from the browser, so lessons arrive at a sensible local hour.
document.querySelectorAll("input[name=timezone]").forEach(function (field) {
  try { field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { field.value = ""; }
});
