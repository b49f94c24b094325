// The ranking page. All text goes into the page through textContent (never innerHTML): prompts and
// model outputs may hold markup. Every POST carries the session's CSRF token and a submission id made
// here, so a retried request is recognised by the server and stored once.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { me: null, ready: Promise.resolve(null), item: null, ranks: [], picks: [], tie: false, submissionId: null, busy: false };

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  function say(text, bad) {
    $("status").textContent = text;
    $("status").className = bad ? "error" : "";
  }

  async function api(path, body) {
    const opts = { credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      const me = await state.ready;  // the sign-in check brings the CSRF token: a POST before it waits for it
      opts.method = "POST";
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = me ? me.csrf : "";
      opts.body = JSON.stringify(body);
    }
    let last;
    for (let attempt = 0; attempt < 3; attempt++) {  // the same body, the same submission id: safe to resend
      try {
        const r = await fetch(path, opts);
        if (r.status === 401) { window.location.href = "/login"; throw new Error("signed out"); }
        const data = await r.json().catch(() => ({}));
        if (!r.ok) throw Object.assign(new Error(data.error || r.statusText), { final: true, status: r.status });
        return data;
      } catch (e) {
        if (e.final) throw e;
        last = e;
        await new Promise((res) => setTimeout(res, 300 * (attempt + 1)));
      }
    }
    throw last;
  }

  function showProgress(p) {
    if (!p) return;
    $("progress").textContent = `${p.labelled} labelled · ${p.skipped} skipped · ${p.available} left for you`;
  }

  function show(section) {
    ["task", "empty", "history"].forEach((id) => { $(id).hidden = id !== section; });
    $("next-btn").hidden = section !== "history" && !(section === "task" && state.item && state.item.label);
  }

  // ------------------------------------------------------------ the item
  function render(item) {
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();  // keys are shortcuts again
    state.item = item;
    const k = item.shown.length;
    state.ranks = new Array(k).fill(0);
    state.picks = [];
    state.tie = false;
    state.submissionId = newId();
    $("item-id").textContent = item.item_id;
    $("editing").hidden = !item.label;
    $("prompt").textContent = item.prompt;
    $("comment").value = item.label ? item.label.comment || "" : "";
    const list = $("responses");
    list.replaceChildren();
    item.shown.forEach((resp, pos) => {
      const select = el("select", { className: "rank", title: "rank (1 = best)" });
      select.setAttribute("aria-label", `rank of response ${pos + 1}`);
      select.append(el("option", { value: "0", textContent: "—" }));
      for (let r = 1; r <= k; r++) select.append(el("option", { value: String(r), textContent: String(r) }));
      select.addEventListener("change", () => setRank(pos, Number(select.value)));
      const aspects = el("div", { className: "aspects" });
      state.me.aspects.forEach((name) => {
        const a = el("select", { className: "aspect" });
        a.dataset.aspect = name;
        a.setAttribute("aria-label", `${name} of response ${pos + 1}`);
        a.append(el("option", { value: "", textContent: "—" }));
        for (let v = 1; v <= state.me.scale; v++) a.append(el("option", { value: String(v), textContent: String(v) }));
        const prior = item.label && item.label.aspects[name] && item.label.aspects[name][String(resp.index)];
        if (prior) a.value = String(prior);
        aspects.append(el("label", {}, [el("span", { textContent: name }), a]));
      });
      const card = el("li", { className: "card" }, [
        el("div", { className: "head" }, [el("span", { className: "key", textContent: String(pos + 1) }), select]),
        el("pre", { className: "text", textContent: resp.text }),
        aspects,
      ]);
      card.dataset.pos = String(pos);
      list.append(card);
    });
    if (item.label) {  // changing a label: start from the ranks given before
      item.shown.forEach((resp, pos) => { state.ranks[pos] = item.label.ranking[resp.index]; });
      state.picks = state.ranks.map((r, pos) => [r, pos]).sort((a, b) => a[0] - b[0]).map((x) => x[1]);
    }
    paint();
    show("task");
    say("");
  }

  function maxRank() { return Math.max(0, ...state.ranks); }

  function setRank(pos, rank) {
    state.ranks[pos] = rank;
    state.picks = state.picks.filter((p) => p !== pos);
    if (rank > 0) state.picks.push(pos);
    paint();
  }

  function pick(pos) {
    if (pos >= state.ranks.length || state.ranks[pos] > 0) return;
    const top = maxRank();
    state.ranks[pos] = state.tie && top > 0 ? top : top + 1;
    state.tie = false;
    state.picks.push(pos);
    paint();
  }

  function undo() {
    const pos = state.picks.pop();
    if (pos !== undefined) state.ranks[pos] = 0;
    paint();
  }

  function reset() {
    state.ranks.fill(0);
    state.picks = [];
    state.tie = false;
    paint();
  }

  function paint() {
    document.querySelectorAll("#responses .card").forEach((card) => {
      const pos = Number(card.dataset.pos);
      const r = state.ranks[pos];
      card.querySelector("select.rank").value = String(r);
      card.classList.toggle("ranked", r > 0);
      card.classList.toggle("best", r === 1);
    });
    $("status").className = "";
    $("status").textContent = state.tie ? "tie: the next number shares the last rank" : "";
  }

  // The ranking in the item's given order (the server's), dense: ranks 1..m; unranked responses share last place.
  function ranking() {
    const item = state.item;
    const given = new Array(item.shown.length).fill(0);
    item.shown.forEach((resp, pos) => { given[resp.index] = state.ranks[pos]; });
    const last = maxRank() + 1;
    const filled = given.map((r) => (r > 0 ? r : last));
    const levels = Array.from(new Set(filled)).sort((a, b) => a - b);
    return filled.map((r) => levels.indexOf(r) + 1);
  }

  function aspects() {
    const out = {};
    document.querySelectorAll("#responses .card").forEach((card) => {
      const index = state.item.shown[Number(card.dataset.pos)].index;
      card.querySelectorAll("select.aspect").forEach((s) => {
        if (!s.value) return;
        (out[s.dataset.aspect] = out[s.dataset.aspect] || {})[String(index)] = Number(s.value);
      });
    });
    return out;
  }

  async function submit() {
    if (!state.item || state.busy) return;
    if (maxRank() === 0) { say("Rank at least the best response first (press its number).", true); return; }
    state.busy = true;
    try {
      await api("/api/label", {
        item_id: state.item.item_id, submission_id: state.submissionId, ranking: ranking(),
        aspects: aspects(), comment: $("comment").value,
      });
      await next("Saved.");
    } catch (e) {
      say(`Not saved: ${e.message}`, true);
      if (e.status === 409) {  // refused for good (e.g. skipped in another tab): this item cannot be saved, go on
        try { await next(); } catch (_) { /* the message above stays; the next key press tries again */ }
        say(`Not saved: ${e.message}`, true);  // still shown, over the next item
      }
    } finally {
      state.busy = false;
    }
  }

  async function skip() {
    if (!state.item || state.busy || state.item.label) return;
    state.busy = true;
    try {
      await api("/api/skip", { item_id: state.item.item_id, submission_id: state.submissionId });
      await next("Skipped.");
    } catch (e) {
      say(`Not skipped: ${e.message}`, true);
    } finally {
      state.busy = false;
    }
  }

  async function next(message) {
    const r = await api("/api/next");
    showProgress(r.progress);
    if (r.item) render(r.item); else { state.item = null; show("empty"); }
    if (message) say(message);
  }

  // ------------------------------------------------------------ my labels
  async function history() {
    const r = await api("/api/labels");
    const list = $("history-list");
    list.replaceChildren();
    r.labels.forEach((l) => {
      const b = el("button", { type: "button", className: "link", textContent: l.prompt || l.item_id });
      b.addEventListener("click", () => edit(l.item_id));
      list.append(el("li", {}, [b, el("span", { className: "when", textContent: ` ${l.updated_at}` })]));
    });
    if (!r.labels.length) list.append(el("li", { textContent: "No labels yet." }));
    state.item = null;
    show("history");
  }

  async function edit(itemId) {
    const r = await api(`/api/labels/${encodeURIComponent(itemId)}`);
    render(r.item);
  }

  // ------------------------------------------------------------ keys
  document.addEventListener("keydown", (e) => {
    const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(document.activeElement.tagName);
    if (typing) {
      if (e.key === "Escape") document.activeElement.blur();
      else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && state.item) { e.preventDefault(); submit(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key.toLowerCase() === "l") { e.preventDefault(); history(); return; }
    if (!state.item) return;
    if (/^[1-9]$/.test(e.key)) { e.preventDefault(); pick(Number(e.key) - 1); }
    else if (e.key === "=") { e.preventDefault(); state.tie = maxRank() > 0; paint(); }
    else if (e.key === "Enter") { e.preventDefault(); submit(); }
    else if (e.key === "Backspace") { e.preventDefault(); undo(); }
    else if (e.key === "Escape") { e.preventDefault(); reset(); }
    else if (e.key.toLowerCase() === "s") { e.preventDefault(); skip(); }
    else if (e.key.toLowerCase() === "c") { e.preventDefault(); $("comment").focus(); }
  });

  async function start() {
    $("submit").addEventListener("click", submit);
    $("reset").addEventListener("click", reset);
    $("skip").addEventListener("click", skip);
    $("history-btn").addEventListener("click", history);
    $("next-btn").addEventListener("click", () => next(""));
    $("logout").addEventListener("click", async () => {
      try { await api("/logout", {}); } finally { window.location.href = "/login"; }
    });
    const me = api("/api/me");
    state.ready = me.catch(() => null);
    try {
      state.me = await me;
      $("who").textContent = state.me.annotator;
      showProgress(state.me.progress);
      await next("");
    } catch (e) {
      say(`Could not load: ${e.message}`, true);
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
