// MLX Hub's pages: copy buttons, local times, tabs, and refused htmx actions shown in words.
// No framework: htmx (from django-htmx) does the fetching and swapping; this file only adds what it cannot.
"use strict";

(function () {
  function toast(text) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast";
    item.setAttribute("role", "alert");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(() => item.remove(), 8000);
  }
  window.mlxhubToast = toast;

  // A refused action (403, 409, 503 …) answers a short plain-text reason: show it, never a raw status alone.
  document.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    const type = xhr.getResponseHeader("Content-Type") || "";
    const text = type.startsWith("text/plain") && xhr.responseText ? xhr.responseText : `The server answered ${xhr.status} ${xhr.statusText}.`;
    toast(text);
  });
  document.addEventListener("htmx:sendError", () => toast("The server could not be reached; is MLX Hub running?"));

  // Copy buttons: <button data-copy="#element-id">.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });

  // Tabs: <div class="tabs" data-tabs><button aria-controls="panel-id">…</button></div>.
  document.addEventListener("click", (event) => {
    const tab = event.target.closest("[data-tabs] > button");
    if (!tab) return;
    const list = tab.parentElement;
    for (const other of list.querySelectorAll("button")) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      const panel = document.getElementById(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !selected;
    }
  });
})();
