// llm-proxy console: reads the admin listener's JSON API and draws SVG
// charts. No dependencies, no build step. Every figure shown comes from a
// documented endpoint, so scripts can read the same numbers.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 640, H = 240, PAD = { l: 56, r: 12, t: 10, b: 28 };
  const PALETTE = ["#4263eb", "#f76707", "#2f9e44", "#ae3ec9", "#1098ad", "#e8590c", "#5c940d", "#d6336c", "#868e96"];
  const CLASS_COLORS = {
    ok: "#2f9e44", client_error: "#fab005", vendor_limited: "#f76707", upstream_error: "#e03131",
    rate_limited: "#ae3ec9", budget_exceeded: "#1098ad", circuit_open: "#c2255c", aborted: "#868e96", other: "#adb5bd",
  };
  const PCT_COLORS = { p50: "#4263eb", p90: "#f76707", p99: "#e03131" };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function html(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  async function getJSON(path) {
    const res = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  // Number formatting.
  function usd(v) {
    if (v === 0) return "$0";
    if (Math.abs(v) < 0.01) return "$" + v.toFixed(4);
    return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function compact(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return String(Math.round(v * 100) / 100);
  }
  function ms(v) {
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
  }

  // niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function bucketLabel(iso, stepSeconds) {
    const d = new Date(iso);
    if (stepSeconds >= 86400) return d.toISOString().slice(5, 10);
    return d.toISOString().slice(11, 16);
  }

  function frame(svg, maxV, labels, fmt) {
    clear(svg);
    const ih = H - PAD.t - PAD.b;
    for (let i = 0; i <= 4; i++) {
      const y = PAD.t + ih - (ih * i) / 4;
      svg.appendChild(el("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "axis" }));
      svg.appendChild(el("text", { x: PAD.l - 6, y: y + 4, "text-anchor": "end" }, fmt((maxV * i) / 4)));
    }
    const iw = W - PAD.l - PAD.r;
    const every = Math.max(1, Math.ceil(labels.length / 8));
    labels.forEach((lab, i) => {
      if (i % every !== 0) return;
      const x = PAD.l + (iw * (i + 0.5)) / labels.length;
      svg.appendChild(el("text", { x: x, y: H - 8, "text-anchor": "middle" }, lab));
    });
  }

  function emptyNote(svg, text) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, text));
  }

  // stackedBars draws one bar per bucket, stacked by series. series:
  // [{name, color, values[]}].
  function stackedBars(svg, labels, series, fmt) {
    const n = labels.length;
    const sums = new Array(n).fill(0);
    series.forEach((s) => s.values.forEach((v, i) => (sums[i] += v)));
    const maxV = niceMax(Math.max(0, ...sums));
    frame(svg, maxV, labels, fmt);
    const ih = H - PAD.t - PAD.b, iw = W - PAD.l - PAD.r;
    const bw = Math.max(1, (iw / n) * 0.7);
    const base = new Array(n).fill(0);
    series.forEach((s) => {
      const g = el("g", { "data-series": s.name, fill: s.color });
      s.values.forEach((v, i) => {
        if (!(v > 0)) return;
        const h = (ih * v) / maxV;
        const y = PAD.t + ih - (ih * base[i]) / maxV - h;
        const x = PAD.l + (iw * (i + 0.5)) / n - bw / 2;
        const r = el("rect", { x: x.toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: Math.max(h, 0.5).toFixed(1), "data-value": v });
        r.appendChild(el("title", {}, s.name + " " + labels[i] + ": " + fmt(v)));
        g.appendChild(r);
        base[i] += v;
      });
      svg.appendChild(g);
    });
    if (sums.every((v) => v === 0)) emptyNote(svg, "no data in this range yet");
  }

  // lines draws one polyline per series.
  function lines(svg, labels, series, fmt) {
    const n = labels.length;
    const maxV = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
    frame(svg, maxV, labels, fmt);
    const ih = H - PAD.t - PAD.b, iw = W - PAD.l - PAD.r;
    series.forEach((s) => {
      const pts = [];
      s.values.forEach((v, i) => {
        if (!(v > 0)) return;
        pts.push((PAD.l + (iw * (i + 0.5)) / n).toFixed(1) + "," + (PAD.t + ih - (ih * v) / maxV).toFixed(1));
      });
      const g = el("g", { "data-series": s.name });
      if (pts.length > 0) {
        g.appendChild(el("polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 2 }));
        pts.forEach((p) => {
          const [x, y] = p.split(",");
          g.appendChild(el("circle", { cx: x, cy: y, r: 2.5, fill: s.color }));
        });
      }
      svg.appendChild(g);
    });
    if (series.every((s) => s.values.every((v) => !(v > 0)))) emptyNote(svg, "no calls in the last hour");
  }

  function legend(node, series, fmt) {
    clear(node);
    series.forEach((s) => {
      const item = html("span", "item");
      item.setAttribute("data-series", s.name);
      const sw = html("span", "swatch");
      sw.style.background = s.color;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s.name + (fmt ? " " + fmt(s.total) : "")));
      node.appendChild(item);
    });
  }

  function renderUsage(u) {
    const labels = u.buckets.map((b) => bucketLabel(b, u.step_seconds));
    const withColor = u.series.map((s, i) => ({ s: s, color: PALETTE[i % PALETTE.length] }));
    const spend = withColor.map(({ s, color }) => ({
      name: s.name, color: color, total: s.total.cost_nanos / 1e9,
      values: s.points.map((p) => p.cost_nanos / 1e9),
    }));
    const tokens = withColor.map(({ s, color }) => ({
      name: s.name, color: color, total: s.total.input_tokens + s.total.output_tokens,
      values: s.points.map((p) => p.input_tokens + p.output_tokens),
    }));
    stackedBars($("chart-spend"), labels, spend, usd);
    legend($("legend-spend"), spend, usd);
    stackedBars($("chart-tokens"), labels, tokens, compact);
    legend($("legend-tokens"), tokens, compact);
    $("tile-spend").textContent = usd(u.total.cost_nanos / 1e9);
    $("tile-tokens").textContent = compact(u.total.input_tokens) + " / " + compact(u.total.output_tokens);
  }

  function renderTraffic(t) {
    const labels = t.buckets.map((b) => bucketLabel(b, t.step_seconds));
    const classes = Object.keys(CLASS_COLORS).filter((c) => (t.summary.classes[c] || 0) > 0);
    const series = classes.map((c) => ({ name: c, color: CLASS_COLORS[c], total: t.summary.classes[c], values: t.classes[c] }));
    stackedBars($("chart-traffic"), labels, series, compact);
    legend($("legend-traffic"), series, compact);
    const pct = ["p50", "p90", "p99"].map((p) => ({ name: p, color: PCT_COLORS[p], total: t.summary.latency_ms[p], values: t.latency_ms[p] }));
    lines($("chart-latency"), labels, pct, ms);
    legend($("legend-latency"), pct, ms);
    const s = t.summary;
    $("tile-rate").textContent = s.requests + " · " + (s.requests_per_second < 1 ?
      (s.requests_per_second * 60).toPrecision(2) + "/min" : s.requests_per_second.toPrecision(3) + "/s");
    const errors = s.requests - (s.classes.ok || 0);
    $("tile-errors").textContent = s.requests === 0 ? "–" : errors + " (" + ((100 * errors) / s.requests).toFixed(1) + "%)";
    $("tile-latency").textContent = s.requests === 0 ? "–" : ms(s.latency_ms.p50) + " / " + ms(s.latency_ms.p99);
  }

  function row(tbody, cells) {
    const tr = html("tr");
    cells.forEach((c) => {
      const td = html("td");
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c;
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    return tr;
  }

  function emptyRow(tbody, cols, text) {
    const tr = html("tr");
    const td = html("td", "empty", text);
    td.colSpan = cols;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }

  function countdown(seconds) {
    if (!(seconds > 0)) return "probe due";
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return (m > 0 ? m + "m " : "") + s + "s left";
  }

  function renderCircuits(c) {
    const tbody = $("circuits").querySelector("tbody");
    clear(tbody);
    if (!c.enabled) {
      emptyRow(tbody, 4, "circuit breaker disabled");
      return;
    }
    const now = Date.now();
    c.providers.forEach((p) => {
      const tr = row(tbody, [p.provider + " (all models)", html("span", "state state-" + p.state, p.state),
        p.failures + " failures in window",
        p.cooldown_until ? countdown(Math.round((Date.parse(p.cooldown_until) - now) / 1000)) : ""]);
      tr.setAttribute("data-circuit", p.provider);
    });
    c.circuits.forEach((k) => {
      const name = k.model ? k.provider + ":" + k.model : k.provider + " (provider-wide)";
      const tr = row(tbody, [name, html("span", "state state-" + k.state, k.state), k.reason,
        k.cooldown_until ? countdown(k.remaining_seconds || 0) : ""]);
      tr.setAttribute("data-circuit", name);
    });
    if (c.providers.length === 0 && c.circuits.length === 0) emptyRow(tbody, 4, "no circuits yet");
  }

  function limitCell(l) {
    const box = html("div");
    const pct = Math.min(100, Math.round(l.used_ratio * 100));
    const fmt = l.metric === "usd" ? usd : compact;
    box.appendChild(html("span", "used", fmt(l.used) + " of " + fmt(l.limit) + " (" + pct + "%)"));
    const bar = html("div", "bar" + (pct >= 90 ? " bad" : pct >= 70 ? " warn" : ""));
    const fill = html("span");
    fill.style.width = pct + "%";
    bar.appendChild(fill);
    box.appendChild(bar);
    return box;
  }

  // resetIn says when a window ends, relative to now.
  function resetIn(iso) {
    const s = Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  const GUARD_LABEL = { rate_limit: "rate", budget: "budget" };
  const METRIC_LABEL = { requests: "req", tokens: "tok", usd: "$" };
  const WINDOW_LABEL = { minute: "min", day: "day", month: "month" };

  function limitLabel(l) {
    return GUARD_LABEL[l.guard] + " " + METRIC_LABEL[l.metric] + "/" + WINDOW_LABEL[l.window];
  }

  // renderHeadroom lists the heaviest users, keys and teams with every
  // limit that applies to them in its current window.
  function renderHeadroom(h) {
    const tbody = $("headroom").querySelector("tbody");
    clear(tbody);
    const note = $("headroom-note");
    const errs = Object.keys(h.errors || {}).map((g) => g + ": " + h.errors[g]);
    note.textContent = (h.ranked_by === "this_instance" ? "ranked by this instance's calls today" :
      h.ranked_by === "usage_ledger" ? "ranked by today's spend (all instances)" : "") +
      (errs.length ? " · unavailable: " + errs.join("; ") : "");
    note.setAttribute("data-errors", String(errs.length));
    if (h.guards.length === 0) {
      emptyRow(tbody, 5, "no budgets or rate limits enabled");
      return;
    }
    let rows = 0;
    h.subjects.forEach((s) => {
      const limits = s.limits.length ? s.limits : [null];
      limits.forEach((l, i) => {
        const who = i === 0 ? html("span", "who") : "";
        if (who) {
          who.appendChild(html("span", "kind kind-" + s.kind, s.kind));
          who.appendChild(document.createTextNode(" " + s.id));
        }
        let today = "";
        if (i === 0) {
          today = html("div", "", usd(s.spend_today_usd));
          today.appendChild(html("div", "muted", s.requests_today + " req"));
        }
        const tr = row(tbody, [who, today, l ? limitLabel(l) : "unlimited", l ? limitCell(l) : "",
          l ? resetIn(l.reset) : ""]);
        tr.setAttribute("data-subject", s.kind + ":" + s.id);
        if (l) tr.setAttribute("data-limit", l.guard + " " + l.metric + "/" + l.window);
        if (i === 0 && rows > 0) tr.className = "first";
        rows++;
      });
    });
    if (rows === 0) emptyRow(tbody, 5, "no callers today");
  }

  // renderFailover tallies the calls another target of their chain
  // served, by requested and serving target, with the share of all calls.
  function renderFailover(f) {
    const tbody = $("failover").querySelector("tbody");
    clear(tbody);
    const note = $("failover-note");
    if (!f.enabled) {
      note.textContent = "";
      emptyRow(tbody, 4, "failover off: no chains in features.failover");
      return;
    }
    const share = f.requests > 0 ? Math.round((f.total / f.requests) * 1000) / 10 : 0;
    note.textContent = f.total + " of " + f.requests + " calls (" + share + "%) served by another target" +
      (f.range === "7d" ? " in 7 days" : " today") + " · chains: " + f.chains.join(", ");
    note.setAttribute("data-total", String(f.total));
    f.routes.forEach((r) => {
      const route = html("span", "who", r.from + " \u2192 " + r.to);
      const tr = row(tbody, [route, r.reason, String(r.calls), new Date(r.last).toLocaleTimeString()]);
      tr.setAttribute("data-route", r.from + ">" + r.to);
      tr.querySelectorAll("td")[2].className = "calls";
    });
    if (f.routes.length === 0) emptyRow(tbody, 4, "no call failed over");
  }

  // renderUnpriced lists the models /health reports as seen without a
  // price, so an operator adds one before the month closes.
  function renderUnpriced(list) {
    const tbody = $("unpriced").querySelector("tbody");
    clear(tbody);
    if (!list) {
      emptyRow(tbody, 3, "not reported by this server");
      return;
    }
    if (list.length === 0) {
      emptyRow(tbody, 3, "every model seen has a price");
      return;
    }
    list.forEach((m) => {
      const tr = row(tbody, [m.provider + "/" + m.model, String(m.requests), new Date(m.last_seen).toLocaleString()]);
      tr.setAttribute("data-unpriced", m.provider + "/" + m.model);
    });
  }

  function setStatus(state, text) {
    const s = $("status");
    s.setAttribute("data-state", state);
    s.textContent = text;
  }

  let inflight = false;
  async function refresh() {
    if (inflight) return;
    inflight = true;
    const range = $("range").value, by = $("by").value;
    try {
      const [health, usage, traffic, circuits, headroom, failover] = await Promise.all([
        getJSON("/health"),
        getJSON("/api/v1/usage?range=" + encodeURIComponent(range) + "&by=" + encodeURIComponent(by)),
        getJSON("/api/v1/traffic?minutes=60"),
        getJSON("/api/v1/circuits"),
        getJSON("/api/v1/headroom?top=5"),
        getJSON("/api/v1/failover?range=" + encodeURIComponent(range)),
      ]);
      setStatus(health.status, health.status + (health.version ? " · " + health.version : ""));
      renderUsage(usage);
      renderTraffic(traffic);
      renderCircuits(circuits);
      renderHeadroom(headroom);
      renderFailover(failover);
      renderUnpriced(health.unpriced_models);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.setAttribute("data-loaded", "true");
    } catch (err) {
      setStatus("error", "refresh failed: " + err.message);
    } finally {
      inflight = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("range").addEventListener("change", refresh);
    $("by").addEventListener("change", refresh);
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
