// DOL operator console: renders the page named in <body data-page> from the
// JSON APIs of the same origin. The session cookie is HttpOnly; changes send
// the page's CSRF token in the x-dol-csrf header. No token is stored here.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const role = body.dataset.role;
  const admin = role === "admin";
  const refreshSecs = Number(body.dataset.refresh) || 30;
  const csrfMeta = document.querySelector('meta[name="dol-csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const content = document.getElementById("content");
  const status = document.getElementById("refresh-status");

  // ---- small helpers -------------------------------------------------------

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function time(ms) {
    return new Date(ms).toLocaleTimeString();
  }

  function num(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    return digits === undefined ? v.toLocaleString() : v.toFixed(digits);
  }

  function pct(v) {
    return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %";
  }

  /** Calls a JSON API; throws an Error naming the problem on failure. */
  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = { accept: "application/json" };
    if (opts.method !== "GET") headers["x-dol-csrf"] = csrf;
    if (opts.body !== undefined) {
      headers["content-type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    const res = await fetch(path, {
      method: opts.method,
      headers,
      body: opts.body,
      credentials: "same-origin",
      cache: "no-store",
    });
    let data = null;
    try {
      data = await res.json();
    } catch (_) {
      data = null;
    }
    // /api/health answers 503 with its full report when CRITICAL: still data.
    if (!res.ok && !(opts.allow503 && res.status === 503)) {
      const msg = data && data.error ? data.error.message : "HTTP " + res.status;
      const err = new Error(msg);
      err.field = data && data.error ? data.error.field : undefined;
      throw err;
    }
    return data;
  }

  function section(title, ...children) {
    return el("section", { "aria-label": title }, el("h2", {}, title), ...children);
  }

  /** A table whose named columns sort on a click (or Enter) on their header. */
  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { class: "empty" }, empty);
    const body = el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))));
    const sortBy = (i, th) => {
      const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      for (const other of th.parentNode.children) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      const key = (tr) => {
        const text = tr.children[i] ? tr.children[i].textContent.trim() : "";
        const n = parseFloat(text.replace(/[$,%\s]/g, ""));
        return Number.isNaN(n) ? text.toLowerCase() : n;
      };
      const sorted = [...body.children].sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * dir;
        return (typeof x === "number" ? -1 : 1) * dir;
      });
      body.replaceChildren(...sorted);
    };
    const head = headers.map((h, i) => {
      if (!h) return el("th", { scope: "col" });
      const th = el("th", { scope: "col" });
      th.append(el("button", { type: "button", class: "sort", onclick: () => sortBy(i, th) }, h));
      return th;
    });
    return el("table", {}, el("thead", {}, el("tr", {}, head)), body);
  }

  function card(label, value, id) {
    return el("div", { class: "card" }, el("span", { class: "label" }, label), el("strong", { id }, value));
  }

  /** An action button (never rendered for viewers). */
  function action(label, onclick, extra) {
    if (!admin) return null;
    return el("button", Object.assign({ type: "button", class: "action", onclick }, extra || {}), label);
  }

  function notice(text, kind) {
    const n = el("p", { class: "notice " + (kind || ""), role: "status" }, text);
    content.prepend(n);
    return n;
  }

  // ---- refresh loop --------------------------------------------------------

  let lastGood = null;

  /** Renders `render()`'s nodes; on failure keeps the old ones and says so. */
  async function refresh(render) {
    try {
      const nodes = await render();
      content.replaceChildren(...nodes);
      lastGood = Date.now();
      status.className = "refresh ok";
      status.textContent = "Last refreshed " + time(lastGood) + " · every " + refreshSecs + " s";
    } catch (err) {
      status.className = "refresh failed";
      status.textContent =
        "Refresh failed at " + time(Date.now()) + " (" + err.message + ")" +
        (lastGood ? "; showing data from " + time(lastGood) : "; no data yet");
    }
  }

  function every(render) {
    refresh(render);
    setInterval(() => refresh(render), refreshSecs * 1000);
  }

  // ---- organization filter -------------------------------------------------

  // The org the health and analytics pages show (`?org=ID` in the page's
  // address, "" for the whole deployment); the APIs decide who may read it.
  let orgName = new URLSearchParams(window.location.search).get("org") || "";

  /** `?org=…` (or `&org=…` after `sep`) for the APIs, empty for all. */
  function orgQuery(sep) {
    return orgName ? sep + "org=" + encodeURIComponent(orgName) : "";
  }

  /** The organization selector, or nothing when there are no orgs (or the
   *  org list cannot be read); changing it re-renders the page. */
  async function orgSelector() {
    let orgs = [];
    try {
      orgs = (await api("/admin/orgs")).orgs || [];
    } catch (_) {
      return null;
    }
    if (!orgs.length && !orgName) return null;
    const select = el(
      "select",
      {
        id: "org-select",
        onchange: (e) => {
          orgName = e.target.value;
          const url = new URL(window.location.href);
          if (orgName) url.searchParams.set("org", orgName);
          else url.searchParams.delete("org");
          window.history.replaceState(null, "", url);
          refresh(pages[page] || pages.overview);
        },
      },
      el("option", { value: "", selected: !orgName }, "All organizations"),
      orgs.map((o) => el("option", { value: o.id, selected: o.id === orgName }, o.name && o.name !== o.id ? o.name + " (" + o.id + ")" : o.id))
    );
    return el("p", { class: "org-filter" }, el("label", { for: "org-select" }, "Organization "), select);
  }

  // ---- production health ---------------------------------------------------

  async function healthNodes() {
    const h = await api("/api/health" + orgQuery("?"), { allow503: true });
    const sh = h.systemHealth || {};
    const word = sh.status || "UNKNOWN";
    const em = h.emergencyMode || {};
    const emergency = h.emergency || {};
    return [
      section(
        orgName ? "Production health: " + orgName : "Production health",
        el(
          "div",
          { class: "cards" },
          el(
            "div",
            { class: "card status " + word.toLowerCase() },
            el("span", { class: "label" }, "Status"),
            el("strong", { id: "health-status" }, word)
          ),
          card("Score", num(sh.score), "health-score"),
          card("Uptime", num(h.uptime, 1) + " %", "health-uptime"),
          card("Emergency", em.active ? "ACTIVE (" + (em.mode || "") + ")" : "off", "health-emergency")
        ),
        em.active
          ? el("p", { class: "notice failed" }, "Emergency mode is on: " + (em.setBy ? "set by " + em.setBy : emergency.reason || em.mode || "automatic"))
          : null,
        admin
          ? el(
              "p",
              { class: "emergency-actions" },
              "Emergency override: ",
              action("Force on", () => emergencyMode("on"), { "data-emergency": "on" }),
              " ",
              action("Force off", () => emergencyMode("off"), { "data-emergency": "off" }),
              " ",
              action("Automatic", () => emergencyMode("auto"), { "data-emergency": "auto" })
            )
          : null,
        (sh.issues || []).length ? el("ul", { class: "issues" }, sh.issues.map((i) => el("li", {}, i))) : null,
        el("h3", {}, "Component checks"),
        table(
          ["Component", "Check", "Latency", "Detail"],
          (h.components || []).map((c) => [
            c.name,
            el("span", { class: c.ok ? "ok" : "bad" }, c.ok ? "ok" : "failing"),
            num(c.latency_ms) + " ms",
            c.error || "",
          ]),
          "No component checks reported."
        ),
        el("h3", {}, "Active alerts"),
        table(
          ["Alert", "Severity", "Source"],
          (h.activeAlerts || []).map((a) => [a.name || a.id, a.severity || "", a.source || ""]),
          "No active alerts."
        )
      ),
    ];
  }

  async function emergencyMode(mode) {
    const what = { on: "Force emergency mode ON (cheapest tier for everyone, rollouts paused)?", off: "Force emergency mode OFF?", auto: "Return emergency mode to automatic?" }[mode];
    if (!window.confirm(what)) return;
    try {
      await api("/admin/emergency", { method: "PUT", body: { mode } });
      await refresh(pages[page] || healthNodes);
    } catch (err) {
      notice("Emergency override failed: " + err.message, "failed");
    }
  }

  // ---- analytics -----------------------------------------------------------

  let windowName = "1h";

  /** A horizontal SVG bar chart of `[label, value]` pairs. */
  function barChart(title, pairs, unit) {
    if (!pairs.length) return el("p", { class: "empty" }, "No traffic in this window yet: send a request to /v1/chat/completions.");
    const max = Math.max(1, ...pairs.map((p) => p[1]));
    const rowH = 26;
    const width = 640;
    const labelW = 220;
    const chart = svg(
      "svg",
      { viewBox: `0 0 ${width} ${pairs.length * rowH + 10}`, role: "img", "aria-label": title, class: "chart" },
      svg("title", {}, title),
      pairs.map(([label, value], i) => {
        const w = ((width - labelW - 80) * value) / max;
        const y = i * rowH + 5;
        return svg(
          "g",
          { class: "bar" },
          svg("text", { x: 0, y: y + 16, class: "bar-label" }, label),
          svg("rect", { x: labelW, y, width: Math.max(w, 1), height: rowH - 8, rx: 2 }),
          svg("text", { x: labelW + w + 6, y: y + 16, class: "bar-value" }, num(value) + (unit || ""))
        );
      })
    );
    return el("figure", {}, chart, el("figcaption", {}, title));
  }

  /** An SVG column chart of the window's series: requests per point, the
   *  errors among them darker; each point carries its figures for tests. */
  function seriesChart(title, points) {
    const total = points.reduce((n, p) => n + p.requests, 0);
    if (!total) return el("p", { class: "empty" }, "No requests in this window yet: the chart fills as traffic arrives.");
    const width = 640, height = 160, left = 40, bottom = 20;
    const max = Math.max(1, ...points.map((p) => p.requests));
    const w = (width - left) / points.length;
    const y = (v) => height - bottom - ((height - bottom - 10) * v) / max;
    const label = (at) => new Date(at * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    const chart = svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart series" },
      svg("title", {}, title),
      svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }),
      svg("text", { x: 0, y: 14, class: "tick" }, num(max)),
      svg("text", { x: 0, y: height - bottom, class: "tick" }, "0"),
      svg("text", { x: left, y: height - 4, class: "tick" }, label(points[0].at)),
      svg("text", { x: width, y: height - 4, class: "tick end" }, label(points[points.length - 1].at)),
      points.filter((p) => p.requests > 0).map((p) => {
        const i = points.indexOf(p);
        const x = left + i * w;
        return svg(
          "g",
          { class: "point", "data-at": p.at, "data-requests": p.requests, "data-errors": p.errors },
          svg("title", {}, `${label(p.at)}: ${p.requests} requests, ${p.errors} errors, p95 ${num(p.p95Ms)} ms`),
          svg("rect", { x: x + 1, y: y(p.requests), width: Math.max(w - 2, 1), height: height - bottom - y(p.requests) }),
          p.errors ? svg("rect", { x: x + 1, y: y(p.errors), width: Math.max(w - 2, 1), height: height - bottom - y(p.errors), class: "errors" }) : null
        );
      })
    );
    return el("figure", {}, chart, el("figcaption", {}, title));
  }

  // The overlay chart's choices (kept across refreshes and windows).
  let overlayMetric = "p95Ms";
  let overlayBy = "model";
  const OVERLAY_METRICS = { p50Ms: ["p50 latency", " ms"], p95Ms: ["p95 latency", " ms"], p99Ms: ["p99 latency", " ms"], avgQuality: ["quality (0–10)", ""], costUsd: ["cost", " USD"], requests: ["requests", ""] };
  const OVERLAY_BY = ["model", "provider", "tier", "variant"];

  /** An SVG line chart overlaying one line per group of `seriesBy[by]`
   *  (at the points `at` of the overall series); `null` values are gaps.
   *  Each point carries its figure for tests (`data-value`). */
  function overlayChart(at, groups, metric) {
    const [name, unit] = OVERLAY_METRICS[metric];
    const lines = Object.entries(groups || {}).filter(([, g]) => (g[metric] || []).some((v) => v !== null && v !== 0));
    if (!lines.length) return el("p", { class: "empty", id: "overlay-empty" }, "No " + name + " in this window yet: the chart fills as traffic arrives.");
    const width = 640, height = 200, left = 48, bottom = 20, top = 10;
    const values = lines.flatMap(([, g]) => g[metric].filter((v) => v !== null));
    const max = Math.max(...values) || 1;
    const x = (i) => left + ((width - left - 8) * i) / Math.max(at.length - 1, 1);
    const y = (v) => height - bottom - ((height - bottom - top) * v) / max;
    const fmt = (v) => (metric === "costUsd" ? num(v, 4) : metric === "avgQuality" ? num(v, 1) : num(v));
    const label = (t) => new Date(t * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    const paths = lines.map(([key, g], n) => {
      // Break the line where a point has no value instead of drawing to 0.
      let d = "";
      g[metric].forEach((v, i) => {
        if (v === null) return;
        d += (d && g[metric][i - 1] !== null && i > 0 ? " L" : " M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      });
      return svg(
        "g",
        { class: "line s" + (n % 8), "data-group": key },
        svg("path", { d: d.trim() }),
        g[metric].map((v, i) =>
          v === null ? null : svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, "data-at": at[i], "data-value": v },
            svg("title", {}, key + " " + label(at[i]) + ": " + fmt(v) + unit))
        )
      );
    });
    const chart = svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": name + " per " + overlayBy, class: "chart overlay", id: "overlay-chart" },
      svg("title", {}, name + " per " + overlayBy),
      svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }),
      svg("text", { x: 0, y: top + 4, class: "tick" }, fmt(max)),
      svg("text", { x: 0, y: height - bottom, class: "tick" }, "0"),
      svg("text", { x: left, y: height - 4, class: "tick" }, label(at[0])),
      svg("text", { x: width, y: height - 4, class: "tick end" }, label(at[at.length - 1])),
      paths
    );
    const legend = el("ul", { class: "legend" }, lines.map(([key], n) => el("li", { class: "s" + (n % 8) }, key)));
    return el("figure", {}, chart, legend, el("figcaption", {}, name + unit + " per " + overlayBy + " (one line each, gaps where it had no requests)"));
  }

  /** The overlay chart with its metric and grouping selectors. */
  function overlay(m) {
    const rerender = () => refresh(pages[page] || pages.overview);
    const select = (id, label, options, value, set) =>
      el("label", { for: id }, label + " ",
        el("select", { id, onchange: (e) => { set(e.target.value); rerender(); } },
          options.map(([v, text]) => el("option", { value: v, selected: v === value }, text))));
    return el(
      "div",
      { class: "overlay-box" },
      el("h3", {}, "Trends per group"),
      el("p", { class: "filter" },
        select("overlay-metric", "Metric", Object.entries(OVERLAY_METRICS).map(([k, v]) => [k, v[0]]), overlayMetric, (v) => { overlayMetric = v; }),
        " ",
        select("overlay-by", "per", OVERLAY_BY.map((b) => [b, b]), overlayBy, (v) => { overlayBy = v; })),
      overlayChart((m.series || []).map((p) => p.at), (m.seriesBy || {})[overlayBy], overlayMetric)
    );
  }

  async function analyticsNodes() {
    const m = await api("/api/metrics?window=" + encodeURIComponent(windowName) + orgQuery("&"));
    const t = m.totals || {};
    const breakdown = (name, group) =>
      el(
        "div",
        {},
        el("h3", {}, "By " + name),
        table(
          [name, "Requests", "Error rate", "Fallback rate", "p50", "p95", "p99", "Quality", "Cost (USD)"],
          Object.entries(group || {}).map(([k, v]) => [
            k, num(v.requests), pct(v.errorRate), pct(v.fallbackRate),
            num(v.p50Ms) + " ms", num(v.p95Ms) + " ms", num(v.p99Ms) + " ms",
            num(v.avgQuality, 1), num(v.costUsd, 4),
          ]),
          "No traffic in this window yet."
        )
      );
    const windows = ["1h", "24h", "7d", "30d"].map((w) =>
      el("button", {
        type: "button",
        class: "window" + (w === windowName ? " selected" : ""),
        "aria-pressed": w === windowName ? "true" : "false",
        onclick: () => { windowName = w; refresh(pages[page] || pages.overview); },
      }, w)
    );
    return [
      section(
        orgName ? "Analytics: " + orgName : "Analytics",
        el("div", { class: "windows", role: "group", "aria-label": "Window" }, windows),
        el(
          "div",
          { class: "cards" },
          card("Requests", num(t.requests), "metric-requests"),
          card("Error rate", pct(t.errorRate), "metric-error-rate"),
          card("Fallback rate", pct(t.fallbackRate), "metric-fallback-rate"),
          card("Cache hit rate", pct(t.cacheHitRate), "metric-cache-hit-rate"),
          card("p95 latency", num(t.p95Ms) + " ms", "metric-p95"),
          card("Cost", "$" + num(t.costUsd || 0, 4), "metric-cost"),
          card("Trend", m.trend || "–", "metric-trend")
        ),
        seriesChart("Requests over the last " + windowName + " (errors darker)", m.series || []),
        page === "analytics" ? overlay(m) : null,
        barChart(
          "Requests per model (" + windowName + ")",
          Object.entries(m.byModel || {}).map(([k, v]) => [k, v.requests || 0])
        ),
        breakdown("provider", m.byProvider),
        breakdown("model", m.byModel),
        breakdown("tier", m.byTier),
        breakdown("variant", m.byVariant)
      ),
    ];
  }

  // ---- flags ---------------------------------------------------------------

  /** A flag's live evaluation counts per variant as small bars. */
  function evaluationBars(key, ev) {
    const variants = Object.entries((ev && ev.variants) || {}).sort((a, b) => b[1] - a[1]);
    if (!variants.length) return el("span", { class: "empty", "data-evaluations": key }, "none yet");
    const max = Math.max(1, ...variants.map((v) => v[1]));
    return el(
      "span",
      { class: "evaluations", "data-evaluations": key },
      variants.map(([variant, n]) =>
        el("span", { class: "evaluation", "data-variant": variant, "data-count": n },
          svg("svg", { viewBox: "0 0 60 8", class: "usage-bar", role: "img", "aria-label": variant + " " + n },
            svg("rect", { x: 0, y: 0, width: 60, height: 8, class: "track" }),
            svg("rect", { x: 0, y: 0, width: Math.max((60 * n) / max, 0.5), height: 8, class: "fill" })),
          " " + variant + " " + num(n))
      )
    );
  }

  async function flagsNodes() {
    const doc = await api("/admin/flags");
    const keys = Object.keys(doc.flags || {}).sort();
    const flag = (k) => "/admin/flags/" + encodeURIComponent(k);
    const [views, evals, r] = await Promise.all([
      Promise.all(keys.map((k) => api(flag(k)))),
      Promise.all(keys.map((k) => api(flag(k) + "/evaluations"))),
      api("/admin/rollouts"),
    ]);
    const rows = views.map((v, i) => {
      const f = v.flag || {};
      const killed = v.killed;
      const toggle = killed
        ? action("Lift kill switch", () => kill(v.key, false), { "data-flag": v.key })
        : action("Kill switch", () => kill(v.key, true), { "data-flag": v.key });
      return [
        el("code", {}, v.key),
        f.state || "",
        Object.keys(f.variants || {}).join(", "),
        f.defaultVariant || "",
        f.targeting ? "targeting rules" : "default only",
        evaluationBars(v.key, evals[i]),
        killed ? el("span", { class: "bad", "data-killed": v.key }, "KILLED → " + killed.variant) : "live",
        [toggle, " ", action("Edit", () => editFlag(v.key, f), { "data-edit": v.key })],
      ];
    });
    const rollouts = r.rollouts || [];
    const details = await Promise.all(rollouts.map((ro) => api(flag(ro.flag) + "/rollout")));
    return [
      section(
        "Flags",
        el("p", { class: "hint" }, "Evaluations: every OFREP answer per variant, including the last minutes not yet folded into the totals."),
        table(["Flag", "State", "Variants", "Default", "Targeting", "Evaluations", "Kill switch", ""], rows, "No flags yet: PUT a flagd document to /admin/flags.")
      ),
      el("div", { id: "flag-editor" }),
      section("Rollouts", rolloutTable(rollouts), details.map(rolloutDetail)),
    ];
  }

  const DECISION_CLASS = { "rollout-rollback": "bad", "rollout-cancel": "bad", "rollout-pause": "warn", "rollout-complete": "ok", "rollout-advance": "ok" };

  /** One rollout's guards against their thresholds and its decisions over
   *  time (from the audit log), under the rollout table. */
  function rolloutDetail(ro) {
    const guards = (ro.guards || []).map((g) => [
      g.metric,
      g.vs === "control" ? "control ± " + num(g.threshold, 4) : num(g.threshold, 4),
      duration(g.window_secs * 1000),
      g.variant.value === null ? "–" : num(g.variant.value, 4),
      g.vs === "control" ? (g.control.value === null ? "–" : num(g.control.value, 4)) : "",
      g.bound === null ? "–" : num(g.bound, 4),
      num(g.variant.samples) + " of " + num(g.min_samples),
      el("span", { class: g.state === "breaching" ? "bad" : g.state === "ok" ? "ok" : "", "data-guard": ro.flag + ":" + g.metric, title: g.note || "" }, g.state + (g.note ? " (" + g.note + ")" : "")),
    ]);
    const trail = (ro.audit || []).slice().reverse();
    return el(
      "article",
      { class: "rollout", "data-rollout-detail": ro.flag },
      el("h3", {}, ro.flag + ": " + ro.variant + " vs " + ro.control + " (" + ro.status + ", " + num(ro.percent) + " %)"),
      el("h4", {}, "Guards now"),
      table(["Metric", "Threshold", "Window", "Variant", "Control", "Bound", "Samples", "State"], guards, "No guards: the rollout advances on time and samples only."),
      el("h4", {}, "Decisions over time"),
      timeline(ro.flag, trail),
      table(
        ["When", "Decision", "Share", "Actor", "Reason"],
        trail.map((e) => [
          new Date(e.at).toLocaleString(),
          el("span", { class: DECISION_CLASS[e.action] || "" }, String(e.action).replace("rollout-", "")),
          e.after && e.after.percent !== undefined ? num(e.after.percent) + " %" : "–",
          e.actor,
          (e.after && e.after.reason) || "",
        ]),
        "No decisions recorded yet."
      )
    );
  }

  /** The served share after each decision, as a step line over time. */
  function timeline(flag, trail) {
    const points = trail.filter((e) => e.after && typeof e.after.percent === "number");
    if (!points.length) return null;
    const width = 640, height = 90, left = 36, bottom = 18;
    const t0 = points[0].at, t1 = Math.max(Date.now(), points[points.length - 1].at + 1);
    const x = (t) => left + ((width - left - 8) * (t - t0)) / (t1 - t0);
    const y = (p) => height - bottom - ((height - bottom - 6) * p) / 100;
    let d = "";
    points.forEach((e, i) => {
      d += (i ? " L" + x(e.at).toFixed(1) + " " + y(points[i - 1].after.percent).toFixed(1) + " L" : "M") + x(e.at).toFixed(1) + " " + y(e.after.percent).toFixed(1);
    });
    d += " L" + x(t1).toFixed(1) + " " + y(points[points.length - 1].after.percent).toFixed(1);
    return svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "share of " + flag + " over time", class: "chart timeline", "data-timeline": flag },
      svg("text", { x: 0, y: 12, class: "tick" }, "100 %"),
      svg("text", { x: 0, y: height - bottom, class: "tick" }, "0 %"),
      svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }),
      svg("path", { d, class: "share" }),
      points.map((e) =>
        svg("circle", { cx: x(e.at).toFixed(1), cy: y(e.after.percent).toFixed(1), r: 4, class: "decision " + (DECISION_CLASS[e.action] || ""), "data-action": e.action },
          svg("title", {}, new Date(e.at).toLocaleString() + ": " + e.action.replace("rollout-", "") + " → " + e.after.percent + " %" + (e.after.reason ? " (" + e.after.reason + ")" : "")))
      )
    );
  }

  function rolloutTable(rollouts) {
    const rows = rollouts.map((ro) => {
      const ops = [];
      if (ro.status === "active") ops.push(action("Pause", () => rolloutOp(ro.flag, "pause"), { "data-rollout": ro.flag }));
      if (ro.status === "paused") ops.push(action("Resume", () => rolloutOp(ro.flag, "resume"), { "data-rollout": ro.flag }));
      if (["paused", "rolled_back", "cancelled"].includes(ro.status)) ops.push(action("Restart", () => rolloutOp(ro.flag, "restart"), { "data-rollout": ro.flag }));
      if (["active", "paused"].includes(ro.status)) ops.push(action("Cancel", () => rolloutOp(ro.flag, "cancel"), { "data-rollout": ro.flag }));
      return [
        el("code", {}, ro.flag),
        ro.variant + " vs " + ro.control,
        ro.status,
        el("span", {}, el("progress", { max: 100, value: ro.percent, "aria-label": ro.flag + " rollout percent" }), " " + num(ro.percent) + " %"),
        "step " + (Number(ro.step) + 1) + " of " + ro.steps,
        ro.reason || "",
        ops,
      ];
    });
    return table(["Flag", "Variant", "Status", "Share", "Step", "Reason", ""], rows, "No rollouts: start one with PUT /admin/flags/{key}/rollout.");
  }

  async function rolloutOp(flag, op) {
    if (!window.confirm(op[0].toUpperCase() + op.slice(1) + " the rollout of " + flag + "?")) return;
    const base = "/admin/flags/" + encodeURIComponent(flag) + "/rollout";
    try {
      await api(op === "cancel" ? base : base + "/" + op, { method: op === "cancel" ? "DELETE" : "POST" });
      await refresh(flagsNodes);
    } catch (err) {
      notice("Rollout " + op + " failed: " + err.message, "failed");
    }
  }

  /** Edits one flag as JSON; the server's validation error is shown at the
   *  editor, naming its field. */
  function editFlag(key, flag) {
    const box = document.getElementById("flag-editor");
    const text = el("textarea", { id: "flag-json", rows: 14, cols: 80, "aria-describedby": "flag-error", spellcheck: "false" });
    text.value = JSON.stringify(flag, null, 2);
    const error = el("p", { id: "flag-error", class: "error", role: "alert" });
    const save = async (event) => {
      event.preventDefault();
      let body;
      try {
        body = JSON.parse(text.value);
      } catch (err) {
        error.textContent = "Not valid JSON: " + err.message;
        return;
      }
      try {
        await api("/admin/flags/" + encodeURIComponent(key), { method: "PUT", body });
        await refresh(flagsNodes);
        notice("Flag " + key + " saved.", "ok").id = "flag-saved";
      } catch (err) {
        // Name the field first, unless the server's message already does.
        const named = !err.field || err.message.startsWith(err.field);
        error.textContent = (named ? "" : err.field + ": ") + err.message;
        text.setAttribute("aria-invalid", "true");
      }
    };
    box.replaceChildren(
      section(
        "Edit " + key,
        el(
          "form",
          { onsubmit: save, class: "editor" },
          el("label", { for: "flag-json" }, "Flag " + key + " (flagd JSON)"),
          text,
          error,
          el("button", { type: "submit", class: "action", id: "flag-save" }, "Save flag"),
          " ",
          el("button", { type: "button", onclick: () => box.replaceChildren() }, "Close")
        )
      )
    );
    text.focus();
  }

  async function kill(key, on) {
    const question = on
      ? "Turn on the kill switch of " + key + "? Everyone gets its default variant at once."
      : "Lift the kill switch of " + key + "?";
    if (!window.confirm(question)) return;
    try {
      await api("/admin/flags/" + encodeURIComponent(key) + "/kill", { method: on ? "POST" : "DELETE" });
      await refresh(flagsNodes);
    } catch (err) {
      notice("Kill switch failed: " + err.message, "failed");
    }
  }

  // ---- keys ----------------------------------------------------------------

  let createdKey = null;

  /** A bar of `used` out of `limit` (no limit: the figure alone). */
  function usageBar(label, used, limit, fmt) {
    if (!limit) return el("span", { class: "usage" }, fmt(used) + " (no limit)");
    const share = Math.min(1, used / limit);
    return el(
      "span",
      { class: "usage" },
      svg("svg", { viewBox: "0 0 100 8", class: "usage-bar", role: "img", "aria-label": label + " " + Math.round(share * 100) + " %" },
        svg("rect", { x: 0, y: 0, width: 100, height: 8, class: "track" }),
        svg("rect", { x: 0, y: 0, width: Math.max(share * 100, 0.5), height: 8, class: share >= 0.9 ? "fill hot" : "fill" })),
      " " + fmt(used) + " of " + fmt(limit)
    );
  }

  async function keysNodes() {
    const k = await api("/admin/keys");
    const details = await Promise.all((k.keys || []).map((key) => api("/admin/keys/" + encodeURIComponent(key.id))));
    const dollars = (micros) => "$" + (micros / 1e6).toFixed(2);
    const rows = details.map((key) => {
      const u = key.usage || {};
      const l = key.limits || {};
      return [
        el("code", {}, key.id),
        key.name,
        key.prefix,
        new Date(key.created_at).toLocaleString(),
        key.revoked_at ? "revoked " + new Date(key.revoked_at).toLocaleString() : "active",
        el("span", { "data-budget": key.id }, usageBar("budget", u.spent_micros || 0, l.monthly_budget_micros, dollars)),
        usageBar("requests this minute", u.window_requests || 0, l.requests_per_minute, num),
        key.revoked_at ? null : action("Revoke", () => revoke(key.id), { "data-key": key.id }),
      ];
    });
    const form = admin
      ? el(
          "form",
          { id: "create-key", onsubmit: createKey },
          el("label", { for: "key-name" }, "Name"),
          el("input", { id: "key-name", name: "name", required: true, maxlength: 128 }),
          el("button", { type: "submit", class: "action" }, "Create key")
        )
      : null;
    // The new key is shown once: kept only until the next render.
    const shown = createdKey
      ? el("p", { class: "notice ok", id: "new-key" }, "New key (shown once, store it now): ", el("code", { id: "new-key-value" }, createdKey))
      : null;
    createdKey = null;
    return [section("API keys", shown, form, table(["Id", "Name", "Prefix", "Created", "State", "Budget this month", "Requests / min", ""], rows, "No keys yet: create one above."))];
  }

  async function createKey(event) {
    event.preventDefault();
    const name = document.getElementById("key-name").value.trim();
    try {
      const res = await api("/admin/keys", { method: "POST", body: { name } });
      createdKey = res.key;
      await refresh(keysNodes);
    } catch (err) {
      notice("Creating the key failed: " + err.message, "failed");
    }
  }

  async function revoke(id) {
    if (!window.confirm("Revoke key " + id + "? Clients using it are refused at once.")) return;
    try {
      await api("/admin/keys/" + encodeURIComponent(id), { method: "DELETE" });
      await refresh(keysNodes);
    } catch (err) {
      notice("Revoking failed: " + err.message, "failed");
    }
  }

  // ---- alerts --------------------------------------------------------------

  async function alertsNodes() {
    const a = await api("/admin/alerts");
    const rows = (a.alerts || []).map((entry) => {
      const s = entry.state || {};
      const id = s.fingerprint;
      return [
        s.name,
        s.severity,
        el("span", { class: s.status === "firing" ? "bad" : "" }, s.status + (s.acknowledged_by ? " (ack by " + s.acknowledged_by + ")" : "")),
        num(s.value, 3),
        entry.summary || "",
        s.status === "firing" && !s.acknowledged_at_ms ? action("Acknowledge", () => alertAction(id, "ack"), { "data-alert": id }) : null,
        s.status === "firing" ? action("Resolve", () => alertAction(id, "resolve"), { "data-alert": id }) : null,
        s.status === "firing" ? action("Silence 2 h", () => silence(s.name), { "data-silence": s.name }) : null,
        s.incidents ? duration(s.total_repair_ms / s.incidents) + " over " + s.incidents : "–",
      ];
    });
    const [rules, silences] = await Promise.all([api("/admin/alerts/rules"), api("/admin/silences")]);
    const incidents = a.incidents || {};
    const responseRow = (label, w) => {
      const x = incidents[w] || {};
      return [label, String(x.incidents || 0), String(x.open || 0), x.mtta_ms == null ? "–" : duration(x.mtta_ms), x.mttr_ms == null ? "–" : duration(x.mttr_ms)];
    };
    return [
      section(
        "Incident response",
        table(["Window", "Incidents", "Open", "Mean time to acknowledge", "Mean time to resolve"], [responseRow("Last 7 days", "7d"), responseRow("Last 30 days", "30d")], "")
      ),
      section("Alerts", table(["Alert", "Severity", "Status", "Value", "Summary", "", "", "", "Mean time to resolve"], rows, "No alert rules or alerts yet.")),
      section(
        "Rules (" + (rules.source || "") + ")",
        table(
          ["Rule", "Metric", "Condition", "Window", "For", "Severity"],
          (rules.rules || []).map((r) => [r.name, r.metric, r.comparison + " " + r.threshold, r.window, r.for || "", r.severity]),
          "No rules."
        )
      ),
      section(
        "Silences",
        table(
          ["Id", "Matchers", "Active", "Ends", "Created by", ""],
          (silences.silences || []).map((x) => [
            el("code", {}, x.id),
            (x.matchers || []).map((m) => m.name + (m.op === "not_equal" ? " != " : " = ") + m.value).join(", ") || JSON.stringify(x.labels || {}),
            x.active ? "yes" : "no",
            x.ends_at ? new Date(x.ends_at).toLocaleString() : "–",
            x.created_by || "",
            action("Remove", () => unsilence(x.id), { "data-unsilence": x.id }),
          ]),
          "No silences."
        )
      ),
    ];
  }

  function duration(ms) {
    if (!(ms >= 0)) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return Math.round(ms / 1000) + " s";
    const m = Math.round(ms / 60000);
    return m < 60 ? m + " min" : (m / 60).toFixed(1) + " h";
  }

  async function silence(name) {
    if (!window.confirm("Silence " + name + " for 2 hours? It still changes state but notifies nobody.")) return;
    try {
      await api("/admin/silences", { method: "POST", body: { labels: { alertname: name }, duration: "2h", comment: "from the console" } });
      await refresh(alertsNodes);
    } catch (err) {
      notice("Silencing failed: " + err.message, "failed");
    }
  }

  async function unsilence(id) {
    if (!window.confirm("Remove silence " + id + "?")) return;
    try {
      await api("/admin/silences/" + encodeURIComponent(id), { method: "DELETE" });
      await refresh(alertsNodes);
    } catch (err) {
      notice("Removing the silence failed: " + err.message, "failed");
    }
  }

  async function alertAction(id, what) {
    try {
      await api("/admin/alerts/" + encodeURIComponent(id) + "/" + what, { method: "POST" });
      await refresh(alertsNodes);
    } catch (err) {
      notice("Alert " + what + " failed: " + err.message, "failed");
    }
  }


  // ---- experiments ---------------------------------------------------------

  /** Each variant's interval drawn on one shared scale, its value a dot. */
  function intervals(variants) {
    const withCi = variants.filter((v) => Array.isArray(v.ci));
    if (!withCi.length) return null;
    const lo = Math.min(...withCi.map((v) => v.ci[0]));
    const hi = Math.max(...withCi.map((v) => v.ci[1]));
    const span = hi - lo || 1;
    const width = 360, left = 90, rowH = 22;
    const x = (v) => left + ((width - left - 10) * (v - lo)) / span;
    return svg(
      "svg",
      { viewBox: `0 0 ${width} ${withCi.length * rowH + 6}`, role: "img", "aria-label": "confidence intervals", class: "chart intervals" },
      withCi.map((v, i) => {
        const y = i * rowH + 12;
        return svg(
          "g",
          { class: "interval" },
          svg("text", { x: 0, y: y + 4 }, v.variant),
          svg("line", { x1: x(v.ci[0]), y1: y, x2: x(v.ci[1]), y2: y, class: "ci" }),
          svg("circle", { cx: x(v.value), cy: y, r: 4 })
        );
      })
    );
  }

  async function experimentsNodes() {
    const list = await api("/admin/experiments");
    const reports = await Promise.all((list.experiments || []).map((e) => api("/admin/experiments/" + encodeURIComponent(e.key))));
    if (!reports.length) return [section("Experiments", el("p", { class: "empty" }, "No experiments yet: PUT a definition to /admin/experiments/{key}."))];
    return [
      section(
        "Experiments",
        reports.map((r) => {
          const v = r.verdict || {};
          const srm = (r.units || {}).srm || {};
          return el(
            "article",
            { class: "experiment" },
            el("h3", {}, r.key + " (flag " + r.flag + ")"),
            el("p", {}, el("strong", {}, "Verdict: " + (v.decision || "–") + (v.variant ? " " + v.variant : "")), " ", (v.reasons || []).join(" ")),
            srm.mismatch ? el("p", { class: "notice failed" }, "Sample ratio mismatch (p = " + num(srm.p_value, 4) + "): the split is broken; do not trust the results.") : null,
            (r.metrics || []).map((m) =>
              el(
                "div",
                {},
                el("h4", {}, m.name + " (" + m.role + ")"),
                table(
                  ["Variant", "n", "Value", "Interval", "Lift", "p-value", "Outcome"],
                  (m.variants || []).map((x) => {
                    const c = x.comparison || {};
                    return [
                      x.variant, num(x.n), num(x.value, 4),
                      Array.isArray(x.ci) ? num(x.ci[0], 4) + " – " + num(x.ci[1], 4) : "–",
                      c.relative_lift === undefined || c.relative_lift === null ? "–" : pct(c.relative_lift),
                      c.p_value === undefined || c.p_value === null ? "–" : Number(c.p_value).toPrecision(3),
                      c.outcome || (x.variant === r.control ? "control" : "–"),
                    ];
                  }),
                  "No data yet."
                ),
                intervals(m.variants || [])
              )
            )
          );
        })
      ),
    ];
  }

  // ---- models --------------------------------------------------------------

  async function modelsNodes() {
    const m = await api("/admin/models");
    const unpriced = (v) => v === null || v === undefined;
    const price = (v) => (unpriced(v) ? el("span", { class: "bad" }, "no price") : "$" + num(v, 2));
    const models = m.models || [];
    const waiting = models.filter((x) => unpriced(x.input_usd_per_1m) || unpriced(x.output_usd_per_1m));
    return [
      waiting.length
        ? section(
            "Models waiting for a price",
            el("p", {}, "Discovered models are not routed until priced."),
            waiting.map((x) => priceForm(x))
          )
        : null,
      section(
        "Models",
        table(
          ["Provider", "Model", "Tier", "Input / 1M", "Output / 1M", "Context", "Capabilities"],
          models.map((x) => [x.provider, el("code", {}, x.model), x.tier, price(x.input_usd_per_1m), price(x.output_usd_per_1m), num(x.context_window), (x.capabilities || []).join(", ")]),
          "No models in the catalog."
        )
      ),
    ].filter(Boolean);
  }

  /** A form pricing one model (admin only; viewers see the list above). */
  function priceForm(model) {
    const id = (model.provider + "-" + model.model).replace(/[^A-Za-z0-9_-]/g, "_");
    if (!admin) return el("p", {}, model.provider + "/" + model.model);
    const input = el("input", { id: "in-" + id, type: "number", min: 0, step: "any", required: true, "aria-label": "input USD per 1M tokens" });
    const output = el("input", { id: "out-" + id, type: "number", min: 0, step: "any", required: true, "aria-label": "output USD per 1M tokens" });
    const error = el("span", { class: "error", role: "alert" });
    const submit = async (event) => {
      event.preventDefault();
      const body = Object.assign({}, model, { input_usd_per_1m: Number(input.value), output_usd_per_1m: Number(output.value) });
      delete body.provider;
      delete body.model;
      try {
        await api("/admin/models/" + encodeURIComponent(model.provider) + "/" + encodeURIComponent(model.model), { method: "PUT", body });
        await refresh(modelsNodes);
      } catch (err) {
        error.textContent = err.message;
      }
    };
    return el(
      "form",
      { class: "filter", onsubmit: submit, "data-price": model.provider + "/" + model.model },
      el("code", {}, model.provider + "/" + model.model),
      " input $", input, " output $", output, " per 1M tokens ",
      el("button", { type: "submit", class: "action" }, "Set price"),
      error
    );
  }

  // ---- audit ---------------------------------------------------------------

  let auditFlag = "";

  async function auditNodes() {
    const q = "/admin/audit?limit=100" + (auditFlag ? "&flag=" + encodeURIComponent(auditFlag) : "");
    const a = await api(q);
    const filter = el(
      "form",
      { class: "filter", onsubmit: (e) => { e.preventDefault(); auditFlag = document.getElementById("audit-flag").value.trim(); refresh(auditNodes); } },
      el("label", { for: "audit-flag" }, "Flag"),
      el("input", { id: "audit-flag", value: auditFlag, placeholder: "all flags" }),
      el("button", { type: "submit" }, "Filter")
    );
    return [
      section(
        "Audit log",
        filter,
        table(
          ["When", "Actor", "Action", "Flag", "Version"],
          (a.entries || []).map((e) => [new Date(e.at).toLocaleString(), e.actor, e.action, e.flag_key || "", num(e.version)]),
          "No entries."
        )
      ),
    ];
  }

  // ---- scans ---------------------------------------------------------------

  // Every scan of dol_core::observe::scans::ALL_SCANS (a unit test of the console checks it).
  const SCANS = [
    "heartbeat", "alerts", "rollouts", "video-jobs", "selection", "probes", "discovery", "report", "retention",
    "recommendations",
  ];

  async function scansNodes() {
    const [h, histories] = await Promise.all([
      api("/api/health", { allow503: true }),
      Promise.all(SCANS.map((name) => api("/admin/scans/" + encodeURIComponent(name) + "?limit=10"))),
    ]);
    const seen = new Map((h.scans || []).map((x) => [x.name, x]));
    const errorOf = (run) => {
      try {
        return (JSON.parse(run.detail || "{}") || {}).error || "";
      } catch (_) {
        return "";
      }
    };
    return [
      section(
        "Scans",
        table(
          ["Scan", "Last run", "Age", ""],
          SCANS.map((name) => {
            const x = seen.get(name);
            return [
              name,
              x ? new Date(x.lastRunMs).toLocaleString() : "never",
              x ? num(x.ageSeconds, 0) + " s" : "–",
              action("Run now", () => runScan(name), { "data-scan": name }),
            ];
          }),
          "No scans."
        )
      ),
      section(
        "Last runs",
        el("p", { class: "hint" }, "The last 10 runs of each scan (cron or run now), newest first; the replica that ran them is not recorded (Spin gives a component no replica identity)."),
        SCANS.map((name, i) =>
          el(
            "div",
            { "data-history": name },
            el("h3", {}, name),
            table(
              ["Started", "Finished", "Outcome", "Duration", "Error"],
              (histories[i].runs || []).map((run) => [
                new Date(run.started_at).toLocaleString(),
                new Date(run.finished_at).toLocaleString(),
                el("span", { class: run.outcome === "ok" ? "ok" : "bad" }, run.outcome),
                num(run.duration_ms) + " ms",
                errorOf(run),
              ]),
              "No runs yet: the cron runs it, or press Run now."
            )
          )
        )
      ),
    ];
  }

  async function runScan(name) {
    try {
      const r = await api("/admin/scans/" + encodeURIComponent(name), { method: "POST" });
      await refresh(scansNodes);
      notice("Scan " + name + " ran: " + ((r.scan && r.scan.status) || "ok"), "ok").id = "scan-result";
    } catch (err) {
      notice("Scan " + name + " failed: " + err.message, "failed");
    }
  }


  // ---- video monitoring ----------------------------------------------------

  async function videoNodes() {
    const h = await api("/api/health", { allow503: true });
    const platforms = h.videoPlatforms || [];
    if (!platforms.length) {
      return [section("Video monitoring", el("p", { class: "empty", id: "video-empty" }, "No video jobs in the last hour and none open: platform health appears once a job is created with POST /v1/videos."))];
    }
    const healthy = platforms.filter((p) => p.healthy).length;
    const statuses = [...new Set(platforms.flatMap((p) => Object.keys(p.jobs || {})))].sort();
    const sum = (f) => platforms.reduce((n, p) => n + (f(p) || 0), 0);
    const usd = (micros) => "$" + num(micros / 1e6, 2);
    return [
      section(
        "Video monitoring",
        el(
          "div",
          { class: "cards" },
          el("div", { class: "card status " + (healthy === platforms.length ? "healthy" : "critical") },
            el("span", { class: "label" }, "Platforms healthy"),
            el("strong", { id: "video-healthy" }, healthy + " of " + platforms.length)),
          card("Open jobs", num(sum((p) => p.open)), "video-open"),
          card("Cost (last hour)", usd(sum((p) => p.costMicros)), "video-cost")
        ),
        el("p", { class: "hint" }, "Over the jobs that ended in the last hour and the open ones; a platform is healthy at 90 % success or more (or with fewer than 3 outcomes)."),
        el("h3", {}, "Platforms"),
        table(
          ["Platform", "Health", "Success rate", "Successes", "Failures", "Open", "Mean queue time", "Mean duration", "Cost", "Cost per second"],
          platforms.map((p) => [
            p.platform,
            el("span", { class: p.healthy ? "ok" : "bad", "data-video-health": p.platform }, p.healthy ? "healthy" : "unhealthy"),
            el("span", { "data-video-success": p.platform }, pct(p.successRate)),
            num(p.successes),
            num(p.failures),
            num(p.open),
            p.avgQueueMs === null ? "–" : duration(p.avgQueueMs),
            p.avgDurationMs === null ? "–" : duration(p.avgDurationMs),
            usd(p.costMicros),
            p.costPerSecondUsd === null || p.costPerSecondUsd === undefined ? "–" : "$" + num(p.costPerSecondUsd, 3) + " / s",
          ]),
          ""
        ),
        el("h3", {}, "Jobs by status"),
        table(
          ["Platform", ...statuses],
          platforms.map((p) => [p.platform, ...statuses.map((st) => num((p.jobs || {})[st] || 0))]),
          ""
        ),
        barChart("Jobs per platform (last hour and open)", platforms.map((p) => [p.platform, Object.values(p.jobs || {}).reduce((a, b) => a + b, 0)]))
      ),
    ];
  }

  // ---- templates -----------------------------------------------------------

  let templateView = null;

  async function templatesNodes() {
    const t = await api("/admin/templates");
    const rows = (t.templates || []).map((x) => [
      el("code", {}, x.name),
      num(x.latest_version),
      new Date(x.updated_at).toLocaleString(),
      x.latest_version > 1
        ? el("button", { type: "button", "data-compare": x.name, onclick: () => { templateView = x; refresh(templatesNodes); } }, "Compare v" + (x.latest_version - 1) + " and v" + x.latest_version)
        : null,
    ]);
    const nodes = [section("Prompt templates", table(["Template", "Latest version", "Updated", ""], rows, "No templates yet: PUT one to /admin/templates/{name}."))];
    if (templateView) {
      const name = encodeURIComponent(templateView.name);
      const v = templateView.latest_version;
      const [older, newer] = await Promise.all([
        api("/admin/templates/" + name + "?version=" + (v - 1)),
        api("/admin/templates/" + name + "?version=" + v),
      ]);
      const pane = (x) => el("div", { class: "pane" }, el("h3", {}, "v" + x.version), el("pre", {}, JSON.stringify(x.template, null, 2)));
      nodes.push(section(templateView.name + ": versions side by side", el("div", { class: "side-by-side", id: "template-compare" }, pane(older), pane(newer))));
    }
    return nodes;
  }

  // ---- optimization --------------------------------------------------------

  function usd(v) {
    return v === null || v === undefined ? "–" : "$" + v.toFixed(4);
  }

  /** The evidence of a recommendation in one line: test, samples, interval, p. */
  function evidenceText(e) {
    const parts = [e.test];
    if (e.samples !== undefined) parts.push("n = " + (typeof e.samples === "object" ? Object.entries(e.samples).map(([k, v]) => k + " " + v).join(", ") : e.samples));
    if (e.interval) parts.push("95 % interval [" + e.interval.map((x) => x.toFixed(3)).join(", ") + "]");
    if (e.pValue !== undefined) parts.push("p = " + Number(e.pValue).toPrecision(3));
    return parts.join(" · ");
  }

  async function optimizationNodes() {
    const [m, r] = await Promise.all([api("/api/metrics?window=24h"), api("/admin/recommendations")]);
    const t = m.totals || {};
    const savings = el("div", { class: "cards" },
      card("Cost (24 h)", usd(t.costUsd), "opt-cost"),
      card("Baseline cost", usd(t.baselineCostUsd), "opt-baseline"),
      card("Saved", usd(t.savedUsd), "opt-saved"),
      card("Saved %", t.savedPct === null || t.savedPct === undefined ? "–" : t.savedPct.toFixed(1) + " %", "opt-saved-pct"));
    const rows = (r.recommendations || []).map((x) => [
      el("span", { "data-recommendation": x.id }, x.title),
      x.kind,
      usd(x.impact.usdPerDay),
      pct(x.confidence),
      evidenceText(x.evidence),
      x.status,
      x.status === "open"
        ? el("span", {},
            x.apply.type === "rollout" ? action("Apply", () => decideRecommendation(x.id, "apply"), { "data-apply": x.id }) : null,
            action("Dismiss", () => decideRecommendation(x.id, "dismiss"), { "data-dismiss": x.id }))
        : null,
    ]);
    const sel = r.selection || {};
    const num = (v) => (v === null || v === undefined ? "–" : v.toFixed(2));
    const cells = (sel.cells || []).map((c) => [c.tier, c.difficulty, String(c.n), num(c.mean), num(c.lower)]);
    const autoInUse = sel.autoVariants && sel.autoVariants.length
      ? "Auto entry: " + sel.flag + " serves auto (" + sel.autoVariants.join(", ") + "); " + (sel.autoEntered || 0) + " auto-entered requests in the last day."
      : "Auto entry is off: no variant of " + sel.flag + " serves \"auto\".";
    return [
      section("Savings against the baseline", savings),
      section("Model selection by difficulty",
        el("p", { id: "opt-auto-entry" }, autoInUse + (sel.error ? " Table: " + sel.error : "")),
        table(["Tier", "Difficulty", "n", "Mean quality", "Lower bound"], cells, "Nothing learned yet: every difficulty is explored from the cheapest tier.")),
      section("Recommendations", table(["Recommendation", "Kind", "USD/day", "Confidence", "Evidence", "Status", ""], rows, "No recommendations: nothing in the last 7 days' telemetry supports one.")),
    ];
  }

  async function decideRecommendation(id, what) {
    try {
      const r = await api("/admin/recommendations/" + encodeURIComponent(id) + "/" + what, { method: "POST" });
      await refresh(optimizationNodes);
      const text = what === "apply" ? "Applied: guarded rollout of " + r.rollout.variant + " at " + r.rollout.percent + " %" : "Dismissed";
      notice(text, "ok").id = "recommendation-result";
    } catch (err) {
      notice(what + " failed: " + err.message, "failed");
    }
  }

  // ---- pages ---------------------------------------------------------------

  function placeholder(title, text) {
    return () => Promise.resolve([section(title, el("p", { class: "empty" }, text))]);
  }

  /** `nodes` under the organization selector. */
  async function withOrgs(nodes) {
    const selector = await orgSelector();
    return selector ? [selector, ...nodes] : nodes;
  }

  const pages = {
    overview: async () => withOrgs([...(await healthNodes()), ...(await analyticsNodes())]),
    "production-health": async () => withOrgs(await healthNodes()),
    analytics: async () => withOrgs(await analyticsNodes()),
    flags: flagsNodes,
    keys: keysNodes,
    alerts: alertsNodes,
    experiments: experimentsNodes,
    models: modelsNodes,
    templates: templatesNodes,
    audit: auditNodes,
    scans: scansNodes,
    optimization: optimizationNodes,
    "video-monitoring": videoNodes,
  };

  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
  }
  const render = pages[page] || pages.overview;
  // Pages with actions refresh after each action instead of on a timer, so
  // a confirmation or a just-created key is not replaced under the operator.
  if (["flags", "keys", "audit", "scans", "models", "templates", "optimization"].includes(page)) refresh(render);
  else every(render);
})();
