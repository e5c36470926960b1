// tracegraph dashboard: zoom and pan a run's Gantt chart, and sort its tables, without a page load.
// The chart's markup carries each bar's times (data-t0, data-t1: seconds from the axis' 0) and the chart's span
// (data-total); zooming moves the bars and redraws the axis for the time range in view, kept in the URL's hash.
(function () {
  'use strict';

  const hash = window.tracegraphHash;
  const MIN_SPAN = 1e-6;

  // presentation/text.py's format_duration, with more decimals where the tick spacing needs them (so the whole
  // window's axis reads as the server drew it, and a zoomed one has distinct labels).
  function tickText(t, tick) {
    if (t === 0) return '0';
    if (t >= 7200) return Math.floor(t / 3600) + 'h ' + String(Math.floor((t % 3600) / 60)).padStart(2, '0') + 'm';
    if (t >= 120) return Math.floor(t / 60) + 'm ' + String(Math.floor(t % 60)).padStart(2, '0') + 's';
    const [unit, suffix, least] = t < 1e-3 ? [1e-6, 'µs', 0] : t < 1 ? [1e-3, 'ms', 1] : [1, 's', 3];
    const needed = Math.ceil(-Math.log10(tick / unit) - 1e-9);
    return (t / unit).toFixed(Math.max(least, Math.min(6, needed))) + suffix;
  }

  function niceStep(span) {
    const raw = span > 0 ? span / 6 : 1;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  }

  function chart() {
    return document.querySelector('svg.gantt[data-total]');
  }

  let view = null; // [from, to] in seconds, or null for the whole chart

  function parseView(text, total) {
    const m = /^([0-9.e-]+)-([0-9.e-]+)$/.exec(text || '');
    if (!m) return null;
    const a = Math.max(0, parseFloat(m[1]));
    const b = Math.min(total, parseFloat(m[2]));
    return b - a >= MIN_SPAN && a < total ? [a, b] : null;
  }

  function setView(next, svg) {
    const total = +svg.dataset.total;
    if (next) {
      let [a, b] = next;
      const span = Math.min(total, Math.max(MIN_SPAN, b - a));
      a = Math.max(0, Math.min(a, total - span));
      b = a + span;
      next = a <= 0 && b >= total ? null : [a, b];
    }
    view = next;
    hash.set('zoom', view ? view[0].toPrecision(9) + '-' + view[1].toPrecision(9) : null);
    draw();
  }

  function drawAxis(svg, a, b, xOf) {
    const axis = svg.querySelector('g.axis');
    if (!axis) return;
    const tick = niceStep(b - a);
    const top = 20;
    const bottom = axis.dataset.bottom;
    let html = '';
    for (let t = Math.ceil(a / tick - 1e-9) * tick; t <= b * 1.0001 + 1e-12; t += tick) {
      const x = xOf(t).toFixed(1);
      html += '<line class="grid" x1="' + x + '" y1="' + top + '" x2="' + x + '" y2="' + bottom + '"/>' +
        '<text class="tick" x="' + x + '" y="16">' + tickText(Math.abs(t) < tick * 1e-6 ? 0 : t, tick) + '</text>';
    }
    axis.innerHTML = html;
  }

  function draw() {
    const svg = chart();
    if (!svg) return;
    const total = +svg.dataset.total;
    const x0 = +svg.dataset.x0;
    const w = +svg.dataset.w;
    const [a, b] = view || [0, total];
    const scale = w / (b - a);
    const xOf = (t) => x0 + Math.max(0, Math.min(w, (t - a) * scale));
    svg.querySelectorAll('[data-t0]').forEach((el) => {
      const t0 = +el.dataset.t0;
      if (el.tagName.toLowerCase() === 'line') {
        const x = xOf(t0).toFixed(1);
        el.setAttribute('x1', x);
        el.setAttribute('x2', x);
        el.style.visibility = t0 < a || t0 > b ? 'hidden' : '';
        return;
      }
      const t1 = +el.dataset.t1;
      const hidden = t1 < a || t0 > b ? 'hidden' : '';
      const x = xOf(t0);
      const right = xOf(t1);
      const least = el.classList.contains('span') ? 1.5 : 2;
      el.setAttribute('x', x.toFixed(1));
      el.setAttribute('width', Math.max(least, right - x).toFixed(1));
      el.style.visibility = hidden;
      const label = el.parentNode.querySelector('text.dur');
      if (label) {
        // right of the bar when it fits in the chart, else left of it (never over it)
        const fits = right + 60 <= x0 + w + 20;
        label.setAttribute('x', (fits ? right + 4 : x - 4).toFixed(1));
        if (fits) label.removeAttribute('text-anchor'); else label.setAttribute('text-anchor', 'end');
        label.style.visibility = hidden;
      }
    });
    drawAxis(svg, a, b, xOf);
    const status = document.getElementById('zoom-range');
    if (status) {
      const tick = niceStep(b - a) / 10;
      status.textContent = view ? 'showing +' + tickText(a, tick) + ' to +' + tickText(b, tick) : 'showing the whole window';
    }
    const brush = svg.querySelector('rect.brush');
    if (brush) brush.remove();
  }

  function zoomBy(factor, svg) {
    const total = +svg.dataset.total;
    const [a, b] = view || [0, total];
    const selected = svg.querySelector('.bar.selected[data-t0]');
    const centre = selected ? (+selected.dataset.t0 + +selected.dataset.t1) / 2 : (a + b) / 2;
    const span = (b - a) * factor;
    setView([centre - span / 2, centre + span / 2], svg);
  }

  function pan(fraction, svg) {
    const total = +svg.dataset.total;
    const [a, b] = view || [0, total];
    const shift = (b - a) * fraction;
    setView([a + shift, b + shift], svg);
  }

  function act(what) {
    const svg = chart();
    if (!svg) return;
    if (what === 'in') zoomBy(0.5, svg);
    else if (what === 'out') zoomBy(2, svg);
    else if (what === 'earlier') pan(-0.5, svg);
    else if (what === 'later') pan(0.5, svg);
    else if (what === 'reset') setView(null, svg);
  }

  document.addEventListener('click', (e) => {
    const button = e.target.closest && e.target.closest('button[data-zoom]');
    if (button) act(button.dataset.zoom);
  });

  document.addEventListener('keydown', (e) => {
    if (!(e.target.closest && e.target.closest('svg.gantt'))) return;
    const keys = { '+': 'in', '=': 'in', '-': 'out', '0': 'reset', '[': 'earlier', ']': 'later' };
    if (keys[e.key] && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      act(keys[e.key]);
    }
  });

  // Drag across the chart to zoom into that time range; a drag is not a click on the bar it started on.
  let drag = null;
  let swallowClick = false;
  function chartX(svg, clientX) {
    const point = svg.createSVGPoint();
    point.x = clientX;
    point.y = 0;
    return point.matrixTransform(svg.getScreenCTM().inverse()).x;
  }
  document.addEventListener('pointerdown', (e) => {
    const svg = e.target.closest && e.target.closest('svg.gantt[data-total]');
    if (!svg || e.button !== 0) return;
    const x = chartX(svg, e.clientX);
    const x0 = +svg.dataset.x0;
    if (x < x0 || x > x0 + +svg.dataset.w) return;
    drag = { svg: svg, from: x, to: x, brush: null };
  });
  document.addEventListener('pointermove', (e) => {
    if (!drag) return;
    drag.to = chartX(drag.svg, e.clientX);
    if (Math.abs(drag.to - drag.from) < 4) return;
    if (!drag.brush) {
      drag.brush = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      drag.brush.setAttribute('class', 'brush');
      drag.brush.setAttribute('y', '0');
      drag.brush.setAttribute('height', drag.svg.getAttribute('height'));
      drag.svg.appendChild(drag.brush);
    }
    const x0 = +drag.svg.dataset.x0;
    const w = +drag.svg.dataset.w;
    const lo = Math.max(x0, Math.min(drag.from, drag.to));
    const hi = Math.min(x0 + w, Math.max(drag.from, drag.to));
    drag.brush.setAttribute('x', lo.toFixed(1));
    drag.brush.setAttribute('width', Math.max(0, hi - lo).toFixed(1));
  });
  document.addEventListener('pointerup', () => {
    if (!drag) return;
    const { svg, from, to, brush } = drag;
    drag = null;
    if (!brush) return;
    swallowClick = true;
    const total = +svg.dataset.total;
    const [a, b] = view || [0, total];
    const x0 = +svg.dataset.x0;
    const w = +svg.dataset.w;
    const tOf = (x) => a + (Math.max(x0, Math.min(x0 + w, x)) - x0) / w * (b - a);
    setView([tOf(Math.min(from, to)), tOf(Math.max(from, to))], svg);
  });
  document.addEventListener('click', (e) => {
    if (swallowClick) {
      swallowClick = false;
      e.stopPropagation();
      e.preventDefault();
    }
  }, true);

  // Sortable tables: each header button sorts the rows by its column (a cell's data-value when it has one, else its
  // text: as a number in a numeric column).
  let sorted = null; // { table: index among sortable tables, column, descending }
  function sortTable(table, column, descending) {
    const body = table.tBodies[0];
    const numeric = table.tHead.rows[0].cells[column].classList.contains('num');
    const key = (row) => {
      const cell = row.cells[column];
      if (!cell) return '';
      if (cell.dataset.value !== undefined) return parseFloat(cell.dataset.value);
      return numeric ? parseFloat(cell.textContent.replace(/,/g, '')) : cell.textContent.trim().toLowerCase();
    };
    const rows = Array.from(body.rows);
    rows.sort((r1, r2) => {
      const k1 = key(r1);
      const k2 = key(r2);
      const order = k1 < k2 ? -1 : k1 > k2 ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach((row) => body.appendChild(row));
    Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
      if (th.querySelector('button.sort')) th.setAttribute('aria-sort', i === column ? (descending ? 'descending' : 'ascending') : 'none');
    });
  }
  document.addEventListener('click', (e) => {
    const button = e.target.closest && e.target.closest('table.sortable th button.sort');
    if (!button) return;
    const th = button.closest('th');
    const table = th.closest('table');
    const column = th.cellIndex;
    const descending = th.getAttribute('aria-sort') === 'ascending';
    sortTable(table, column, descending);
    sorted = { table: Array.from(document.querySelectorAll('table.sortable')).indexOf(table), column: column, descending: descending };
  });

  // Folding: a step's nested spans (rows marked data-under=<step span>) hide, and the rows below move up.
  const folded = new Set(); // step span ids, or '*' for every step
  function layoutRows() {
    const svg = chart();
    if (!svg) return;
    const rowH = +svg.dataset.rowH;
    const nested = {}; // step span id -> how many nested rows it has, counted once per layout
    svg.querySelectorAll('g.row[data-under]').forEach((row) => { nested[row.dataset.under] = (nested[row.dataset.under] || 0) + 1; });
    let shift = 0;
    svg.querySelectorAll('g.row').forEach((row) => {
      const under = row.dataset.under;
      const hidden = under !== undefined && (folded.has('*') || folded.has(under));
      row.style.display = hidden ? 'none' : '';
      if (hidden) shift += rowH;
      row.setAttribute('transform', shift && !hidden ? 'translate(0,' + -shift + ')' : '');
      const label = row.dataset.row !== undefined ? row.querySelector('text.label') : null;
      if (label) {
        const kids = nested[row.dataset.row] || 0;
        label.textContent = label.textContent.replace(/ \(\+\d+\)$/, '') +
          (kids && (folded.has('*') || folded.has(row.dataset.row)) ? ' (+' + kids + ')' : '');
      }
    });
    if (!svg.dataset.fullHeight) svg.dataset.fullHeight = svg.getAttribute('height');
    const height = +svg.dataset.fullHeight - shift;
    svg.setAttribute('height', String(height));
    const box = svg.getAttribute('viewBox').split(' ');
    svg.setAttribute('viewBox', box[0] + ' ' + box[1] + ' ' + box[2] + ' ' + height);
    const axis = svg.querySelector('g.axis');
    if (axis) {
      if (!axis.dataset.fullBottom) axis.dataset.fullBottom = axis.dataset.bottom;
      axis.dataset.bottom = String(+axis.dataset.fullBottom - shift);
      axis.querySelectorAll('line.grid').forEach((line) => line.setAttribute('y2', axis.dataset.bottom));
    }
    const now = svg.querySelector('line.now');
    if (now) {
      if (!now.dataset.fullY2) now.dataset.fullY2 = now.getAttribute('y2');
      now.setAttribute('y2', String(+now.dataset.fullY2 - shift));
    }
    const all = document.querySelector('button[data-fold="all"]');
    if (all) {
      all.setAttribute('aria-pressed', String(folded.has('*')));
      all.textContent = folded.has('*') ? 'Unfold nested spans' : 'Fold nested spans';
    }
  }
  function toggleFold(step) {
    if (folded.has('*')) {
      folded.delete('*');
      chart().querySelectorAll('g.row[data-row]').forEach((row) => { if (row.dataset.row !== step) folded.add(row.dataset.row); });
    } else if (folded.has(step)) folded.delete(step); else folded.add(step);
    layoutRows();
  }
  document.addEventListener('click', (e) => {
    const all = e.target.closest && e.target.closest('button[data-fold="all"]');
    if (all) {
      const on = !folded.has('*');
      folded.clear();
      if (on) folded.add('*');
      layoutRows();
      return;
    }
    const label = e.target.closest && e.target.closest('svg.gantt g.row[data-row] text.label.foldable');
    if (label) toggleFold(label.parentNode.dataset.row);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'f' || e.ctrlKey || e.metaKey || e.altKey) return;
    const bar = e.target.closest && e.target.closest('svg.gantt g.row[data-row] rect.bar');
    if (!bar) return;
    e.preventDefault();
    toggleFold(bar.parentNode.dataset.row);
  });

  // On a phone the chart is drawn to the screen's width: a narrow name column (names cut, whole in their tooltip)
  // and the time axis in the rest, instead of a 1,000 px chart scrolled sideways.
  const NARROW = window.matchMedia('(max-width: 600px)');
  const NAME_W = 104;
  function fitToScreen() {
    const svg = chart();
    if (!svg || !svg.parentNode) return;
    if (!svg.dataset.wideW) {
      svg.dataset.wideX0 = svg.dataset.x0;
      svg.dataset.wideW = svg.dataset.w;
    }
    const box = svg.getAttribute('viewBox').split(' ');
    let width;
    if (NARROW.matches) {
      width = Math.max(300, Math.floor(svg.parentNode.clientWidth));
      svg.dataset.x0 = String(NAME_W);
      svg.dataset.w = String(width - NAME_W - 16);
    } else {
      svg.dataset.x0 = svg.dataset.wideX0;
      svg.dataset.w = svg.dataset.wideW;
      width = +svg.dataset.wideX0 + +svg.dataset.wideW + 20;
    }
    svg.setAttribute('width', String(width));
    svg.setAttribute('viewBox', box[0] + ' ' + box[1] + ' ' + width + ' ' + box[3]);
    svg.querySelectorAll('text.label').forEach((label) => {
      if (label.dataset.full === undefined) label.dataset.full = label.textContent;
      const full = label.dataset.full;
      const room = Math.floor((NAME_W - +label.getAttribute('x') - 4) / 6.5);
      label.textContent = NARROW.matches && full.length > room ? full.slice(0, Math.max(1, room - 1)) + '…' : full;
    });
    draw();
  }
  NARROW.addEventListener('change', fitToScreen);

  // The chart of a resumed run's parts: on a phone, its time axis is squeezed into the screen beside a narrow
  // name column (the text keeps its size); a part's heading shows only where the part is wide enough for it.
  const LANE_W = 84;
  function fitWholeRun() {
    const svg = document.querySelector('svg.whole-run');
    if (!svg || !svg.parentNode) return;
    const x0 = +svg.dataset.x0, w = +svg.dataset.w;
    const narrow = NARROW.matches;
    const width = narrow ? Math.max(300, Math.floor(svg.parentNode.clientWidth)) : x0 + w + 10;
    const nx0 = narrow ? LANE_W : x0;
    const k = (width - 10 - nx0) / w;
    const at = (x) => nx0 + (x - x0) * k;
    const box = svg.getAttribute('viewBox').split(' ');
    svg.setAttribute('width', String(width));
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + box[3]);
    svg.querySelectorAll('rect, g.part text').forEach((el) => {
      if (el.dataset.x === undefined) {
        el.dataset.x = el.getAttribute('x');
        if (el.tagName === 'rect') el.dataset.w = el.getAttribute('width');
      }
      el.setAttribute('x', at(+el.dataset.x).toFixed(1));
      if (el.tagName === 'rect') {
        const least = el.classList.contains('bar') ? 2 : 1;
        el.setAttribute('width', Math.max(least, +el.dataset.w * k).toFixed(1));
      }
    });
    svg.querySelectorAll('g.wait').forEach((g) => g.setAttribute('transform', 'translate(' + at(+g.dataset.x).toFixed(1) + ' 0)'));
    svg.querySelectorAll('text.lane').forEach((label) => {
      const full = label.querySelector('title').textContent;
      const room = Math.floor((nx0 - 12) / 6.5);
      label.firstChild.textContent = full.length > room ? full.slice(0, Math.max(1, room - 1)) + '…' : full.slice(0, 20);
    });
    svg.querySelectorAll('g.part').forEach((part) => {
      const room = +part.querySelector('rect.part-band').getAttribute('width') - 6;
      part.querySelectorAll('text').forEach((t) => { t.style.visibility = t.getComputedTextLength() <= room ? '' : 'hidden'; });
    });
  }
  NARROW.addEventListener('change', fitWholeRun);
  document.addEventListener('tracegraph:swapped', fitWholeRun);
  fitWholeRun();

  function restore() {
    if (NARROW.matches) fitToScreen();
    if (folded.size) layoutRows();
    const svg = chart();
    if (svg) view = parseView(hash.get('zoom'), +svg.dataset.total);
    if (view) draw(); // the server drew the whole window already
    if (sorted) {
      const table = document.querySelectorAll('table.sortable')[sorted.table];
      if (table) sortTable(table, sorted.column, sorted.descending);
    }
  }
  // A live update replaces the chart and tables: the zoom and the sort order are put back on the new markup.
  document.addEventListener('tracegraph:swapped', restore);
  restore();
})();
