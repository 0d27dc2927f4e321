/* mflow web page: the runs list (/) and a run's page (/runs/{id}), on the REST API (/api).
 *
 * Plain browser JavaScript, no build step. Every text that comes from the API goes into the
 * page as a text node or an attribute value (never as HTML), so task ids, messages and logs
 * are shown as they are, whatever characters they hold.
 */
"use strict";

(() => {
  const STATES = [
    "PENDING", "RUNNING", "RETRYING", "SUCCESS", "FAILED",
    "UPSTREAM_FAILED", "SKIPPED", "CANCELLED", "INTERRUPTED",
  ];
  const RUN_STATES = ["RUNNING", "SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED"];
  const SHORT = {
    PENDING: "pending", RUNNING: "running", RETRYING: "retrying", SUCCESS: "ok",
    FAILED: "failed", UPSTREAM_FAILED: "upstream failed", SKIPPED: "skipped",
    CANCELLED: "cancelled", INTERRUPTED: "interrupted",
  };
  const RETRYABLE = new Set(["FAILED", "UPSTREAM_FAILED", "CANCELLED", "INTERRUPTED"]);
  const RESUMABLE = new Set(["FAILED", "CANCELLED", "INTERRUPTED"]);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const LIST_REFRESH_MS = 4000;
  const PAGE_SIZE = 50;
  const TOKEN_KEY = "mflow.api-token";
  const LOG_TAIL_LINES = 200;
  const LOG_MAX_CHARS = 2000000; // what the log view keeps; older text is dropped
  // Layout: dagre ranks with network simplex and minimises crossings; both grow fast with
  // the graph. Up to DAGRE_FULL_MAX nodes + edges it runs in full; up to DAGRE_MAX with the
  // cheaper longest-path ranking; above that the built-in layered layout (longest-path
  // layers, barycenter ordering) draws the graph (2,000 tasks in well under a second).
  // `?layout=dagre-full|dagre|layered` on a run page forces one.
  const DAGRE_FULL_MAX = 500;
  const DAGRE_MAX = 1500;
  const NODE_H = 28;

  // -- DOM helpers (text is always set as text) -------------------------------------------
  function fill(el, attrs, children) {
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "text") el.textContent = value;
        else if (key === "class") el.setAttribute("class", value);
        else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
        else if (key === "dataset") Object.assign(el.dataset, value);
        else el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }
  const h = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);
  const s = (tag, attrs, ...children) =>
    fill(document.createElementNS(SVG_NS, tag), attrs, children);
  const $ = (selector, root = document) => root.querySelector(selector);
  /** Replace an element's children (null, false and undefined are left out). */
  const put = (el, ...children) => { el.replaceChildren(); return fill(el, null, children); };

  function badge(state, small) {
    return h("span", { class: `badge st-${state}${small ? " small" : ""}`, text: state });
  }

  function counts(taskStates) {
    const order = STATES.filter((state) => taskStates && taskStates[state]);
    return h("span", { class: "counts" }, order.map((state) =>
      h("span", {
        class: `badge small st-${state}`, title: `${taskStates[state]} ${state}`,
        dataset: { state }, text: `${taskStates[state]} ${SHORT[state]}`,
      })));
  }

  function legend() {
    return h("div", { class: "legend" }, STATES.map((state) =>
      h("span", { class: `st-${state}` }, h("i"), SHORT[state])));
  }

  // -- formatting -----------------------------------------------------------------------
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const ms = (iso) => (iso ? Date.parse(iso) : NaN);

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtClock(t) {
    const d = new Date(t);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    if (seconds < 10) return `${seconds.toFixed(seconds < 1 ? 3 : 2)} s`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const total = Math.round(seconds);
    const d = Math.floor(total / 86400);
    const hh = Math.floor((total % 86400) / 3600);
    const mm = Math.floor((total % 3600) / 60);
    const ss = total % 60;
    if (d) return `${d} d ${hh} h`;
    if (hh) return `${hh} h ${pad(mm)} m`;
    return `${mm} m ${pad(ss)} s`;
  }

  function runSeconds(run) {
    if (run.duration_s !== null && run.duration_s !== undefined) return run.duration_s;
    if (run.state === "RUNNING" && run.started_at) {
      return Math.max(0, (Date.now() - ms(run.started_at)) / 1000);
    }
    return null;
  }

  const fmtInt = (n) => Number(n).toLocaleString("en-US");
  const truncate = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);
  const utf8Length = (text) => new TextEncoder().encode(text).length;

  // -- the API --------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function detailText(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => (d && d.msg ? `${(d.loc || []).join(".")}: ${d.msg}` : JSON.stringify(d))).join("; ");
    }
    return detail ? JSON.stringify(detail) : "";
  }

  async function api(path, { method = "GET", token = null, raw = false } = {}) {
    const headers = { Accept: raw ? "text/plain" : "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, { method, headers, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "the mflow server does not answer");
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        message = detailText(body.detail) || message;
      } catch (err) { /* not JSON: keep the status line */ }
      throw new ApiError(response.status, message);
    }
    return raw ? response : response.json();
  }

  let healthPromise = null;
  function health() {
    if (!healthPromise) {
      healthPromise = api("/api/health").catch(() => ({ actions: false, status: "unknown" }));
      healthPromise.then((info) => {
        const where = $("#server");
        if (where && info.version) {
          where.textContent = `mflow ${info.version} · ${info.backend} · ` +
            (info.actions ? "actions enabled" : "read-only");
        }
      });
    }
    return healthPromise;
  }

  let noticeTimer = null;
  function notify(content, bad = false) {
    const box = $("#notice");
    put(box, ...[content].flat());
    box.classList.toggle("bad", bad);
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { box.hidden = true; }, bad ? 12000 : 8000);
  }

  const taskPath = (runId, taskId) => `/api/runs/${runId}/tasks/${encodeURIComponent(taskId)}`;

  // -- actions (cancel, resume, retry) --------------------------------------------------
  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (err) { return null; }
  }
  function storeToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) { /* storage disabled: ask each time */ }
  }

  /** Ask for the token (unless this tab keeps one), confirm, POST, report. */
  function runAction({ title, text, path, confirm, done }) {
    const dialog = $("#action-dialog");
    const input = $("#token-input");
    const error = $("#action-error");
    const button = $("#action-confirm");
    const showToken = () => {
      const kept = storedToken();
      $("#token-row").hidden = Boolean(kept);
      $("#token-kept").hidden = !kept;
    };
    $("#action-title").textContent = title;
    $("#action-text").textContent = text;
    button.textContent = confirm;
    button.disabled = false;
    error.hidden = true;
    input.value = "";
    showToken();
    $("#token-forget").onclick = () => { storeToken(null); showToken(); input.focus(); };
    $("#action-close").onclick = () => dialog.close();
    $("#action-form").onsubmit = async (event) => {
      event.preventDefault();
      const token = storedToken() || input.value.trim();
      if (!token) {
        error.textContent = "Enter the API token (api_token in config.json, or MFLOW_API_TOKEN).";
        error.hidden = false;
        return;
      }
      button.disabled = true;
      error.hidden = true;
      try {
        const answer = await api(path, { method: "POST", token });
        storeToken(token);
        dialog.close();
        done(answer);
      } catch (err) {
        if (err.status === 401) { storeToken(null); showToken(); }
        error.textContent = err.message;
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    };
    dialog.showModal();
    if (!storedToken()) input.focus(); else button.focus();
  }

  function startedRunNotice(answer) {
    notify([`${answer.message} `, h("a", { href: `/runs/${answer.run_id}`, text: `open run ${answer.run_id}` })]);
  }

  // -- runs list ------------------------------------------------------------------------
  function runsList() {
    document.title = "Runs · mflow";
    const params = new URLSearchParams(location.search);
    const filter = {
      state: (params.get("state") || "").toUpperCase(),
      flow: params.get("flow") || "",
      offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0),
    };
    if (!RUN_STATES.includes(filter.state)) filter.state = "";
    const stateSelect = h("select", { id: "state-filter", "aria-label": "state" },
      h("option", { value: "", text: "all states" }),
      RUN_STATES.map((state) => h("option", { value: state, text: state })));
    stateSelect.value = filter.state;
    const flowInput = h("input", {
      id: "flow-filter", type: "search", placeholder: "task file contains…",
      value: filter.flow, "aria-label": "task file", size: 28,
    });
    const total = h("span", { id: "runs-total", class: "muted" });
    const body = h("div", { id: "runs" });
    const prev = h("button", { id: "prev-page", text: "‹ newer" });
    const next = h("button", { id: "next-page", text: "older ›" });
    const pageInfo = h("span", { id: "page-info", class: "muted" });
    const updated = h("span", { class: "muted", id: "updated" });
    put($("#main"),
      h("div", { class: "toolbar" }, h("h1", { text: "Runs" }), stateSelect, flowInput,
        h("span", { class: "grow" }), updated, total),
      body,
      h("div", { class: "pager" }, prev, pageInfo, next),
      h("div", { style: "margin-top:14px" }, legend()));

    let seq = 0;
    async function load() {
      const mine = ++seq;
      const query = new URLSearchParams({ limit: PAGE_SIZE, offset: filter.offset });
      if (filter.state) query.set("state", filter.state);
      if (filter.flow) query.set("flow", filter.flow);
      const shown = new URLSearchParams();
      if (filter.state) shown.set("state", filter.state);
      if (filter.flow) shown.set("flow", filter.flow);
      if (filter.offset) shown.set("offset", filter.offset);
      history.replaceState(null, "", `/${shown.toString() ? `?${shown}` : ""}`);
      let page;
      try {
        page = await api(`/api/runs?${query}`);
      } catch (err) {
        if (mine === seq) updated.textContent = `not updated: ${err.message}`;
        return;
      }
      if (mine !== seq) return;
      if (page.runs.length === 0 && page.total > 0 && filter.offset > 0) {
        filter.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        load();
        return;
      }
      renderRuns(page);
    }

    function renderRuns(page) {
      updated.textContent = `updated ${fmtClock(Date.now())}`;
      total.textContent = `${fmtInt(page.total)} run${page.total === 1 ? "" : "s"}`;
      const first = page.total ? page.offset + 1 : 0;
      const last = page.offset + page.runs.length;
      pageInfo.textContent = `${fmtInt(first)}–${fmtInt(last)} of ${fmtInt(page.total)}`;
      prev.disabled = page.offset === 0;
      next.disabled = last >= page.total;
      if (!page.runs.length) {
        put(body, h("div", {
          class: "empty",
          text: filter.state || filter.flow ? "No run matches these filters." : "No runs recorded yet.",
        }));
        return;
      }
      const rows = page.runs.map((run) => {
        const dir = run.flow_path.includes("/") ? run.flow_path.slice(0, run.flow_path.lastIndexOf("/") + 1) : "";
        const base = run.flow_path.slice(dir.length);
        const parent = run.parent;
        return h("tr", { class: "run", dataset: { runId: run.run_id, state: run.state } },
          h("td", null, badge(run.state)),
          h("td", { class: "num" }, h("a", { href: `/runs/${run.run_id}`, text: `#${run.run_id}` })),
          h("td", { class: "flow", title: run.flow_path },
            h("span", { class: "flowdir", text: dir }), h("b", { text: base }),
            run.resumed_from ? h("span", { class: "nested-mark", text: `  ↻ resumes #${run.resumed_from}` }) : null),
          h("td", { class: "num", title: run.started_at || "" , text: fmtTime(run.started_at) }),
          h("td", { class: "num", text: fmtDuration(runSeconds(run)) }),
          h("td", null, h("div", { class: "taskcell" }, counts(run.task_states),
            h("span", { class: "muted", text: `${fmtInt(run.task_count)} task${run.task_count === 1 ? "" : "s"}` }))),
          h("td", null, parent ? h("a", {
            class: "nested-mark nested", href: `/runs/${parent.run_id}?task=${encodeURIComponent(parent.task_id || "")}`,
            title: `a nested flow's run, started by task ${parent.task_id} of run ${parent.run_id}`,
            text: `↳ nested in #${parent.run_id} · ${parent.task_id}`,
          }) : null));
      });
      const table = h("table", { class: "runs" },
        h("thead", null, h("tr", null, ["State", "Run", "Task file", "Started", "Duration", "Tasks", "Nested"]
          .map((name) => h("th", { text: name })))),
        h("tbody", {
          onclick: (event) => {
            if (event.target.closest("a")) return;
            const row = event.target.closest("tr.run");
            if (row) location.href = `/runs/${row.dataset.runId}`;
          },
        }, rows));
      put(body, table);
    }

    stateSelect.addEventListener("change", () => {
      filter.state = stateSelect.value;
      filter.offset = 0;
      load();
    });
    let typing = null;
    flowInput.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        filter.flow = flowInput.value.trim();
        filter.offset = 0;
        load();
      }, 250);
    });
    prev.addEventListener("click", () => { filter.offset = Math.max(0, filter.offset - PAGE_SIZE); load(); });
    next.addEventListener("click", () => { filter.offset += PAGE_SIZE; load(); });
    setInterval(() => { if (!document.hidden) load(); }, LIST_REFRESH_MS);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) load(); });
    load();
  }

  // -- layouts --------------------------------------------------------------------------
  function nodeWidth(label) {
    return Math.min(260, Math.max(64, Math.ceil(label.length * 7.1) + 22));
  }

  function chooseLayout(nodeCount, edgeCount) {
    const forced = new URLSearchParams(location.search).get("layout");
    const haveDagre = typeof window.dagre !== "undefined";
    if (forced === "layered" || !haveDagre) return "layered";
    if (forced === "dagre-full") return "dagre-full";
    if (forced === "dagre") return nodeCount + edgeCount <= DAGRE_FULL_MAX ? "dagre-full" : "dagre";
    const size = nodeCount + edgeCount;
    if (size <= DAGRE_FULL_MAX) return "dagre-full";
    if (size <= DAGRE_MAX) return "dagre";
    return "layered";
  }

  /** dagre: positions of the nodes (centres) and the bends of each edge. */
  function dagreLayout(items, edges, full) {
    const g = new window.dagre.graphlib.Graph();
    g.setGraph({
      rankdir: "LR", nodesep: 12, ranksep: 56, edgesep: 6, marginx: 20, marginy: 20,
      ranker: full ? "network-simplex" : "longest-path",
    });
    g.setDefaultEdgeLabel(() => ({}));
    for (const item of items) g.setNode(item.id, { width: item.w, height: NODE_H });
    for (const edge of edges) g.setEdge(edge.source, edge.target);
    window.dagre.layout(g);
    const pos = new Map();
    for (const item of items) {
      const node = g.node(item.id);
      pos.set(item.id, { x: node.x, y: node.y });
    }
    const paths = edges.map((edge) => smoothPath(g.edge(edge.source, edge.target).points));
    const graph = g.graph();
    return { pos, paths, width: graph.width, height: graph.height };
  }

  function smoothPath(points) {
    if (!points || !points.length) return "";
    const r = (v) => Math.round(v * 10) / 10;
    let d = `M${r(points[0].x)},${r(points[0].y)}`;
    if (points.length === 2) return `${d}L${r(points[1].x)},${r(points[1].y)}`;
    for (let i = 1; i < points.length - 1; i++) {
      const p = points[i];
      const q = points[i + 1];
      const mx = i === points.length - 2 ? q.x : (p.x + q.x) / 2;
      const my = i === points.length - 2 ? q.y : (p.y + q.y) / 2;
      d += `Q${r(p.x)},${r(p.y)} ${r(mx)},${r(my)}`;
    }
    return d;
  }

  /** Longest-path layers (a task sits one layer right of its latest dependency), ordered
   * within each layer by barycenter sweeps; edges are curves from layer to layer. */
  function layeredLayout(items, edges) {
    const n = items.length;
    const index = new Map(items.map((item, i) => [item.id, i]));
    const preds = items.map(() => []);
    const succs = items.map(() => []);
    for (const edge of edges) {
      const a = index.get(edge.source);
      const b = index.get(edge.target);
      if (a === undefined || b === undefined || a === b) continue;
      preds[b].push(a);
      succs[a].push(b);
    }
    const rank = new Int32Array(n);
    const indegree = Int32Array.from(preds, (p) => p.length);
    const queue = [];
    for (let i = 0; i < n; i++) if (indegree[i] === 0) queue.push(i);
    for (let q = 0; q < queue.length; q++) {
      const v = queue[q];
      for (const w of succs[v]) {
        if (rank[v] + 1 > rank[w]) rank[w] = rank[v] + 1;
        if (--indegree[w] === 0) queue.push(w);
      }
    }
    let maxRank = 0;
    for (let i = 0; i < n; i++) maxRank = Math.max(maxRank, rank[i]);
    if (queue.length < n) { // a cycle (cannot be recorded, but be safe): a layer of its own
      maxRank += 1;
      for (let i = 0; i < n; i++) if (indegree[i] > 0) rank[i] = maxRank;
    }
    const layers = Array.from({ length: maxRank + 1 }, () => []);
    for (let i = 0; i < n; i++) layers[rank[i]].push(i);
    const pos = new Float64Array(n);
    const place = (layer) => {
      const mid = (layer.length - 1) / 2;
      layer.forEach((v, i) => { pos[v] = i - mid; });
    };
    layers.forEach(place);
    const sweep = (order, neighbours) => {
      for (const r of order) {
        const layer = layers[r];
        const key = new Float64Array(n);
        for (const v of layer) {
          const list = neighbours[v];
          if (!list.length) { key[v] = pos[v]; continue; }
          let sum = 0;
          for (const w of list) sum += pos[w];
          key[v] = sum / list.length;
        }
        layer.sort((a, b) => key[a] - key[b] || pos[a] - pos[b]);
        place(layer);
      }
    };
    const down = [...layers.keys()].slice(1);
    const up = [...layers.keys()].reverse().slice(1);
    for (let i = 0; i < 3; i++) { sweep(down, preds); sweep(up, succs); }
    sweep(down, preds);
    const gap = 12;
    const rankSep = 64;
    const margin = 20;
    const xs = [];
    let x = margin;
    for (const layer of layers) {
      let width = 0;
      for (const v of layer) width = Math.max(width, items[v].w);
      xs.push({ x: x + width / 2 });
      x += width + rankSep;
    }
    let minY = Infinity;
    let maxY = -Infinity;
    for (let i = 0; i < n; i++) {
      const y = pos[i] * (NODE_H + gap);
      minY = Math.min(minY, y);
      maxY = Math.max(maxY, y);
    }
    if (!n) { minY = 0; maxY = 0; }
    const result = new Map();
    for (let i = 0; i < n; i++) {
      result.set(items[i].id, { x: xs[rank[i]].x, y: pos[i] * (NODE_H + gap) - minY + margin + NODE_H / 2 });
    }
    const r = (v) => Math.round(v * 10) / 10;
    const paths = edges.map((edge) => {
      const a = result.get(edge.source);
      const b = result.get(edge.target);
      if (!a || !b) return "";
      const x1 = a.x + items[index.get(edge.source)].w / 2;
      const x2 = b.x - items[index.get(edge.target)].w / 2;
      const dx = Math.max(20, Math.min(90, (x2 - x1) / 2));
      return `M${r(x1)},${r(a.y)}C${r(x1 + dx)},${r(a.y)} ${r(x2 - dx)},${r(b.y)} ${r(x2)},${r(b.y)}`;
    });
    return { pos: result, paths, width: x - rankSep + margin, height: maxY - minY + NODE_H + 2 * margin };
  }

  // -- the DAG view ---------------------------------------------------------------------
  class DagView {
    constructor(wrap, onSelect) {
      this.wrap = wrap;
      this.onSelect = onSelect;
      this.nodes = new Map(); // task id -> {el, title, data}
      this.edgeEls = new Map(); // task id -> [path elements]
      this.view = { x: 0, y: 0, k: 1 };
      this.size = { width: 0, height: 0 };
      this.selected = null;
      this.touched = false; // panned or zoomed by hand: a resize keeps the view
      this.svg = s("svg", { class: "dag", role: "img", "aria-label": "task graph" });
      this.viewport = s("g", { class: "viewport" });
      this.svg.append(s("defs", null, s("marker", {
        id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, markerUnits: "userSpaceOnUse",
        orient: "auto-start-reverse",
      }, s("path", { d: "M0,0L10,5L0,10z", fill: "#9aa4b5" }))), this.viewport);
      this.info = h("div", { class: "dag-info" });
      put(wrap, this.svg, this.info);
      this.bindPanZoom();
      let width = 0;
      let height = 0;
      new ResizeObserver(() => {
        if (wrap.clientWidth === width && wrap.clientHeight === height) return;
        width = wrap.clientWidth;
        height = wrap.clientHeight;
        if (!this.touched && this.nodes.size) this.fit();
        else if (this.selected) this.ensureVisible(this.selected);
      }).observe(wrap);
    }

    ids() { return [...this.nodes.keys()]; }

    draw(dag) {
      const started = performance.now();
      const items = dag.nodes.map((node) => {
        const label = truncate(node.id, 34) + (node.type === "mflow" ? " ▸" : "");
        return { id: node.id, label, w: nodeWidth(label), node };
      });
      const layoutName = chooseLayout(items.length, dag.edges.length);
      let layout;
      try {
        layout = layoutName === "layered" ? layeredLayout(items, dag.edges)
          : dagreLayout(items, dag.edges, layoutName === "dagre-full");
      } catch (err) { // a layout library failure must not leave the page empty
        console.warn("dagre layout failed, using the layered layout:", err);
        layout = layeredLayout(items, dag.edges);
      }
      const laidOut = performance.now();
      const big = dag.edges.length > 1500;
      this.svg.classList.toggle("big", big);
      const edgeGroup = s("g", { class: "edges" });
      const nodeGroup = s("g", { class: "nodes" });
      this.nodes.clear();
      this.edgeEls.clear();
      const edgeFragment = document.createDocumentFragment();
      dag.edges.forEach((edge, i) => {
        const path = s("path", { class: "edge", d: layout.paths[i] });
        if (!big) path.setAttribute("marker-end", "url(#arrow)");
        edgeFragment.append(path);
        for (const end of [edge.source, edge.target]) {
          let list = this.edgeEls.get(end);
          if (!list) this.edgeEls.set(end, (list = []));
          list.push(path);
        }
      });
      edgeGroup.append(edgeFragment);
      const nodeFragment = document.createDocumentFragment();
      for (const item of items) {
        const p = layout.pos.get(item.id);
        const title = s("title");
        const el = s("g", {
          class: `node st-${item.node.state}${item.node.type === "mflow" ? " nested" : ""}`,
          transform: `translate(${Math.round(p.x - item.w / 2)},${Math.round(p.y - NODE_H / 2)})`,
        },
        s("rect", { width: item.w, height: NODE_H, rx: 5 }),
        s("text", { x: 10, y: NODE_H / 2, text: item.label }),
        title);
        el.dataset.task = item.id;
        el.dataset.state = item.node.state;
        const entry = { el, title, data: item.node };
        this.nodes.set(item.id, entry);
        this.setTitle(entry);
        nodeFragment.append(el);
      }
      nodeGroup.append(nodeFragment);
      put(this.viewport, edgeGroup, nodeGroup);
      this.size = { width: layout.width, height: layout.height };
      const drawn = performance.now();
      this.info.textContent = `${fmtInt(items.length)} tasks · ${fmtInt(dag.edges.length)} dependencies · layout: ${layoutName}`;
      this.fit();
      if (this.selected) this.select(this.selected);
      return { layout: layoutName, layout_ms: laidOut - started, draw_ms: drawn - laidOut };
    }

    setTitle(entry) {
      const d = entry.data;
      const tries = d.max_attempts > 1 ? ` · attempt ${d.attempts} of ${d.max_attempts}` : "";
      entry.title.textContent = `${d.id}\n${d.type} · ${d.state}${tries}${d.message ? `\n${d.message}` : ""}`;
    }

    /** New states (and attempts, messages) in place: no new layout. */
    update(tasks) {
      for (const task of tasks) {
        const entry = this.nodes.get(task.task_id);
        if (!entry) continue;
        const attempts = task.attempts.length;
        const d = entry.data;
        if (d.state === task.state && d.attempts === attempts && d.message === task.message) continue;
        if (d.state !== task.state) {
          entry.el.classList.remove(`st-${d.state}`);
          entry.el.classList.add(`st-${task.state}`);
          entry.el.dataset.state = task.state;
        }
        entry.data = { ...d, state: task.state, attempts, message: task.message };
        this.setTitle(entry);
      }
    }

    select(id) {
      if (this.selected) {
        const old = this.nodes.get(this.selected);
        if (old) old.el.classList.remove("selected");
        for (const path of this.edgeEls.get(this.selected) || []) path.classList.remove("hl");
      }
      this.selected = id;
      const entry = id && this.nodes.get(id);
      if (!entry) return;
      entry.el.classList.add("selected");
      for (const path of this.edgeEls.get(id) || []) path.classList.add("hl");
    }

    nodeCenter(entry) {
      const box = entry.el.getBBox();
      const m = entry.el.transform.baseVal.consolidate();
      return { x: (m ? m.matrix.e : 0) + box.width / 2, y: (m ? m.matrix.f : 0) + box.height / 2 };
    }

    /** Pan (not zoom) so that the node is in view, if it is not. */
    ensureVisible(id) {
      const entry = this.nodes.get(id);
      if (!entry) return;
      const c = this.nodeCenter(entry);
      const rect = this.svg.getBoundingClientRect();
      const x = this.view.x + c.x * this.view.k;
      const y = this.view.y + c.y * this.view.k;
      if (x > 20 && x < rect.width - 20 && y > 20 && y < rect.height - 20) return;
      this.view.x = rect.width / 2 - c.x * this.view.k;
      this.view.y = rect.height / 2 - c.y * this.view.k;
      this.apply();
    }

    centerOn(id) {
      const entry = this.nodes.get(id);
      if (!entry) return;
      const { x: cx, y: cy } = this.nodeCenter(entry);
      const rect = this.svg.getBoundingClientRect();
      this.touched = true;
      this.view.k = Math.max(this.view.k, 0.8);
      this.view.x = rect.width / 2 - cx * this.view.k;
      this.view.y = rect.height / 2 - cy * this.view.k;
      this.apply();
    }

    apply() {
      const { x, y, k } = this.view;
      this.viewport.setAttribute("transform", `translate(${x.toFixed(1)},${y.toFixed(1)}) scale(${k.toFixed(4)})`);
    }

    fit() {
      this.touched = false;
      const rect = this.svg.getBoundingClientRect();
      const width = rect.width || 800;
      const height = rect.height || 500;
      const k = Math.min(1, width / (this.size.width || 1), height / (this.size.height || 1));
      this.view.k = Math.max(k, 0.01);
      this.view.x = (width - this.size.width * this.view.k) / 2;
      this.view.y = Math.max(0, (height - this.size.height * this.view.k) / 2);
      this.apply();
    }

    zoomAt(px, py, factor) {
      this.touched = true;
      const k = Math.min(4, Math.max(0.01, this.view.k * factor));
      const f = k / this.view.k;
      this.view.x = px - (px - this.view.x) * f;
      this.view.y = py - (py - this.view.y) * f;
      this.view.k = k;
      this.apply();
    }

    zoomCenter(factor) {
      const rect = this.svg.getBoundingClientRect();
      this.zoomAt(rect.width / 2, rect.height / 2, factor);
    }

    bindPanZoom() {
      const svg = this.svg;
      let drag = null;
      let suppressClick = false;
      svg.addEventListener("wheel", (event) => {
        event.preventDefault();
        const rect = svg.getBoundingClientRect();
        const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
        this.zoomAt(event.clientX - rect.left, event.clientY - rect.top, Math.exp(-delta * 0.0015));
      }, { passive: false });
      svg.addEventListener("pointerdown", (event) => {
        if (event.button !== 0) return;
        drag = { id: event.pointerId, x: event.clientX, y: event.clientY, vx: this.view.x, vy: this.view.y, moved: false };
      });
      svg.addEventListener("pointermove", (event) => {
        if (!drag || event.pointerId !== drag.id) return;
        const dx = event.clientX - drag.x;
        const dy = event.clientY - drag.y;
        if (!drag.moved && Math.hypot(dx, dy) < 4) return;
        if (!drag.moved) {
          drag.moved = true;
          this.touched = true;
          svg.setPointerCapture(event.pointerId);
          svg.classList.add("dragging");
        }
        this.view.x = drag.vx + dx;
        this.view.y = drag.vy + dy;
        this.apply();
      });
      const end = (event) => {
        if (!drag || event.pointerId !== drag.id) return;
        if (drag.moved) {
          suppressClick = true;
          setTimeout(() => { suppressClick = false; }, 0);
          svg.classList.remove("dragging");
        }
        drag = null;
      };
      svg.addEventListener("pointerup", end);
      svg.addEventListener("pointercancel", end);
      svg.addEventListener("click", (event) => {
        if (suppressClick) return;
        const node = event.target.closest("g.node");
        if (node) this.onSelect(node.dataset.task);
      });
    }
  }

  // -- the timeline (Gantt) -------------------------------------------------------------
  function niceStep(rough) {
    const steps = [100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5,
      18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5];
    return steps.find((step) => step >= rough) || Math.ceil(rough / 864e5) * 864e5;
  }

  function fmtOffset(t) {
    if (t === 0) return "0";
    if (t < 1000) return `${t} ms`;
    if (t < 60000) return `${t / 1000} s`;
    if (t < 3600000) {
      const m = Math.floor(t / 60000);
      const sec = Math.round((t % 60000) / 1000);
      return sec ? `${m} m ${sec} s` : `${m} m`;
    }
    const hours = Math.floor(t / 3600000);
    const m = Math.round((t % 3600000) / 60000);
    return m ? `${hours} h ${m} m` : `${hours} h`;
  }

  function drawTimeline(wrap, run, onSelect) {
    const now = Date.now();
    const rows = [];
    let notStarted = 0;
    run.tasks.forEach((task, position) => {
      const spans = task.attempts.filter((a) => a.started_at).map((a) => ({
        attempt: a, start: ms(a.started_at),
        end: a.ended_at ? ms(a.ended_at) : (run.state === "RUNNING" ? now : ms(a.started_at)),
      }));
      if (!spans.length) { notStarted += 1; return; }
      rows.push({ task, spans, first: Math.min(...spans.map((sp) => sp.start)), position });
    });
    rows.sort((a, b) => a.first - b.first || a.position - b.position);
    if (!rows.length) {
      put(wrap, h("p", { class: "muted", text: "No task has started yet." }));
      return;
    }
    let t0 = Math.min(...rows.map((row) => row.first));
    if (run.started_at) t0 = Math.min(t0, ms(run.started_at));
    let t1 = t0 + 1;
    for (const row of rows) for (const span of row.spans) t1 = Math.max(t1, span.end);
    if (run.ended_at) t1 = Math.max(t1, ms(run.ended_at));
    if (run.state === "RUNNING") t1 = Math.max(t1, now);
    const span = Math.max(t1 - t0, 1000);
    const rowH = rows.length > 300 ? 14 : 20;
    const axisH = 24;
    const width = Math.max(600, wrap.clientWidth - 2);
    const longest = Math.max(...rows.map((row) => Math.min(row.task.task_id.length, 30)));
    const labelW = Math.min(230, Math.max(80, longest * 7 + 16));
    const plotW = width - labelW - 16;
    const height = rows.length * rowH + 6;
    const X = (t) => labelW + ((t - t0) / span) * plotW;
    const step = niceStep(span / Math.max(2, plotW / 90));
    // the time axis stays in view above the rows as they scroll
    const axis = s("svg", { class: "gantt gantt-axis", width, height: axisH });
    const svg = s("svg", { class: "gantt", width, height, role: "img", "aria-label": "timeline" });
    const grid = s("g");
    for (let t = 0; t <= span; t += step) {
      const x = X(t0 + t);
      grid.append(s("line", { class: "grid", x1: x, x2: x, y1: 0, y2: height }));
      axis.append(s("line", { class: "grid", x1: x, x2: x, y1: axisH - 6, y2: axisH }),
        s("text", { class: "tick", x: x + 3, y: 14, text: fmtOffset(t) }, s("title", { text: fmtClock(t0 + t) })));
    }
    const background = s("g");
    const labels = s("g");
    const bars = s("g");
    rows.forEach((row, i) => {
      const y = i * rowH;
      background.append(s("rect", { class: "rowbg", x: 0, y, width, height: rowH, fill: "transparent" }));
      const label = s("text", {
        class: "label", x: 6, y: y + rowH / 2 + 4, text: truncate(row.task.task_id, 30),
        dataset: { task: row.task.task_id },
      }, s("title", { text: row.task.task_id }));
      labels.append(label);
      for (const sp of row.spans) {
        const a = sp.attempt;
        const x = X(sp.start);
        const w = Math.max(2, X(sp.end) - x);
        bars.append(s("rect", {
          class: `bar st-${a.state}`, x, y: y + 3, width: w, height: rowH - 6, rx: 2,
          dataset: { task: row.task.task_id, state: a.state },
        }, s("title", {
          text: `${row.task.task_id} · attempt ${a.attempt} · ${a.state}\n${fmtTime(a.started_at)} → ` +
            `${a.ended_at ? fmtTime(a.ended_at) : "…"} (${fmtDuration(a.duration_s ?? (sp.end - sp.start) / 1000)})` +
            `${a.message ? `\n${a.message}` : ""}`,
        })));
      }
    });
    svg.append(background, grid, labels, bars);
    if (run.state === "RUNNING") svg.append(s("line", { class: "now", x1: X(now), x2: X(now), y1: 0, y2: height }));
    svg.addEventListener("click", (event) => {
      const target = event.target.closest("[data-task]");
      if (target) onSelect(target.dataset.task);
    });
    const children = [axis, svg];
    const note = notStarted ? h("p", { class: "muted", text: `${fmtInt(notStarted)} task${notStarted === 1 ? "" : "s"} without an attempt (not started, not run, or skipped).` }) : null;
    put(wrap, ...children);
    return note;
  }

  // -- a run's page ---------------------------------------------------------------------
  function runPage(runId) {
    const page = {
      runId, run: null, health: null, tasks: new Map(), dag: null, watcher: null,
      selected: null, log: null, timelineTimer: null, lastTimeline: 0,
    };
    document.title = `Run ${runId} · mflow`;
    const header = h("section", { class: "runhead", id: "run-header" }, h("h1", { text: `Run ${runId}` }));
    const dagWrap = h("div", { class: "dag-wrap", id: "dag" });
    const findInput = h("input", { type: "search", placeholder: "find task…", size: 16, "aria-label": "find task", id: "find-task" });
    const dagCard = h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", { text: "Tasks" }), legend(),
        h("span", { class: "tools" }, findInput,
          h("button", { title: "zoom in", text: "+", onclick: () => view.zoomCenter(1.25) }),
          h("button", { title: "zoom out", text: "−", onclick: () => view.zoomCenter(0.8) }),
          h("button", { title: "the whole graph", text: "fit", onclick: () => view.fit() }))),
      dagWrap);
    const timelineWrap = h("div", { class: "gantt-wrap", id: "timeline" });
    const timelineNote = h("div");
    const timelineCard = h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", { text: "Timeline" }),
        h("span", { class: "muted", text: "one row per task, one bar per attempt" })),
      timelineWrap, timelineNote);
    put($("#main"), header, dagCard, timelineCard);
    const view = new DagView(dagWrap, (id) => openPanel(id));
    let timelineWidth = 0;
    new ResizeObserver(() => { // the panel opens or closes, the window changes
      if (timelineWrap.clientWidth !== timelineWidth) {
        timelineWidth = timelineWrap.clientWidth;
        scheduleTimeline();
      }
    }).observe(timelineWrap);

    findInput.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      const text = findInput.value.trim().toLowerCase();
      if (!text) return;
      const id = view.ids().find((x) => x === findInput.value.trim()) ||
        view.ids().find((x) => x.toLowerCase().includes(text));
      if (id) { openPanel(id); view.centerOn(id); } else notify(`no task matches “${findInput.value}”`, true);
    });

    // -- header
    function renderHeader() {
      const run = page.run;
      document.title = `Run ${run.run_id} · ${run.state} · mflow`;
      const actions = h("span", { class: "actions" });
      if (page.health && page.health.actions) {
        if (run.state === "RUNNING") {
          actions.append(h("button", {
            id: "cancel-run", class: "danger", text: "Cancel run",
            onclick: () => runAction({
              title: `Cancel run ${run.run_id}?`,
              text: "Its running tasks are stopped (SIGTERM, then SIGKILL) and recorded CANCELLED; no new task starts.",
              path: `/api/runs/${run.run_id}/cancel`, confirm: "Cancel the run",
              done: (answer) => { notify(answer.message); if (!page.watcher) watch(); },
            }),
          }));
        } else if (RESUMABLE.has(run.state) && !run.parent) {
          actions.append(h("button", {
            id: "resume-run", class: "primary", text: "Resume",
            onclick: () => runAction({
              title: `Resume run ${run.run_id}?`,
              text: "A new run of the same task file runs again every task that did not succeed.",
              path: `/api/runs/${run.run_id}/resume`, confirm: "Resume", done: startedRunNotice,
            }),
          }));
        }
      }
      const facts = [
        ["started", fmtTime(run.started_at)],
        ["duration", fmtDuration(runSeconds(run)), "run-duration"],
        ["ended", run.ended_at ? fmtTime(run.ended_at) : "–"],
        ["tasks", fmtInt(run.task_count)],
        ["host", `${run.host || "?"} (pid ${run.pid ?? "?"})`],
      ];
      const links = [];
      if (run.parent) {
        links.push(h("span", { id: "parent-link" }, "nested flow of ",
          h("a", { href: `/runs/${run.parent.run_id}?task=${encodeURIComponent(run.parent.task_id || "")}`, text: `run ${run.parent.run_id}` }),
          run.parent.task_id ? `, task ${run.parent.task_id}` : "",
          run.parent.attempt ? ` (attempt ${run.parent.attempt})` : ""));
      }
      if (run.resumed_from) {
        links.push(h("span", { id: "resumed-link" }, "resumes ",
          h("a", { href: `/runs/${run.resumed_from}`, text: `run ${run.resumed_from}` })));
      }
      put(header,
        h("h1", null, h("a", { href: "/", class: "muted", title: "all runs", text: "Runs ›" }),
          h("span", { text: `Run ${run.run_id}` }), h("span", { id: "run-state", dataset: { state: run.state } }, badge(run.state)),
          counts(run.task_states), actions),
        h("div", { class: "mono", title: "task file", text: run.flow_path }),
        h("div", { class: "facts" },
          facts.map(([name, value, id]) => h("span", null, `${name} `, h("b", { id, text: value }))),
          links),
        run.message ? h("div", { class: "message", text: run.message }) : null);
    }

    // -- timeline, at most a few times a second
    function scheduleTimeline() {
      if (page.timelineTimer) return;
      const wait = Math.max(0, 400 - (performance.now() - page.lastTimeline));
      page.timelineTimer = setTimeout(() => {
        page.timelineTimer = null;
        page.lastTimeline = performance.now();
        if (page.run) put(timelineNote, drawTimeline(timelineWrap, page.run, (id) => openPanel(id)) || "");
      }, wait);
    }

    // -- data
    function applyRun(run) {
      page.run = run;
      page.tasks = new Map(run.tasks.map((task) => [task.task_id, task]));
      renderHeader();
      if (page.dag) {
        const drawn = view.ids();
        const same = drawn.length === run.tasks.length && run.tasks.every((task) => view.nodes.has(task.task_id));
        if (same) view.update(run.tasks);
        else reloadDag();
      }
      scheduleTimeline();
      if (page.selected) renderPanel();
    }

    async function reloadDag() {
      try {
        page.dag = await api(`/api/runs/${runId}/dag`);
        view.draw(page.dag);
        if (page.run) view.update(page.run.tasks);
      } catch (err) {
        notify(`graph not updated: ${err.message}`, true);
      }
    }

    function watch() {
      if (page.watcher) return;
      const source = new EventSource(`/api/runs/${runId}/events`);
      page.watcher = source;
      source.addEventListener("run", (event) => applyRun(JSON.parse(event.data)));
      source.addEventListener("end", () => {
        source.close();
        if (page.watcher === source) page.watcher = null;
      });
    }

    setInterval(() => { // the duration of a running run goes on
      if (!page.run || page.run.state !== "RUNNING") return;
      const where = $("#run-duration");
      if (where) where.textContent = fmtDuration(runSeconds(page.run));
      if (page.run.tasks.length <= 500) scheduleTimeline();
    }, 1000);

    // -- the task panel
    const panel = $("#panel");
    const logPre = h("pre", { class: "log", id: "log", tabindex: 0 });
    const logStatus = h("span", { class: "status", id: "log-status" });
    const logTitle = h("b", { id: "log-title" });
    const tailButton = h("button", { id: "log-tail", text: `tail ${LOG_TAIL_LINES}`, onclick: () => showLog(page.log && page.log.attempt, "tail", true) });
    const followButton = h("button", { id: "log-follow", text: "follow", onclick: () => showLog(page.log && page.log.attempt, "follow", true) });
    const rawLink = h("a", { id: "log-raw", target: "_blank", rel: "noopener", text: "whole log ↗" });
    const logBox = h("section", null, h("div", { class: "logbar" }, logTitle, tailButton, followButton, rawLink, logStatus), logPre);
    const panelHead = h("div", { class: "phead" });
    const panelInfo = h("div");
    put(panel, panelHead, h("div", { class: "pbody" }, panelInfo, logBox));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && page.selected && !$("#action-dialog").open) closePanel();
    });

    function setTaskParam(id) {
      const params = new URLSearchParams(location.search);
      if (id) params.set("task", id); else params.delete("task");
      const query = params.toString();
      history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}`);
    }

    function openPanel(id) {
      if (!page.tasks.has(id) && !view.nodes.has(id)) return;
      const changed = page.selected !== id;
      page.selected = id;
      view.select(id);
      setTaskParam(id);
      panel.hidden = false;
      document.body.classList.add("with-panel");
      if (changed) {
        stopFollow();
        page.log = null;
        logPre.textContent = "";
      }
      renderPanel();
    }

    function closePanel() {
      stopFollow();
      page.selected = null;
      page.log = null;
      view.select(null);
      setTaskParam(null);
      panel.hidden = true;
      document.body.classList.remove("with-panel");
    }

    function detailsCell(details) {
      const parts = [];
      for (const [key, value] of Object.entries(details || {})) {
        if (key === "nested_run_id") {
          parts.push(h("div", null, "nested run ", h("a", { href: `/runs/${value}`, class: "nested-run", text: `run ${value}` })));
        } else {
          const text = typeof value === "string" ? value : JSON.stringify(value);
          parts.push(h("div", { title: text }, h("span", { text: `${key}: ` }), h("span", { class: "mono", text: truncate(text, 240) })));
        }
      }
      return parts;
    }

    function renderPanel() {
      const id = page.selected;
      const task = page.tasks.get(id);
      const node = view.nodes.get(id);
      const state = task ? task.state : node ? node.data.state : "PENDING";
      put(panelHead,
        h("h2", null, h("span", { class: "mono", id: "panel-task", text: id }), badge(state),
          h("button", { class: "close", title: "close (Esc)", text: "×", onclick: closePanel })));
      if (!task) {
        put(panelInfo, h("p", { class: "muted", text: "Loading…" }));
        return;
      }
      const run = page.run;
      const facts = [["type", task.type], ["attempts", `${task.attempts.length} of ${task.max_attempts}`]];
      if (task.message) facts.push(["message", task.message]);
      const depends = task.depends.length ? h("span", null, task.depends.map((dep, i) => [
        i ? ", " : "",
        page.tasks.has(dep) ? h("a", { href: "#", text: dep, onclick: (event) => { event.preventDefault(); openPanel(dep); view.centerOn(dep); } }) : h("span", { text: `${dep} (not in this run)` }),
      ])) : "none";
      const dependents = run.tasks.filter((t) => t.depends.includes(id)).map((t) => t.task_id);
      const nested = task.nested_run_ids.length ? h("span", { id: "nested-runs" }, task.nested_run_ids.map((nid, i) => [
        i ? ", " : "", h("a", { href: `/runs/${nid}`, class: "nested-run", text: `run ${nid}` }),
      ])) : null;
      const actions = [];
      if (page.health && page.health.actions && run.state !== "RUNNING" && RETRYABLE.has(task.state) && !run.parent) {
        actions.push(h("button", {
          id: "retry-task", class: "primary", text: "Retry task",
          onclick: () => runAction({
            title: `Retry task ${id}?`,
            text: `A new run of ${run.flow_path} runs task ${id} alone (its dependencies are taken as done).`,
            path: `${taskPath(run.run_id, id)}/retry`, confirm: "Retry", done: startedRunNotice,
          }),
        }));
      }
      const chosen = page.log ? page.log.attempt : null;
      const rows = task.attempts.map((a) => h("tr", {
        class: `attempt${a.attempt === chosen ? " chosen" : ""}`, dataset: { attempt: a.attempt },
        title: `${a.host || ""} pid ${a.pid ?? "?"}${a.log_path ? `\nlog: ${a.log_path}` : ""}`,
        onclick: (event) => { if (!event.target.closest("a")) showLog(a.attempt, a.state === "RUNNING" ? "follow" : "tail", true); },
      },
      h("td", { text: a.attempt }), h("td", null, badge(a.state, true)),
      h("td", { text: fmtTime(a.started_at) }),
      h("td", { text: a.ended_at ? fmtDuration(a.duration_s) : a.state === "RUNNING" ? fmtDuration((Date.now() - ms(a.started_at)) / 1000) : "–" }),
      h("td", { text: a.exit_code ?? "" }),
      h("td", null, a.message ? h("div", { text: a.message }) : null, h("div", { class: "details" }, detailsCell(a.details)))));
      put(panelInfo,
        h("dl", null,
          facts.map(([name, value]) => [h("dt", { text: name }), h("dd", { text: value })]),
          h("dt", { text: "depends on" }), h("dd", null, depends),
          dependents.length ? [h("dt", { text: "needed by" }), h("dd", { text: truncate(dependents.join(", "), 400) })] : null,
          nested ? [h("dt", { text: "nested runs" }), h("dd", null, nested)] : null),
        actions.length ? h("div", null, actions) : null,
        task.attempts.length
          ? h("table", { class: "attempts" },
            h("thead", null, h("tr", null, ["#", "state", "started", "took", "exit", "message / details"].map((x) => h("th", { text: x })))),
            h("tbody", null, rows))
          : h("p", { class: "muted", text: "No attempt yet." }));
      // the log: the last attempt unless one was chosen; a new attempt is followed
      const last = task.attempts.length ? task.attempts[task.attempts.length - 1] : null;
      if (!page.log) {
        if (last) showLog(last.attempt, last.state === "RUNNING" ? "follow" : "tail", false);
        else showNoLog();
      } else if (!page.log.chosen && last && last.attempt !== page.log.attempt) {
        showLog(last.attempt, "follow", false);
      }
    }

    function showNoLog() {
      stopFollow();
      page.log = null;
      logTitle.textContent = "Log";
      logPre.textContent = "";
      logStatus.textContent = "the task has not started";
      rawLink.hidden = true;
      tailButton.disabled = true;
      followButton.disabled = true;
    }

    function stopFollow() {
      if (page.log && page.log.source) {
        page.log.source.close();
        page.log.source = null;
      }
      if (page.log && page.log.retry) clearTimeout(page.log.retry);
      followButton.classList.remove("on");
    }

    function appendLog(text) {
      const atBottom = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 30;
      logPre.append(text);
      page.log.chars += text.length;
      if (page.log.chars > LOG_MAX_CHARS) {
        const all = logPre.textContent;
        const kept = all.slice(all.length - LOG_MAX_CHARS / 2);
        logPre.textContent = `[… earlier output not shown …]\n${kept}`;
        page.log.chars = kept.length;
      }
      if (atBottom) logPre.scrollTop = logPre.scrollHeight;
    }

    async function showLog(attempt, mode, chosen) {
      if (!attempt || !page.selected) return;
      stopFollow();
      const id = page.selected;
      const base = `${taskPath(runId, id)}/attempts/${attempt}/log`;
      const log = { task: id, attempt, mode, chosen: chosen || (page.log && page.log.chosen), source: null, chars: 0, next: 0, retry: null };
      page.log = log;
      for (const row of panelInfo.querySelectorAll("tr.attempt")) {
        row.classList.toggle("chosen", Number(row.dataset.attempt) === attempt);
      }
      logTitle.textContent = `Attempt ${attempt}`;
      rawLink.hidden = false;
      rawLink.href = base;
      tailButton.disabled = false;
      followButton.disabled = false;
      tailButton.classList.toggle("on", mode === "tail");
      followButton.classList.toggle("on", mode === "follow");
      logStatus.textContent = "loading…";
      let response;
      let text;
      try {
        response = await api(`${base}?tail=${LOG_TAIL_LINES}`, { raw: true });
        text = await response.text();
      } catch (err) {
        if (page.log !== log) return;
        logStatus.textContent = err.message;
        return;
      }
      if (page.log !== log) return;
      const offset = Number(response.headers.get("X-Log-Offset") || 0);
      const size = Number(response.headers.get("X-Log-Size") || 0);
      const state = response.headers.get("X-Attempt-State") || "";
      logPre.textContent = text;
      log.chars = text.length;
      logPre.scrollTop = logPre.scrollHeight;
      const part = offset > 0 ? `last ${LOG_TAIL_LINES} lines of ${fmtInt(size)} bytes` : `${fmtInt(size)} bytes`;
      if (mode !== "follow") {
        logStatus.textContent = `${part} · ${state}${text ? "" : " · empty"}`;
        return;
      }
      log.next = offset;
      log.replace = true; // the stream starts where the tail did: it replaces it
      follow(log);
    }

    function follow(log) {
      const base = `${taskPath(runId, log.task)}/attempts/${log.attempt}/log/follow`;
      const source = new EventSource(`${base}?offset=${log.next}`);
      log.source = source;
      followButton.classList.add("on");
      logStatus.textContent = "following…";
      source.addEventListener("log", (event) => {
        if (page.log !== log) return;
        const data = JSON.parse(event.data);
        if (log.replace) {
          logPre.textContent = "";
          log.chars = 0;
          log.replace = false;
        }
        appendLog(data.text);
        log.next = data.next_offset ?? data.offset + utf8Length(data.text);
      });
      source.addEventListener("end", (event) => {
        source.close();
        if (page.log !== log) return;
        log.source = null;
        followButton.classList.remove("on");
        const data = JSON.parse(event.data);
        logStatus.textContent = `attempt ended: ${data.state}`;
      });
      source.onerror = () => {
        if (page.log !== log || log.source !== source) { source.close(); return; }
        source.close(); // do not let the browser start over from the first offset
        log.source = null;
        logStatus.textContent = "connection lost; following again shortly…";
        log.retry = setTimeout(() => { if (page.log === log) follow(log); }, 2000);
      };
    }

    // -- start
    const started = performance.now();
    const healthP = health().then((info) => { page.health = info; if (page.run) renderHeader(); });
    const dagP = api(`/api/runs/${runId}/dag`).then((dag) => {
      const fetched = performance.now();
      page.dag = dag;
      const stats = view.draw(dag);
      if (page.run) view.update(page.run.tasks);
      requestAnimationFrame(() => setTimeout(() => { // after the frame that shows it
        const done = performance.now();
        window.mflowDagStats = {
          nodes: dag.nodes.length, edges: dag.edges.length, layout: stats.layout,
          fetch_ms: fetched - started, layout_ms: stats.layout_ms, draw_ms: stats.draw_ms,
          total_ms: done - started, since_navigation_ms: done,
        };
        window.mflowDagRendered = done;
        dagWrap.dataset.rendered = "true";
      }, 0));
    });
    const runP = api(`/api/runs/${runId}`).then((run) => {
      applyRun(run);
      if (run.state === "RUNNING") watch();
    });
    Promise.all([dagP, runP, healthP]).then(() => {
      const wanted = new URLSearchParams(location.search).get("task");
      if (wanted && page.tasks.has(wanted)) { openPanel(wanted); view.centerOn(wanted); }
    }).catch((err) => {
      const text = err.status === 404 ? err.message : `cannot show run ${runId}: ${err.message}`;
      put($("#main"), h("div", { class: "empty" }, h("p", { text }), h("a", { href: "/", text: "all runs" })));
    });
  }

  // -- routing --------------------------------------------------------------------------
  function route() {
    health();
    const match = location.pathname.match(/^\/runs\/(\d+)\/?$/);
    if (match) runPage(Number(match[1]));
    else runsList();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", route);
  else route();
})();
