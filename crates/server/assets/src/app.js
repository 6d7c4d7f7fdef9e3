// shopkeep's own behaviour on top of htmx: no inline script anywhere (the pages' CSP forbids it).
(function () {
  "use strict";

  // Inputs carry aria-invalid while their error text is not empty (also after live checks).
  function syncInvalid(root) {
    (root || document).querySelectorAll(".field-error[data-for]").forEach(function (el) {
      var input = document.getElementById(el.getAttribute("data-for"));
      if (!input) return;
      if (el.textContent.trim()) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    });
  }

  // A request that failed at the network or server level gets a visible, announced message.
  function showError(text) {
    var box = document.getElementById("live-error");
    if (!box) return;
    box.textContent = text || box.getAttribute("data-text");
    box.hidden = false;
    clearTimeout(showError.timer);
    showError.timer = setTimeout(function () { box.hidden = true; }, 8000);
  }

  document.addEventListener("DOMContentLoaded", function () { syncInvalid(); });
  document.addEventListener("htmx:afterSettle", function () { syncInvalid(); });
  document.addEventListener("htmx:oobAfterSwap", function () { syncInvalid(); });
  document.addEventListener("htmx:sendError", function () { showError(); });
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail && e.detail.xhr;
    if (xhr && xhr.status === 403) { window.location.reload(); return; }
    showError();
  });

  // The live stream fell behind: reload so no status change is missed.
  document.addEventListener("htmx:sseMessage", function (e) {
    if (e.detail && e.detail.type === "lagged") window.location.reload();
  });

  // After a successful new order, focus goes back to the first field for the next one.
  document.addEventListener("htmx:afterSwap", function (e) {
    var t = e.detail && e.detail.target;
    if (t && t.id === "new-order") {
      var first = document.getElementById("item_name");
      if (first) first.focus();
    }
  });
})();
