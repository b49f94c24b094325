// Add an annotator while the app runs (the CLI cannot: the app holds the project). Text via textContent only.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = "";
  let ready = null;  // the sign-in check that brings the CSRF token: a click before it ends waits for it

  async function add() {
    $("status").textContent = "";
    $("made").hidden = true;
    await ready;
    const r = await fetch("/admin/api/annotators", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ name: $("name").value.trim(), rotate: $("rotate").checked }),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { $("status").textContent = data.error || r.statusText; $("status").className = "error"; return; }
    $("who").textContent = data.name;
    $("token").textContent = data.token;
    $("made").hidden = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    ready = (async () => {
      const r = await fetch("/admin/api/me", { credentials: "same-origin" });
      if (r.status === 401) { window.location.href = "/login"; return; }
      csrf = (await r.json()).csrf;
    })();
    $("add").addEventListener("click", add);
  });
})();
