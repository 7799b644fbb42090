// custody workspace: the little the pages do beyond links and forms.
// Served from our own origin; the Content-Security-Policy allows no other script.
"use strict";
document.addEventListener("click", (ev) => {
  // Alt-click on a facet value excludes it instead of keeping it.
  const a = ev.target instanceof Element ? ev.target.closest("a.facet-value") : null;
  if (a && ev.altKey && a.dataset.exclude) {
    ev.preventDefault();
    window.location.assign(a.dataset.exclude);
  }
});

// A drag across the histogram picks a time window: the bars under it
// become `after:` and `before:` terms of the query.
(() => {
  const svg = document.getElementById("histogram");
  if (!svg) return;
  const origin = Number(svg.dataset.origin);
  const width = Number(svg.dataset.width);
  const slots = Number(svg.dataset.slots);
  const slotAt = (ev) => {
    const box = svg.getBoundingClientRect();
    const x = Math.min(Math.max(ev.clientX - box.left, 0), box.width - 1);
    return Math.floor((x / box.width) * slots);
  };
  const iso = (us) => new Date(us / 1000).toISOString();
  let from = null;
  svg.addEventListener("pointerdown", (ev) => {
    from = slotAt(ev);
    ev.preventDefault();
  });
  svg.addEventListener("pointerup", (ev) => {
    if (from === null) return;
    const to = slotAt(ev);
    const a = Math.min(from, to);
    const b = Math.max(from, to);
    from = null;
    // A click without a drag is left to the bar's own link.
    if (a === b) return;
    ev.preventDefault();
    const q = `${svg.dataset.q} after:${iso(origin + a * width)} before:${iso(origin + (b + 1) * width)}`.trim();
    const url = new URL(svg.dataset.href, window.location.href);
    url.searchParams.set("q", q);
    window.location.assign(url.toString());
  });
})();
