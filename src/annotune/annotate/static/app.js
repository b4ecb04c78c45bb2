// Keyboard shortcuts for the workbench. Elements with data-key="x" are clicked when x is pressed outside a
// text field; Ctrl+Enter (or Cmd+Enter) submits the page's main form from anywhere; Esc leaves a text field.
(function () {
  "use strict";
  function typing(target) {
    return target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && !["radio", "checkbox", "button", "submit"].includes(target.type)));
  }
  function submitMain() {
    var form = document.querySelector("form[data-main-form]");
    if (!form) return;
    var preferred = form.querySelector("[data-ctrl-enter]");
    if (preferred) form.requestSubmit(preferred); else form.requestSubmit();
  }
  // Focus the page's first field here, before the load event, rather than with the autofocus attribute: the
  // browser's autofocus runs at a later rendering step, so it could take the focus back into a text field after
  // a key pressed right after the page loaded (Esc, then a shortcut) had left it.
  var first = document.querySelector("[data-autofocus]");
  if (first && document.activeElement === document.body) first.focus();
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitMain();
      return;
    }
    if (event.key === "Escape" && typing(document.activeElement)) {
      document.activeElement.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "Enter" && event.target.tagName !== "BUTTON" && event.target.tagName !== "A") {
      var form = document.querySelector("form[data-main-form]");
      if (form && !form.querySelector("textarea")) { event.preventDefault(); submitMain(); }
      return;
    }
    var target = document.querySelector('[data-key="' + event.key.toLowerCase() + '"]');
    if (target) {
      event.preventDefault();
      var input = target.querySelector("input");
      if (input) { input.checked = true; input.focus(); } else { target.click(); }
    }
  });
})();
// The task's reservation, counted down: when it runs out, someone else may take the task.
(function () {
  "use strict";
  var lease = document.getElementById("lease");
  if (!lease) return;
  var expires = parseFloat(lease.getAttribute("data-expires")) * 1000;
  function show() {
    var left = Math.floor((expires - Date.now()) / 60000);
    if (left < 0) {
      lease.textContent = "Your reservation has run out: submit now, or another annotator may take this task.";
      lease.classList.add("expired");
      return;
    }
    lease.textContent = "Reserved for you for " + left + " more minute(s).";
    window.setTimeout(show, 15000);
  }
  show();
})();
