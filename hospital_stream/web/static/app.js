// The hospital-stream dashboard: polls the worker's JSON every 2 s and redraws each panel.
// Every piece of data reaches the page as a text node or an attribute value (never as HTML),
// and the charts are drawn as SVG elements here: no library, nothing from another origin.
"use strict";

(function () {
  const POLL_MS = 2000;
  const API = "/dashboard/api/";
  const PANELS = ["wards", "schedule", "pipeline", "staffing", "reconciliation", "charts"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PRESSURES = new Set(["green", "amber", "red"]);
  const numbers = new Intl.NumberFormat("en-US");
  const decimals = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
  const drawn = {}; // panel -> the simulated day it was last drawn for (the slow-changing panels)

  // --- building DOM safely ---

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    return fill(node, attrs, children);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    return fill(node, attrs, children);
  }

  function fill(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (name === "class") node.setAttribute("class", value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function put(id, ...nodes) {
    document.getElementById(id).replaceChildren(...nodes.flat().filter((n) => n));
  }

  function text(id, value) {
    document.getElementById(id).textContent = value;
  }

  function pressureClass(pressure) {
    return "pressure-" + (PRESSURES.has(pressure) ? pressure : "unknown");
  }

  // --- formatting ---

  function n(value) {
    return value === null || value === undefined ? "–" : numbers.format(value);
  }

  function pct(value) {
    return value === null || value === undefined ? "–" : decimals.format(value) + " %";
  }

  function bytes(value) {
    if (value === null || value === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (value >= 1000 && i < units.length - 1) {
      value /= 1000;
      i += 1;
    }
    return (i === 0 ? String(value) : decimals.format(value)) + " " + units[i];
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return "under a second";
    const s = Math.round(seconds);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + " d " + h + " h";
    if (h > 0) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m > 0) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    return s + " s";
  }

  function fact(label, value, id) {
    return [el("dt", null, label), el("dd", { id: id }, value)];
  }

  function table(headers, rows, attrs) {
    return el(
      "table",
      attrs,
      el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", null, rows)
    );
  }

  // --- panels ---

  // The ward and staff boards come from this worker's tables: until they are ready, a panel
  // says what they are doing instead of showing numbers.
  function tablesNote(tables) {
    return tables.state === "ready" ? null : el("span", { class: "tables-note" }, tables.message);
  }

  function renderTables(tables) {
    const line = document.getElementById("tables-state");
    line.textContent = tables.state === "ready" ? "" : tables.message;
    line.hidden = tables.state === "ready";
    document.body.dataset.tables = tables.state;
  }

  function renderWards(data) {
    const t = data.totals;
    const day = data.requests_date ? " on " + data.requests_date : "";
    renderTables(data.tables);
    put(
      "ward-summary",
      tablesNote(data.tables),
      el("span", null, "Beds "),
      el("strong", { id: "total-beds" }, n(t.beds)),
      el("span", null, " · occupied "),
      el("strong", { id: "total-occupied" }, n(t.occupied)),
      el("span", { class: pressureClass(t.pressure) + " chip" }, pct(t.occupancy_pct)),
      el("span", null, " · waiting for a bed "),
      el("strong", { id: "total-waiting" }, n(t.waiting_for_bed)),
      el("span", null, " · bed requests" + day + ": admitted "),
      el("strong", { id: "total-admitted" }, n(t.admitted)),
      el("span", null, ", diverted "),
      el("strong", { id: "total-diverted" }, n(t.diverted)),
      el("span", null, ", postponed "),
      el("strong", { id: "total-postponed" }, n(t.postponed))
    );
    put(
      "ward-grid",
      data.wards.map((w) => {
        const bar = el("span", { class: "bar-fill" });
        bar.style.width = Math.min(100, w.occupancy_pct || 0) + "%"; // CSSOM: allowed by the page's CSP
        const requests = w.requests || {};
        return el(
          "article",
          { class: "ward " + pressureClass(w.pressure), "data-ward-id": w.ward_id, title: w.name },
          el("header", null, el("strong", null, w.code), el("span", { class: "pct" }, pct(w.occupancy_pct))),
          el("p", { class: "beds" }, el("span", { class: "occupied" }, n(w.occupied)), " / ", n(w.beds), " beds"),
          el("span", { class: "bar" }, bar),
          el(
            "p",
            { class: "flow" },
            w.waiting_for_bed ? el("span", { class: "alert" }, n(w.waiting_for_bed) + " waiting") : null,
            requests.diverted ? el("span", { class: "alert" }, n(requests.diverted) + " diverted") : null,
            requests.postponed ? el("span", null, n(requests.postponed) + " postponed") : null
          )
        );
      })
    );
    return data.database_error;
  }

  function renderSchedule(data) {
    text("sim-date", data.sim_date || "not started");
    text("day-number", n(data.day_number));
    text("schedule-days", n(data.schedule_days));
    const progress = document.getElementById("schedule-progress");
    progress.value = data.progress_pct;
    const eta =
      data.eta_seconds === null
        ? "unknown"
        : data.eta_seconds === 0
          ? "done"
          : duration(data.eta_seconds) + (data.eta_basis === "schedule" ? " (at the schedule's speed)" : "");
    put(
      "schedule",
      fact("Simulated date", data.sim_date || "–", "schedule-date"),
      fact("Day", n(data.day_number) + " of " + n(data.schedule_days) + " (" + pct(data.progress_pct) + ")", "schedule-day"),
      fact("Run ends after day", n(data.end_day - 1), "schedule-end"),
      fact("Data stored", bytes(data.database_bytes), "database-size"),
      fact("Rows stored (est.)", n(data.rows_stored), "rows-stored"),
      fact("Rows per second", data.rows_per_second === null ? "measuring…" : n(Math.round(data.rows_per_second)), "rows-per-second"),
      fact("Days per second", data.days_per_second === null ? "–" : String(data.days_per_second), "days-per-second"),
      fact("ETA", eta, "eta"),
      fact("Speed", data.speed === null ? "max" : String(data.speed), "speed")
    );
  }

  function renderPipeline(data) {
    const flush = data.sink.last_flush;
    const dead = data.dead_letters;
    put(
      "pipeline-state",
      el("span", { id: "tables", class: data.tables.state === "ready" ? null : "tables-note" }, data.tables.message),
      el("span", null, " · "),
      el("span", { id: "leader", "data-state": data.generator.state }, data.generator.message)
    );
    put(
      "pipeline",
      fact("Consumer lag", data.consumer.lag === null ? "–" : n(data.consumer.lag) + " messages", "consumer-lag"),
      fact("Buffered in the sink", n(data.sink.buffered_messages) + " messages", "buffered"),
      fact(
        "Last flush",
        flush
          ? duration(flush.age_seconds) + " ago, took " + decimals.format(flush.seconds * 1000) + " ms (" +
            n(flush.messages) + " messages, " + n(flush.rows) + " rows)"
          : "none yet",
        "last-flush"
      ),
      fact("Flushes by this worker", n(data.sink.flushes), "flushes"),
      fact("Dead letters", dead ? n(dead.total) + " (" + n(dead.open) + " not replayed)" : "–", "dead-letters")
    );
    put(
      "partitions",
      data.consumer.partitions.length
        ? table(
            ["topic", "partition", "end", "committed", "lag"],
            data.consumer.partitions.map((p) =>
              el("tr", { class: p.lag ? "behind" : null }, el("td", null, p.topic), el("td", null, n(p.partition)),
                el("td", null, n(p.highwater)), el("td", null, n(p.committed === null ? p.position : p.committed)),
                el("td", null, p.lag === null ? "–" : n(p.lag)))
            ),
            { class: "compact" }
          )
        : el("p", { class: "muted" }, "no partitions assigned yet")
    );
    put(
      "recent-dead-letters",
      dead && dead.recent.length
        ? [
            el("h3", null, "Latest dead letters"),
            el(
              "ul",
              { class: "letters" },
              dead.recent.map((d) =>
                el("li", null, el("code", null, "#" + d.id + " " + d.topic + "[" + d.partition + "]@" + d.offset +
                  (d.row_number ? " row " + d.row_number : "")), " ",
                  el("strong", null, d.kind + (d.sim_day === null ? "" : ", day " + d.sim_day)), " ", d.reason)
              )
            ),
          ]
        : null
    );
    return data.database_error;
  }

  function renderStaffing(data) {
    const gaps = data.gaps || []; // null until the tables are ready: not known, not none
    put(
      "staffing-summary",
      tablesNote(data.tables),
      el("span", null, "Staff assigned "),
      el("strong", { id: "staff-count" }, n(data.staff_count)),
      el("span", null, " · wards below their minimum "),
      el("strong", { id: "staffing-gap-wards", class: gaps.length ? "alert" : null },
        data.gaps === null ? "–" : n(new Set(gaps.map((g) => g.ward_id)).size)),
      gaps.length
        ? el("span", null, " (" + gaps.map((g) => g.code + ": " + g.assigned + "/" + g.minimum + " " + g.role + "s").join(", ") + ")")
        : el("span", { class: "muted" }, " (minimum: the simulator's doctors and nurses per bed, rounded down)")
    );
    put(
      "staffing-table",
      table(
        ["ward", "beds", "doctors", "nurses", "allied", "support", "total", "by specialty"],
        data.wards.map((w) =>
          el(
            "tr",
            { class: Object.keys(w.short).length ? "short" : null, "data-ward-id": w.ward_id },
            el("td", { title: w.name }, w.code),
            el("td", null, n(w.beds)),
            el("td", null, n(w.roles.doctor), el("small", null, " ≥" + w.minimum.doctor)),
            el("td", null, n(w.roles.nurse), el("small", null, " ≥" + w.minimum.nurse)),
            el("td", null, n(w.roles.allied)),
            el("td", null, n(w.roles.support)),
            el("td", null, n(w.staff_count)),
            el("td", { class: "specialties" }, Object.entries(w.specialties).map(([s, c]) => s + " " + c).join(", "))
          )
        ),
        { class: "compact" }
      )
    );
    const ret = data.retirements;
    put(
      "retirements",
      el("h3", null, "Retiring within " + (ret ? ret.window_days : 90) + " days of " + (data.as_of_date || "–") + ": ",
        el("span", { id: "retirements-count" }, ret ? n(ret.count) : "–")),
      ret && ret.upcoming.length
        ? table(
            ["turns 65", "in", "staff", "role", "specialty", "ward"],
            ret.upcoming.map((r) =>
              el("tr", null, el("td", null, r.retires_on), el("td", null, r.days_left + " d"), el("td", null, String(r.staff_id)),
                el("td", null, r.role), el("td", null, r.specialty), el("td", null, r.code || "–"))
            ),
            { class: "compact" }
          )
        : el("p", { class: "muted" }, "nobody")
    );
    const rep = data.replacements;
    put(
      "replacements",
      el("h3", null, "Replaced in the last " + (rep ? rep.window_days : 30) + " days: ",
        el("span", { id: "replacements-count" }, rep ? n(rep.count) : "–")),
      rep && rep.recent.length
        ? table(
            ["retired", "staff", "role", "specialty", "ward", "replacement"],
            rep.recent.map((r) =>
              el("tr", { class: r.replacement_staff_id === null ? "short" : null }, el("td", null, r.retired_on),
                el("td", null, String(r.staff_id)), el("td", null, r.role), el("td", null, r.specialty),
                el("td", null, r.code || "–"), el("td", null, r.replacement_staff_id === null ? "none" : String(r.replacement_staff_id)))
            ),
            { class: "compact" }
          )
        : el("p", { class: "muted" }, "nobody")
    );
    return data.database_error;
  }

  function renderReconciliation(data) {
    put(
      "reconciliation-summary",
      el("strong", { id: "reconciliation-mismatch-days", class: data.days_with_mismatch ? "alert" : null }, n(data.days_with_mismatch)),
      el("span", null, " of the last " + data.days.length + " complete days with a mismatch")
    );
    put(
      "reconciliation",
      data.days.length
        ? table(
            ["date", "streamed", "batch", "both", "same", "differ", "unconf.", ""],
            data.days.map((d) =>
              el("tr", { class: d.ok ? null : "short", "data-day": d.sim_day }, el("td", { title: "day " + d.sim_day }, d.sim_date),
                el("td", null, n(d.streamed)), el("td", null, n(d.in_batch)),
                el("td", null, n(d.both)), el("td", null, n(d.matching)), el("td", null, n(d.mismatched)),
                el("td", null, n(d.unconfirmed)), el("td", { class: d.ok ? "ok" : "alert" }, d.ok ? "✓" : "✗"))
            ),
            { class: "compact", id: "reconciliation-table" }
          )
        : el("p", { class: "muted" }, "no complete day yet")
    );
  }

  // --- charts (SVG, drawn here) ---

  function heatColour(occupied, beds) {
    if (occupied === null || occupied === undefined) return ["#e0e0e0", 1];
    const p = (100 * occupied) / beds;
    if (p > 95) return ["#c62828", 1];
    if (p >= 85) return ["#f9a825", 1];
    return ["#2e7d32", 0.25 + (0.75 * Math.max(0, p)) / 85];
  }

  function occupancyChart(data) {
    const label = 60, top = 4, cellH = 13, width = 680;
    const days = data.days.length;
    const cellW = days ? (width - label) / days : 0;
    const height = top + data.wards.length * cellH + 18;
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart", role: "img",
      "aria-label": "occupancy per ward and day" });
    data.wards.forEach((w, row) => {
      const y = top + row * cellH;
      chart.appendChild(svg("text", { x: label - 4, y: y + cellH - 3, "text-anchor": "end", class: "tick" }, w.code));
      w.occupied.forEach((occupied, col) => {
        const [fill, opacity] = heatColour(occupied, w.beds);
        chart.appendChild(
          svg("rect", { x: label + col * cellW, y: y, width: Math.max(cellW - 0.3, 0.5), height: cellH - 1,
            fill: fill, "fill-opacity": opacity.toFixed(2) },
          svg("title", null, w.code + " " + data.dates[col] + ": " + (occupied === null ? "no census" :
            occupied + " of " + w.beds + " beds")))
        );
      });
    });
    if (days) {
      const y = top + data.wards.length * cellH + 13;
      chart.appendChild(svg("text", { x: label, y: y, class: "tick" }, data.dates[0]));
      chart.appendChild(svg("text", { x: width, y: y, "text-anchor": "end", class: "tick" }, data.dates[days - 1]));
    }
    return chart;
  }

  function flowChart(data) {
    const width = 680, height = 300, left = 48, right = 10, top = 26, bottom = 30;
    const days = data.days.length;
    const series = [
      { name: "admissions", values: data.admissions, colour: "#1565c0" },
      { name: "discharges", values: data.discharges, colour: "#ef6c00" },
    ];
    const max = Math.max(1, ...data.admissions, ...data.discharges);
    const x = (i) => left + (days > 1 ? (i * (width - left - right)) / (days - 1) : (width - left - right) / 2);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart", role: "img",
      "aria-label": "admissions and discharges per day" });
    for (const tick of [0, Math.round(max / 2), max]) {
      chart.appendChild(svg("line", { x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: "grid" }));
      chart.appendChild(svg("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", class: "tick" }, n(tick)));
    }
    for (const s of series) {
      const points = s.values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      chart.appendChild(svg("polyline", { points: points, fill: "none", stroke: s.colour, "stroke-width": 2 }));
      s.values.forEach((v, i) =>
        chart.appendChild(svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: days > 60 ? 1.5 : 3, fill: s.colour },
          svg("title", null, data.dates[i] + ": " + n(v) + " " + s.name)))
      );
    }
    if (days) {
      chart.appendChild(svg("text", { x: left, y: height - 8, class: "tick" }, data.dates[0]));
      chart.appendChild(svg("text", { x: width - right, y: height - 8, "text-anchor": "end", class: "tick" }, data.dates[days - 1]));
    }
    series.forEach((s, i) => {
      const lx = left + 10 + i * 130;
      chart.appendChild(svg("rect", { x: lx, y: 2, width: 12, height: 12, fill: s.colour }));
      chart.appendChild(svg("text", { x: lx + 16, y: 12, class: "tick" }, s.name));
    });
    return chart;
  }

  function renderCharts(data) {
    if (drawn.charts === data.sim_day) return; // complete days only: nothing new to draw
    drawn.charts = data.sim_day;
    put("chart-occupancy", data.days.length ? occupancyChart(data) : el("p", { class: "muted" }, "no complete day yet"));
    put("chart-flow", data.days.length ? flowChart(data) : el("p", { class: "muted" }, "no complete day yet"));
  }

  // --- polling ---

  const RENDER = {
    wards: renderWards,
    schedule: renderSchedule,
    pipeline: renderPipeline,
    staffing: renderStaffing,
    reconciliation: renderReconciliation,
    charts: renderCharts,
  };

  function panelError(name, message) {
    const box = document.querySelector("#panel-" + name + " .panel-error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  async function getJSON(name) {
    const response = await fetch(API + name, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      throw new Error("HTTP " + response.status);
    }
    if (!response.ok) throw new Error((body && body.error) || "HTTP " + response.status);
    return body;
  }

  async function poll() {
    const results = await Promise.allSettled(PANELS.map(getJSON));
    const problems = [];
    results.forEach((result, i) => {
      const name = PANELS[i];
      if (result.status === "rejected") {
        panelError(name, String(result.reason && result.reason.message ? result.reason.message : result.reason));
        problems.push(name);
        return;
      }
      try {
        const partial = RENDER[name](result.value);
        panelError(name, partial ? "PostgreSQL unavailable: " + partial : null);
        if (partial) problems.push(name);
      } catch (error) {
        panelError(name, "cannot show this panel: " + error);
        problems.push(name);
        setTimeout(() => {
          throw error; // a broken page must show up in the console, too
        });
      }
    });
    const status = document.getElementById("status");
    const now = new Date().toLocaleTimeString("en-GB");
    status.textContent = problems.length ? "updated " + now + " · problems: " + problems.join(", ") : "live · updated " + now;
    status.className = "status " + (problems.length ? "status-bad" : "status-ok");
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
