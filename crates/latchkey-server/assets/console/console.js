// latchkey console: the copy button (docs/CONSOLE.md). Loaded from the console's own
// origin; the Content-Security-Policy allows no inline script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      var text = source.value !== undefined ? source.value : source.textContent;
      var status = document.getElementById(button.getAttribute("data-status"));
      var say = function (words) {
        button.textContent = words;
        if (status) status.textContent = words;
      };
      var fallback = function () {
        source.focus();
        if (source.select) source.select();
        say("Selected: press Ctrl+C to copy");
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { say("Copied"); }, fallback);
      } else {
        fallback();
      }
    });
  });
});
