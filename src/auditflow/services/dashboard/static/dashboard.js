/* AuditFlow dashboard: live alert rows (Server-Sent Events) and chart refresh.
 * Every page works without this file. Data from the server is only ever put into the page with
 * textContent and setAttribute, never parsed as HTML: alert fields come from whoever sent events. */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function orDash(cell, value) {
    if (value) cell.textContent = value;
    else cell.appendChild(el("span", "muted", "—"));
    return cell;
  }

  // Mirrors the alert_row macro in templates/_macros.html.
  function buildRow(row, compact) {
    const tr = el("tr", "alert-row row-new");
    tr.dataset.id = row.id;
    tr.dataset.firstSeen = String(row.first_seen_ms);

    const sev = el("td", "col-sev");
    const badge = el("span", "badge sev sev-" + row.severity);
    const dot = el("span", "dot");
    dot.setAttribute("aria-hidden", "true");
    badge.appendChild(dot);
    badge.appendChild(document.createTextNode(row.severity));
    sev.appendChild(badge);
    tr.appendChild(sev);

    const status = el("td", "col-status");
    status.appendChild(el("span", "status status-" + row.status, row.status));
    tr.appendChild(status);

    const main = el("td", "col-main");
    const link = el("a", "alert-link", row.rule_name);
    link.setAttribute("href", row.url);
    main.appendChild(link);
    main.appendChild(el("div", "sub", row.description));
    tr.appendChild(main);

    tr.appendChild(orDash(el("td", "mono col-user"), row.user_id));
    tr.appendChild(orDash(el("td", "mono col-host"), row.server_hostname));
    if (!compact) tr.appendChild(el("td", "num col-occ", row.occurrences));

    const first = el("td", "time col-first");
    const firstTime = el("time", null, row.first_seen_text);
    firstTime.setAttribute("datetime", row.first_seen);
    first.appendChild(firstTime);
    tr.appendChild(first);
    if (!compact) {
      const last = el("td", "time col-last");
      const lastTime = el("time", null, row.last_seen_ago);
      lastTime.setAttribute("datetime", row.last_seen);
      lastTime.setAttribute("title", row.last_seen_text + " UTC");
      last.appendChild(lastTime);
      tr.appendChild(last);
    }
    return tr;
  }

  function liveTable(table) {
    const body = table.tBodies[0];
    const compact = table.dataset.compact === "1";
    const cap = parseInt(table.dataset.cap || "500", 10);
    const section = table.closest("section") || document;
    const wrap = table.closest("[data-table-wrap]");
    const indicator = document.querySelector("[data-live]");
    const indicatorText = indicator && indicator.querySelector("[data-live-text]");
    const known = new Set(Array.from(body.rows, (r) => r.dataset.id));
    let newest = parseInt(table.dataset.newest || "0", 10);
    let source = null;
    let retryDelay = 2000;

    function setStatus(ok, message) {
      if (!indicator) return;
      indicator.hidden = false;
      indicator.classList.toggle("paused", !ok);
      if (indicatorText) indicatorText.textContent = message;
    }

    function insert(row) {
      if (known.has(row.id)) return;
      known.add(row.id);
      newest = Math.max(newest, row.first_seen_ms);
      const tr = buildRow(row, compact);
      const before = Array.from(body.rows).find((r) => parseInt(r.dataset.firstSeen, 10) < row.first_seen_ms);
      body.insertBefore(tr, before || null);
      while (body.rows.length > cap) body.deleteRow(body.rows.length - 1);
      if (wrap) wrap.hidden = false;
      const empty = section.querySelector(".empty");
      if (empty) empty.hidden = true;
    }

    function connect() {
      const url = new URL(table.dataset.stream, window.location.href);
      url.searchParams.set("after", String(newest));
      source = new EventSource(url.toString());
      source.addEventListener("open", () => { retryDelay = 2000; setStatus(true, "Live"); });
      source.addEventListener("alert", (e) => insert(JSON.parse(e.data)));
      source.addEventListener("status", (e) => { const s = JSON.parse(e.data); setStatus(s.ok, s.message); });
      source.addEventListener("bye", (e) => {
        source.close();
        if (JSON.parse(e.data).reconnect) setTimeout(connect, 500);
        else setStatus(false, "Live updates stopped");
      });
      source.addEventListener("error", () => {
        // Reconnect ourselves so the stream resumes after the newest row we have.
        source.close();
        setStatus(false, "Reconnecting…");
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      });
    }
    connect();
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function drawChart(chartEl, chart) {
    const grid = chartEl.querySelector(".chart-grid");
    const bars = chartEl.querySelector(".chart-bars");
    const xs = chartEl.querySelector(".chart-x");
    grid.replaceChildren(...chart.y_ticks.flatMap((t) => [
      svg("line", { x1: chart.left, x2: chart.width, y1: t.position, y2: t.position }),
      svg("text", { class: "chart-y", x: chart.left - 8, y: t.position + 4 }, t.label),
    ]));
    bars.replaceChildren(...chart.bars.map((b) => {
      const rect = svg("rect", { x: b.x, y: b.y, width: b.width, height: b.height, rx: 2 });
      rect.appendChild(svg("title", {}, b.title));
      return rect;
    }));
    xs.replaceChildren(...chart.x_ticks.map((t) => svg("text", { x: t.position, y: chart.height - 6 }, t.label)));
    chartEl.setAttribute("aria-label", "Alerts over time: " + chart.summary);
  }

  function refreshOverview(chartEl) {
    const url = chartEl.dataset.refresh;
    async function tick() {
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (response.status === 401) { window.location.reload(); return; }
        if (!response.ok) return;
        const data = await response.json();
        drawChart(chartEl, data.chart);
        for (const node of document.querySelectorAll("[data-count]")) {
          const value = data.counts[node.dataset.count];
          if (value !== undefined) node.textContent = String(value);
        }
      } catch (err) {
        // A failed refresh leaves the last numbers on screen; the next tick tries again.
      }
    }
    setInterval(tick, 15000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const table of document.querySelectorAll("table[data-stream]")) liveTable(table);
    const chartEl = document.querySelector("svg[data-refresh]");
    if (chartEl) refreshOverview(chartEl);
  });
})();
