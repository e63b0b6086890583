// The cachekit demo's panels: a live chart and buttons that show the page cache at work.
// No libraries: everything here is served by the demo itself.
"use strict";

const $ = (selector) => document.querySelector(selector);

async function timedFetch(url, options) {
  const start = performance.now();
  const response = await fetch(url, options);
  const text = await response.text();
  return { status: response.headers.get("X-Cache") || "?", ms: performance.now() - start, text };
}

// -- live chart -----------------------------------------------------------------------------

const chart = { hits: [], misses: [], latency: [], last: null, samples: 0, max: 60 };

function drawChart() {
  const canvas = $("#chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const pad = { left: 36, right: 62, top: 10, bottom: 20 };
  const w = width - pad.left - pad.right, h = height - pad.top - pad.bottom;
  // Round the top of the scale up to 1, 2 or 5 times a power of ten, so the grid reads evenly.
  const nice = (value) => {
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= value);
  };
  const peak = nice(Math.max(5, ...chart.hits, ...chart.misses));
  const peakMs = Math.max(1, ...chart.latency);
  g.strokeStyle = "#e3e9f0";
  g.fillStyle = "#5c6b7a";
  g.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 5; i++) {
    const y = pad.top + (h * i) / 5;
    g.beginPath(); g.moveTo(pad.left, y); g.lineTo(pad.left + w, y); g.stroke();
    g.fillText(String(Math.round(peak * (1 - i / 5))), 4, y + 4);
    g.fillText((peakMs * (1 - i / 5)).toFixed(1) + " ms", pad.left + w + 4, y + 4);
  }
  g.fillText("requests/s (left), latency (right), last " + chart.max + " s", pad.left, height - 4);
  const line = (values, top, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    values.forEach((value, i) => {
      const x = pad.left + (w * (i + chart.max - values.length)) / (chart.max - 1);
      const y = pad.top + h - (h * value) / top;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  line(chart.hits, peak, "#2a9d8f");
  line(chart.misses, peak, "#e76f51");
  line(chart.latency, peakMs, "#457b9d");
}

async function pollStats() {
  try {
    const stats = await (await fetch("/stats.json")).json();
    const pages = stats.pages;
    if (chart.last) {
      const served = pages.served - chart.last.served;
      const push = (series, value) => { series.push(value); if (series.length > chart.max) series.shift(); };
      push(chart.hits, pages.hits + pages.stale - chart.last.hits - chart.last.stale);
      push(chart.misses, pages.misses - chart.last.misses);
      push(chart.latency, served ? (pages.total_ms - chart.last.total_ms) / served : 0);
    }
    chart.last = pages;
    chart.samples += 1;
    const canvas = $("#chart");
    canvas.dataset.samples = String(chart.samples);
    canvas.dataset.hits = String(pages.hits + pages.stale);
    canvas.dataset.misses = String(pages.misses);
    $("#totals").textContent =
      `${pages.hits} hits, ${pages.stale} stale, ${pages.misses} misses, ${pages.renders} renders` +
      ` · hit ratio ${(100 * stats.hit_ratio).toFixed(1)}% · backend ${stats.backend}`;
    drawChart();
  } catch (error) {
    $("#totals").textContent = "stats unavailable: " + error;
  }
}

// -- buttons --------------------------------------------------------------------------------

function busy(button, work) {
  return async () => {
    button.disabled = true;
    try { await work(); } finally { button.disabled = false; }
  };
}

async function fetchCached() {
  const result = await timedFetch("/cached");
  const rendered = new DOMParser().parseFromString(result.text, "text/html").querySelector("#rendered");
  $("#cached-result").innerHTML =
    `<span class="${result.status.toLowerCase()}">${result.status}</span> in ${result.ms.toFixed(1)} ms` +
    ` · rendered at ${rendered ? rendered.textContent : "?"}`;
}

async function traffic() {
  const total = 40;
  let hits = 0;
  for (let i = 0; i < total; i += 4) {
    const batch = await Promise.all([0, 1, 2, 3].map(() => timedFetch("/cached")));
    hits += batch.filter((r) => r.status === "HIT").length;
  }
  $("#traffic-result").textContent = `${total} requests to /cached: ${hits} hits, ${total - hits} misses`;
}

async function stampede() {
  const count = Math.max(2, Math.min(100, Number($("#stampede-n").value) || 20));
  const answer = await post(`/api/stampede?n=${count}`);
  const out = $("#stampede-result");
  out.dataset.requests = String(answer.requests);
  out.dataset.renders = String(answer.renders);
  out.innerHTML = `<span class="big">${answer.requests} requests → ${answer.renders} render` +
    `${answer.renders === 1 ? "" : "s"}</span><br>all at once at a cold page that takes 300 ms to render; ` +
    `the slowest answered in ${answer.slowest_ms.toFixed(0)} ms`;
}

async function staleWhileRevalidate() {
  const out = $("#swr-result");
  out.textContent = "caching /swr, then waiting for it to go stale…";
  const answer = await post("/api/swr");
  out.dataset.stale = String(answer.stale);
  const ms = (value) => (value === null ? "–" : value.toFixed(1));
  out.innerHTML = `<span class="stale">${answer.stale} of 8 got the stale page at once</span> ` +
    `(${ms(answer.stale_ms)} ms), ${answer.regenerated} render` +
    (answer.background ? " ran in the background, after the answers" : ` (${ms(answer.regenerated_ms)} ms)`);
}

async function post(url) {
  return (await fetch(url, { method: "POST" })).json();
}

async function purgePage() {
  const answer = await post("/api/purge");
  const next = await timedFetch("/cached");
  $("#purge-result").innerHTML = `purge /cached: ${answer.purged ? "removed" : "was not cached"}; ` +
    `next fetch <span class="${next.status.toLowerCase()}">${next.status}</span>`;
}

async function purgeTag() {
  await timedFetch("/cached");
  await post("/api/invalidate-tag");
  const next = await timedFetch("/cached");
  $("#purge-result").innerHTML = `tag <code>demo</code> invalidated (one incr); /cached next fetch ` +
    `<span class="${next.status.toLowerCase()}">${next.status}</span>`;
}

function wire() {
  const buttons = {
    "#fetch-cached": fetchCached,
    "#traffic": traffic,
    "#stampede": stampede,
    "#swr": staleWhileRevalidate,
    "#purge": purgePage,
    "#purge-tag": purgeTag,
  };
  for (const [selector, work] of Object.entries(buttons)) {
    const button = $(selector);
    button.addEventListener("click", busy(button, work));
  }
  window.addEventListener("resize", drawChart);
  pollStats();
  setInterval(pollStats, 1000);
}

document.addEventListener("DOMContentLoaded", wire);
