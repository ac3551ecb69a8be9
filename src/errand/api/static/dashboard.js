// errand admin dashboard: plain JavaScript, no build step.
// Every value from the API is written with textContent, never parsed as HTML.
(() => {
  "use strict";

  const TOKEN_KEY = "errand.adminToken";
  const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
  const JOB_LIMIT = 20;
  const DLQ_LIMIT = 50;
  const CONFIRM_MS = 4000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $("login"), loginForm: $("login-form"), token: $("token"), loginError: $("login-error"),
    app: $("app"), live: $("live"), signOut: $("sign-out"),
    workersSummary: $("workers-summary"), workers: $("workers"),
    jobsRows: $("jobs-rows"), jobsEmpty: $("jobs-empty"), jobsQueue: $("jobs-queue"),
    dlqRows: $("dlq-rows"), dlqEmpty: $("dlq-empty"), dlqTotal: $("dlq-total"),
    dialog: $("job-dialog"), jobTitle: $("job-title"), jobBody: $("job-body"), jobClose: $("job-close"),
    toast: $("toast"),
  };

  const state = { timer: null, generation: 0, openJobId: null, confirmDelete: null, rendered: {}, toastTimer: null };

  class AuthError extends Error {}

  // --- small helpers ------------------------------------------------------
  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of [].concat(children)) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function cell(label, content, props = {}) {
    return el("td", { "data-label": label, ...props }, content);
  }

  function statusBadge(status) {
    return el("span", { class: `status status-${status}`, text: status, "data-status": status });
  }

  function shortId(id) {
    return id.length > 18 ? `${id.slice(0, 12)}…${id.slice(-4)}` : id;
  }

  function clock(iso) {
    if (!iso) return "–";
    const when = new Date(iso);
    const today = new Date().toDateString() === when.toDateString();
    return today ? when.toLocaleTimeString() : when.toLocaleString();
  }

  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  function toast(message, bad = false) {
    ui.toast.textContent = message;
    ui.toast.classList.toggle("bad", bad);
    ui.toast.hidden = false;
    clearTimeout(state.toastTimer);
    state.toastTimer = setTimeout(() => { ui.toast.hidden = true; }, 3500);
  }

  // Skip re-rendering a part whose data did not change: keeps focus and hover stable.
  function changed(part, data) {
    const json = JSON.stringify(data);
    if (state.rendered[part] === json) return false;
    state.rendered[part] = json;
    return true;
  }

  // --- API ---------------------------------------------------------------
  async function api(path, options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new AuthError("signed out");
    const reply = await fetch(path, {
      ...options,
      headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    if (reply.status === 204) return null;
    const body = await reply.json().catch(() => ({}));
    if (reply.status === 401 || reply.status === 403) {
      throw new AuthError(body.detail || `the token was refused (${reply.status})`);
    }
    if (!reply.ok) {
      const error = new Error(body.detail || `${reply.status} ${reply.statusText}`);
      error.status = reply.status;
      throw error;
    }
    return body;
  }

  // --- sign in / out -----------------------------------------------------
  function showLogin(message) {
    stopRefresh();
    sessionStorage.removeItem(TOKEN_KEY);
    state.rendered = {};
    if (ui.dialog.open) ui.dialog.close();
    ui.app.hidden = true;
    ui.live.hidden = true;
    ui.signOut.hidden = true;
    ui.login.hidden = false;
    ui.loginError.hidden = !message;
    ui.loginError.textContent = message || "";
    ui.token.value = "";
    ui.token.focus();
  }

  function showApp() {
    ui.login.hidden = true;
    ui.app.hidden = false;
    ui.live.hidden = false;
    ui.signOut.hidden = false;
  }

  ui.loginForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = ui.token.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await api("/admin/queues");
    } catch (err) {
      showLogin(err instanceof AuthError ? err.message : `Cannot reach the API: ${err.message}`);
      return;
    }
    showApp();
    refresh();
  });

  ui.signOut.addEventListener("click", () => showLogin(""));

  // --- live refresh ------------------------------------------------------
  function stopRefresh() {
    clearTimeout(state.timer);
    state.generation += 1;  // an in-flight refresh will not reschedule
    state.timer = null;
  }

  // One refresh chain at a time: a newer call (a click) makes an older one stop rescheduling.
  async function refresh() {
    stopRefresh();
    const generation = ++state.generation;
    const queue = ui.jobsQueue.value;
    const jobsPath = `/admin/jobs?limit=${JOB_LIMIT}` + (queue ? `&queue=${encodeURIComponent(queue)}` : "");
    try {
      const [queues, jobs, dlq] = await Promise.all([
        api("/admin/queues"), api(jobsPath), api(`/admin/dlq?limit=${DLQ_LIMIT}`),
      ]);
      if (generation !== state.generation) return;  // a newer refresh took over
      renderQueues(queues);
      renderJobs(jobs.items);
      renderDlq(dlq);
      if (state.openJobId) await refreshJob();
      ui.live.className = "live ok";
      ui.live.replaceChildren("Live", el("span", {
        class: "live-time", text: `· ${new Date().toLocaleTimeString()}`,
      }));
    } catch (err) {
      if (err instanceof AuthError) { showLogin(err.message); return; }
      ui.live.className = "live down";
      ui.live.textContent = `Connection problem: ${err.message}`;
    }
    if (generation === state.generation && !document.hidden && !ui.app.hidden) {
      state.timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !ui.app.hidden && state.timer === null) refresh();
  });
  ui.jobsQueue.addEventListener("change", () => refresh());

  // --- queues and workers ------------------------------------------------
  function renderQueues(data) {
    for (const queue of data.queues) {
      const card = document.querySelector(`[data-queue="${CSS.escape(queue.name)}"]`);
      if (!card) continue;
      for (const dd of card.querySelectorAll("[data-count]")) {
        const value = Number(queue[dd.dataset.count] ?? 0);
        dd.textContent = value.toLocaleString();
        dd.classList.toggle("zero", value === 0);
      }
      const workers = card.querySelector("[data-field=workers]");
      workers.textContent = `${queue.workers} worker${queue.workers === 1 ? "" : "s"}`;
    }
    const live = data.workers || [];
    ui.workersSummary.textContent =
      `${live.length} live worker process${live.length === 1 ? "" : "es"}`;
    if (!changed("workers", live.map((w) => [w.id, w.queues]))) {
      for (const item of ui.workers.children) {
        const worker = live.find((w) => w.id === item.dataset.workerId);
        if (worker) item.querySelector(".seen").textContent = ago(worker.lastSeen);
      }
      return;
    }
    ui.workers.replaceChildren(...live.map((w) => el("li", { "data-worker-id": w.id, title: w.id }, [
      el("b", { text: `pid ${w.pid ?? "?"}` }), ` on ${w.host ?? "?"} · ${w.queues.join(", ")} · seen `,
      el("span", { class: "seen", text: ago(w.lastSeen) }),
    ])));
  }

  // --- recent jobs -------------------------------------------------------
  function renderJobs(items) {
    if (!changed("jobs", items)) return;
    ui.jobsEmpty.hidden = items.length > 0;
    ui.jobsRows.replaceChildren(...items.map((job) => {
      const open = () => openJob(job.jobId);
      return el("tr", {
        class: "clickable", tabindex: "0", "data-job-id": job.jobId, title: job.jobId,
        onclick: open, onkeydown: (e) => { if (e.key === "Enter") open(); },
      }, [
        cell("Job", el("span", { class: "job-id", text: shortId(job.jobId) })),
        cell("Queue", job.queue),
        cell("Name", job.name || "–"),
        cell("Status", statusBadge(job.status)),
        cell("Attempts", `${job.attemptsMade} / ${job.maxAttempts}`),
        cell("Created", clock(job.createdAt), { title: job.createdAt || "" }),
      ]);
    }));
  }

  // --- dead-letter queue -------------------------------------------------
  function renderDlq(page) {
    ui.dlqTotal.textContent = page.total.toLocaleString();
    if (!changed("dlq", [page.items, state.confirmDelete])) return;
    ui.dlqEmpty.hidden = page.items.length > 0;
    ui.dlqRows.replaceChildren(...page.items.map((item) => el("tr", { "data-job-id": item.jobId }, [
      cell("Job", el("button", {
        class: "button link job-id", type: "button", text: shortId(item.jobId), title: item.jobId,
        onclick: () => openJob(item.jobId),
      })),
      cell("Queue", item.queue),
      cell("Failure", item.failedReason || "–", { class: "reason" }),
      cell("Attempts", String(item.attemptsMade)),
      cell("Failed", clock(item.failedAt), { title: item.failedAt || "" }),
      el("td", { class: "actions" }, actionButtons(item.jobId)),
    ])));
  }

  function actionButtons(jobId) {
    const confirming = state.confirmDelete === jobId;
    return [
      el("button", {
        class: "button", type: "button", text: "Retry", "data-testid": "retry",
        onclick: (e) => retryJob(jobId, e.currentTarget),
      }),
      el("button", {
        class: `button danger${confirming ? " confirm" : ""}`, type: "button",
        text: confirming ? "Confirm delete" : "Delete", "data-testid": "delete",
        onclick: (e) => deleteJob(jobId, e.currentTarget),
      }),
    ];
  }

  async function retryJob(jobId, button) {
    button.disabled = true;
    try {
      await api(`/admin/dlq/${encodeURIComponent(jobId)}/retry`, { method: "POST" });
      toast(`Job ${shortId(jobId)} is queued again.`);
    } catch (err) {
      if (err instanceof AuthError) { showLogin(err.message); return; }
      toast(`Retry failed: ${err.message}`, true);
    }
    refresh();
  }

  async function deleteJob(jobId, button) {
    if (state.confirmDelete !== jobId) {  // first click arms the button
      state.confirmDelete = jobId;
      button.classList.add("confirm");
      button.textContent = "Confirm delete";
      setTimeout(() => {
        if (state.confirmDelete === jobId) { state.confirmDelete = null; refresh(); }
      }, CONFIRM_MS);
      return;
    }
    state.confirmDelete = null;
    button.disabled = true;
    try {
      await api(`/admin/dlq/${encodeURIComponent(jobId)}`, { method: "DELETE" });
      toast(`Job ${shortId(jobId)} deleted.`);
      if (state.openJobId === jobId) ui.dialog.close();
    } catch (err) {
      if (err instanceof AuthError) { showLogin(err.message); return; }
      toast(`Delete failed: ${err.message}`, true);
    }
    refresh();
  }

  // --- job detail --------------------------------------------------------
  async function openJob(jobId) {
    state.openJobId = jobId;
    state.rendered.job = null;
    ui.jobTitle.textContent = jobId;
    ui.jobBody.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
    if (!ui.dialog.open) ui.dialog.showModal();
    await refreshJob();
  }

  async function refreshJob() {
    const jobId = state.openJobId;
    try {
      const job = await api(`/admin/jobs/${encodeURIComponent(jobId)}`);
      if (state.openJobId === jobId && changed("job", job)) renderJob(job);
    } catch (err) {
      if (err instanceof AuthError) throw err;
      if (state.openJobId === jobId) {
        state.rendered.job = null;
        ui.jobBody.replaceChildren(el("p", { class: "error", text: err.status === 404
          ? "This job no longer exists (deleted, or removed after its retention time)."
          : `Could not load the job: ${err.message}` }));
      }
    }
  }

  function fact(label, value) {
    return [el("dt", { text: label }), el("dd", {}, value ?? "–")];
  }

  function renderJob(job) {
    const facts = el("dl", { class: "facts" }, [
      ...fact("Status", statusBadge(job.status)),
      ...fact("Queue", job.queue),
      ...fact("Name", job.name || "–"),
      ...fact("Attempts", `${job.attemptsMade} of ${job.maxAttempts}`),
      ...fact("Progress", `${job.progress}%`),
      ...fact("Created", clock(job.createdAt)),
      ...fact("Started", clock(job.startedAt)),
      ...fact("Finished", clock(job.finishedAt)),
      ...(job.nextAttemptAt ? fact("Next attempt", clock(job.nextAttemptAt)) : []),
      ...(job.scheduledFor ? fact("Scheduled for", clock(job.scheduledFor)) : []),
      ...(job.cancelRequested ? fact("Cancel", job.status === "canceled" ? "canceled" : "requested") : []),
      ...(job.priority ? fact("Priority", String(job.priority)) : []),
      ...(job.resultUrl ? fact("Result", el("code", { text: job.resultUrl })) : []),
    ]);
    const parts = [facts];
    if (job.error) {
      parts.push(el("div", {}, [el("h3", { text: "Error" }), el("pre", { class: "error-text", text: job.error, "data-testid": "job-error" })]));
    }
    if (job.webhook) {
      const w = job.webhook;
      parts.push(el("div", {}, [el("h3", { text: "Webhook" }), el("dl", { class: "facts" }, [
        ...fact("URL", el("code", { text: w.url })),
        ...fact("Delivery", w.status),
        ...fact("Attempts", String(w.attempts)),
        ...fact("Last status", w.lastStatusCode ? String(w.lastStatusCode) : "–"),
        ...(w.lastError ? fact("Last error", w.lastError) : []),
        ...fact("Delivered", clock(w.deliveredAt)),
      ])]));
    }
    parts.push(el("div", {}, [el("h3", { text: "Data" }), el("pre", { text: JSON.stringify(job.data, null, 2), "data-testid": "job-data" })]));
    if (job.deadLettered) parts.push(el("div", { class: "dialog-actions" }, actionButtons(job.jobId)));
    ui.jobBody.replaceChildren(...parts);
  }

  ui.jobClose.addEventListener("click", () => ui.dialog.close());
  ui.dialog.addEventListener("close", () => { state.openJobId = null; state.rendered.job = null; });
  ui.dialog.addEventListener("click", (e) => { if (e.target === ui.dialog) ui.dialog.close(); });

  // --- start -------------------------------------------------------------
  if (sessionStorage.getItem(TOKEN_KEY)) {
    showApp();
    refresh();
  } else {
    showLogin("");
  }
})();
