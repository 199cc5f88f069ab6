// The market page: live from the public API and the oracle's SSE stream; a signed-in buyer's
// contracts and slots from their own routes. No framework and no build step: the DOM is built with
// textContent only (names in the book come from users), charts are uPlot (vendor/, MIT).
//
// Elements the browser test reads carry data-* attributes: a chart's `data-points` is the number
// of points it plots, `data-rounds` the rounds it holds; a slot's `data-outcome` is what the legend
// names.
(() => {
  "use strict";

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  const $ = (selector, root = document) => root.querySelector(selector);

  /** An element with attributes (`text`, `class`, `data-*`, others as given) and children. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const TIME = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: "UTC" };
  const fmt = {
    time: (iso) => (iso ? `${new Date(iso).toLocaleTimeString("en-GB", TIME)}Z` : "—"),
    dateTime: (iso) => (iso ? `${iso.slice(0, 10)} ${fmt.time(iso)}` : "—"),
    id: (id) => (id ? id.slice(0, 8) : "—"),
    money: (amount) => (amount === null || amount === undefined ? "—" : String(amount)),
    klass: (c) => `${c.circuit} · 2^${c.size_log2} · ${c.deadline_secs} s`,
    age: (iso) => {
      const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
      return secs < 120 ? `${secs} s ago` : secs < 7200 ? `${Math.round(secs / 60)} min ago` : `${Math.round(secs / 3600)} h ago`;
    },
  };
  /** The feed id of a class, as the oracle names it. */
  const classKey = (c) => `${c.system}:${c.circuit}:${c.size_log2}:${c.deadline_secs}`;
  /** A decimal string as a number, for plotting only (amounts shown are the API's strings). */
  const plotted = (amount) => (amount === null || amount === undefined ? null : Number(amount));

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Calls the API; a non-2xx answer throws its error envelope as an ApiFailure. */
  async function api(method, path, { body, token } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiFailure(0, "network", "the exchange did not answer; retrying");
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiFailure(response.status, data?.error?.code ?? `http_${response.status}`, data?.error?.message ?? response.statusText);
    }
    return data;
  }
  const get = (path, token) => api("GET", path, { token });

  /** Runs `task` now and every `ms`, never two at once; errors are shown by the task itself. */
  function every(ms, task) {
    let running = false;
    const tick = async () => {
      if (running) return;
      running = true;
      try {
        await task();
      } catch (error) {
        console.warn(error);
      } finally {
        running = false;
      }
    };
    tick();
    return setInterval(tick, ms);
  }

  // ---------------------------------------------------------------------------------------------
  // Charts (uPlot)

  const COLORS = { price: "#3559e0", q80: "#12b76a", q95: "#f79009", q99: "#d92d20", depth: "#3559e0" };

  function chartWidth(container) {
    return Math.max(280, Math.floor(container.getBoundingClientRect().width || container.clientWidth || 600));
  }

  /** A uPlot chart that follows its container's width. */
  function makeChart(container, options, data) {
    const chart = new uPlot({ width: chartWidth(container), height: options.height ?? 240, ...options }, data, container);
    new ResizeObserver(() => chart.setSize({ width: chartWidth(container), height: chart.height })).observe(container);
    return chart;
  }

  /** Records on the container how many points the chart's first series plots. */
  function notePoints(container, ys) {
    container.dataset.points = String(ys.filter((y) => y !== null && y !== undefined).length);
  }

  // ---------------------------------------------------------------------------------------------
  // Prices: every feed's latest round, updated by the stream

  const market = {
    feeds: new Map(), // feed_id -> { feed, round }
    selected: null,
    history: null, // { feed, rounds: RoundView[] }
    historyChart: null,
    curveChart: null,
    curveTimer: null,
  };

  const FEED_CELLS = ["class", "price", "q50", "q80", "q95", "q99", "conf", "status", "sources", "round", "published"];

  function feedRow(feedId) {
    let row = $(`#feeds-body tr[data-feed="${CSS.escape(feedId)}"]`);
    if (row) return row;
    row = el("tr", { "data-feed": feedId, tabindex: 0 });
    for (const cell of FEED_CELLS) {
      const numeric = !["class", "status", "published"].includes(cell);
      row.append(el("td", { class: `col-${cell}${numeric ? " num" : ""}` }));
    }
    row.addEventListener("click", () => select(feedId));
    row.addEventListener("keydown", (e) => e.key === "Enter" && select(feedId));
    return row;
  }

  /** The status a reader should take: `stale` once past valid_until, as the API says it. */
  function statusNow(round) {
    return Date.now() > Date.parse(round.valid_until) ? "stale" : round.status;
  }

  /** Feeds without a price (no sources for their class) are folded away unless asked for. */
  const hasPrice = (entry) => entry.round !== null && entry.round !== undefined && entry.round.price !== null && entry.round.price !== undefined;

  function renderFeed(feedId, flash = false) {
    const entry = market.feeds.get(feedId);
    const row = feedRow(feedId);
    row.classList.toggle("unpriced", !hasPrice(entry));
    const cell = (name) => row.querySelector(`td.col-${name}`);
    cell("class").textContent = fmt.klass(entry.feed.proof_class);
    const round = entry.round;
    if (!round) {
      for (const name of FEED_CELLS.slice(1)) cell(name).textContent = "—";
      cell("status").replaceChildren(el("span", { class: "status", text: "no round yet" }));
      row.dataset.round = "";
      return;
    }
    const q = round.quantiles ?? {};
    cell("price").textContent = fmt.money(round.price);
    for (const p of ["50", "80", "95", "99"]) cell(`q${p}`).textContent = fmt.money(q[p]);
    cell("conf").textContent = fmt.money(round.conf);
    const status = statusNow(round);
    cell("status").replaceChildren(el("span", { class: "status", "data-status": status, text: status.replaceAll("_", " ") }));
    cell("sources").textContent = String(round.n_sources);
    cell("round").textContent = String(round.round_id);
    cell("published").textContent = `${fmt.time(round.published_at)} (${fmt.age(round.published_at)})`;
    row.dataset.round = String(round.round_id);
    row.dataset.price = round.price ?? "";
    if (flash) {
      row.classList.remove("flash");
      void row.offsetWidth; // restarts the animation
      row.classList.add("flash");
    }
  }

  function renderFeedTable() {
    const body = $("#feeds-body");
    const ids = [...market.feeds.keys()].sort((a, b) => {
      const [x, y] = [market.feeds.get(a).feed.proof_class, market.feeds.get(b).feed.proof_class];
      return x.circuit.localeCompare(y.circuit) || x.size_log2 - y.size_log2 || x.deadline_secs - y.deadline_secs;
    });
    if (ids.length === 0) {
      body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 11, text: "No feeds yet." })));
      return;
    }
    body.replaceChildren(...ids.map(feedRow));
    ids.forEach((id) => renderFeed(id));
    foldUnpriced();
    for (const row of body.querySelectorAll("tr[data-feed]")) {
      row.setAttribute("aria-selected", String(row.dataset.feed === market.selected));
    }
  }

  function foldUnpriced() {
    const unpriced = [...market.feeds.values()].filter((e) => !hasPrice(e)).length;
    const button = $("#show-unpriced");
    const open = $("#prices").dataset.showAll === "true";
    button.hidden = unpriced === 0;
    button.textContent = open ? "Hide the feeds without a price" : `Show ${unpriced} more feed${unpriced === 1 ? "" : "s"} without a price (no offers or sources for the class)`;
  }

  /** Every feed with its latest round's values, in one request. */
  async function loadFeeds() {
    const { feeds } = await get("/v1/oracle/feeds");
    const latest = (feed) => (feed.latest_round_id === null ? null : {
      feed_id: feed.feed_id, round_id: feed.latest_round_id, price: feed.price, conf: feed.conf, quantiles: feed.quantiles,
      status: feed.status, published_at: feed.published_at, valid_until: feed.valid_until, n_sources: feed.n_sources,
    });
    market.feeds = new Map(feeds.map((feed) => [feed.feed_id, { feed, round: latest(feed) }]));
    renderFeedTable();
  }

  /** The feed the charts show: the one asked for in the address, else the first with a price. */
  function defaultFeed() {
    const asked = new URLSearchParams(location.search).get("feed");
    if (asked && market.feeds.has(asked)) return asked;
    const entries = [...market.feeds.values()];
    const priced = entries.find((e) => e.round && e.round.price !== null && e.round.price !== undefined);
    return (priced ?? entries.find((e) => e.round) ?? entries[0])?.feed.feed_id ?? null;
  }

  async function select(feedId) {
    if (!feedId) return;
    market.selected = feedId;
    const url = new URL(location.href);
    url.searchParams.set("feed", feedId);
    history.replaceState(null, "", url);
    for (const row of document.querySelectorAll("#feeds-body tr[data-feed]")) {
      row.setAttribute("aria-selected", String(row.dataset.feed === feedId));
    }
    const label = fmt.klass(market.feeds.get(feedId).feed.proof_class);
    $("#history-feed").textContent = label;
    $("#curve-feed").textContent = label;
    await Promise.all([loadHistory(feedId), loadCurve(feedId)]);
  }

  // ---------------------------------------------------------------------------------------------
  // History: the selected feed's rounds of the last hour, then every new round from the stream

  const HISTORY_WINDOW_MS = 60 * 60 * 1000;
  const HISTORY_MAX = 3000;

  async function loadHistory(feedId) {
    const rounds = [];
    let from = new Date(Date.now() - HISTORY_WINDOW_MS).toISOString();
    // Pages of up to 1000 rounds, oldest first, until the last page is short.
    for (let page = 0; page < 5; page += 1) {
      const answer = await get(`/v1/oracle/history?feed=${encodeURIComponent(feedId)}&from=${encodeURIComponent(from)}&limit=1000`);
      const fresh = answer.rounds.filter((r) => rounds.length === 0 || r.round_id > rounds[rounds.length - 1].round_id);
      rounds.push(...fresh);
      if (answer.rounds.length < 1000 || fresh.length === 0) break;
      from = answer.rounds[answer.rounds.length - 1].published_at;
    }
    if (market.selected !== feedId) return;
    market.history = { feed: feedId, rounds: rounds.slice(-HISTORY_MAX) };
    drawHistory();
  }

  function drawHistory() {
    const container = $("#history-chart");
    const rounds = market.history?.rounds ?? [];
    const q = (r, p) => plotted(r.quantiles ? r.quantiles[p] : null);
    const data = [
      rounds.map((r) => Date.parse(r.published_at) / 1000),
      rounds.map((r) => plotted(r.price)),
      rounds.map((r) => q(r, "80")),
      rounds.map((r) => q(r, "95")),
      rounds.map((r) => q(r, "99")),
    ];
    if (!market.historyChart) {
      market.historyChart = makeChart(container, {
        scales: { x: { time: true } },
        series: [
          {},
          { label: "price", stroke: COLORS.price, width: 2, value: (u, v) => (v === null ? "—" : v.toFixed(6)) },
          { label: "p80", stroke: COLORS.q80, width: 1, dash: [4, 4] },
          { label: "p95", stroke: COLORS.q95, width: 1, dash: [4, 4] },
          { label: "p99", stroke: COLORS.q99, width: 1, dash: [2, 4] },
        ],
        axes: [{}, { size: 70, values: (u, splits) => splits.map((v) => v.toFixed(4)) }],
      }, data);
    } else {
      market.historyChart.setData(data);
    }
    container.dataset.feed = market.history?.feed ?? "";
    container.dataset.rounds = String(rounds.length);
    container.dataset.firstRound = rounds.length ? String(rounds[0].round_id) : "";
    container.dataset.lastRound = rounds.length ? String(rounds[rounds.length - 1].round_id) : "";
    notePoints(container, data[1]);
    $("#history-note").textContent = rounds.length
      ? `${rounds.length} rounds since ${fmt.time(rounds[0].published_at)}; a gap is a round without a price (too few sources, or halted).`
      : "No rounds in the last hour.";
  }

  // ---------------------------------------------------------------------------------------------
  // The forward curve of the selected feed, fetched again when a round of that feed arrives

  async function loadCurve(feedId) {
    const container = $("#curve-chart");
    let curve;
    try {
      curve = await get(`/v1/oracle/curve?feed=${encodeURIComponent(feedId)}`);
    } catch (failure) {
      if (failure.code !== "not_found") throw failure;
      curve = { feed_id: feedId, round_id: null, points: [] };
    }
    if (market.selected !== feedId) return;
    const points = curve.points ?? [];
    const data = [points.map((_, i) => i), points.map((p) => plotted(p.price))];
    if (!market.curveChart) {
      market.curveChart = makeChart(container, {
        scales: { x: { time: false, distr: 2 } },
        series: [
          { label: "tenor", value: (u, i) => market.curveLabels?.[i] ?? "" },
          { label: "price per proof", stroke: COLORS.price, width: 2, points: { show: true, size: 8 }, value: (u, v) => (v === null ? "—" : v.toFixed(6)) },
        ],
        axes: [{ values: (u, splits) => splits.map((i) => market.curveLabels?.[i] ?? "") }, { size: 70, values: (u, splits) => splits.map((v) => v.toFixed(4)) }],
      }, data);
    }
    market.curveLabels = points.map((p) => p.tenor);
    market.curveChart.setData(data);
    container.dataset.feed = feedId;
    container.dataset.round = curve.round_id === null ? "" : String(curve.round_id);
    notePoints(container, data[1]);
    const missing = points.filter((p) => p.price === null).map((p) => p.tenor);
    $("#curve-note").textContent = points.length === 0
      ? "No round yet."
      : `Price per proof of an hourly contract of each term, after the published discount${missing.length ? `; no capacity lasts ${missing.join(", ")}` : ""}.`;
  }

  // ---------------------------------------------------------------------------------------------
  // The stream

  const live = {
    source: null,
    broken: false,
    set(state, text) {
      const badge = $("#live");
      badge.dataset.state = state;
      badge.textContent = text;
    },
  };

  function onRound(round) {
    const entry = market.feeds.get(round.feed_id);
    if (!entry) {
      // A feed born after the page loaded.
      loadFeeds().catch(console.warn);
      return;
    }
    if (entry.round && entry.round.round_id >= round.round_id) return;
    const moved = entry.round?.price !== round.price;
    const wasPriced = hasPrice(entry);
    entry.round = round;
    entry.feed.latest_round_id = round.round_id;
    renderFeed(round.feed_id, moved);
    if (wasPriced !== hasPrice(entry)) foldUnpriced();
    if (round.feed_id !== market.selected) return;
    const h = market.history;
    if (h && h.feed === round.feed_id && (h.rounds.length === 0 || h.rounds[h.rounds.length - 1].round_id < round.round_id)) {
      h.rounds.push(round);
      if (h.rounds.length > HISTORY_MAX) h.rounds.shift();
      drawHistory();
    }
    // The curve is computed with each round; a burst of rounds fetches it once.
    clearTimeout(market.curveTimer);
    market.curveTimer = setTimeout(() => loadCurve(round.feed_id).catch(console.warn), 250);
  }

  function connect() {
    live.set(live.broken ? "reconnecting" : "connecting", live.broken ? "reconnecting…" : "connecting…");
    const source = new EventSource("/v1/oracle/stream");
    live.source = source;
    source.addEventListener("open", () => {
      live.set("live", "live");
      if (live.broken) {
        // Rounds published while disconnected: read them again.
        live.broken = false;
        loadFeeds().then(() => select(market.selected ?? defaultFeed())).catch(console.warn);
      }
    });
    source.addEventListener("round", (e) => onRound(JSON.parse(e.data)));
    source.addEventListener("status", (e) => {
      const change = JSON.parse(e.data);
      const entry = market.feeds.get(change.feed_id);
      if (entry?.round && entry.round.round_id <= change.round_id) {
        entry.round.status = change.status;
        renderFeed(change.feed_id);
      }
    });
    source.addEventListener("error", () => {
      live.broken = true;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (for example 503 too_many_subscribers): the browser does not retry that itself.
        live.set("reconnecting", "reconnecting…");
        setTimeout(connect, 5000);
      } else {
        live.set("reconnecting", "reconnecting…");
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // The book: depth per class

  const book = { charts: new Map(), shown: "" };

  /** Price levels of a class's offers, cheapest first, with the capacity at or below each. */
  function depth(offers) {
    const levels = new Map();
    for (const offer of offers) {
      const level = levels.get(offer.price_per_proof) ?? { price: offer.price_per_proof, capacity: 0, offers: 0 };
      level.capacity += offer.proofs_per_hour;
      level.offers += 1;
      levels.set(offer.price_per_proof, level);
    }
    const sorted = [...levels.values()].sort((a, b) => Number(a.price) - Number(b.price));
    let cumulative = 0;
    for (const level of sorted) {
      cumulative += level.capacity;
      level.cumulative = cumulative;
    }
    return sorted;
  }

  async function loadBook() {
    const { offers } = await get("/v1/offers?limit=1000");
    const shown = JSON.stringify(offers.map((o) => [o.offer_id, o.price_per_proof, o.proofs_per_hour, o.status]));
    if (shown === book.shown) return;
    book.shown = shown;
    const byClass = new Map();
    for (const offer of offers) {
      const key = classKey(offer.proof_class);
      if (!byClass.has(key)) byClass.set(key, { proof_class: offer.proof_class, offers: [] });
      byClass.get(key).offers.push(offer);
    }
    const root = $("#book-classes");
    if (byClass.size === 0) {
      for (const chart of book.charts.values()) chart.destroy();
      book.charts.clear();
      root.replaceChildren(el("p", { class: "note", text: "No active offers." }));
      return;
    }
    for (const [key, chart] of book.charts) {
      if (!byClass.has(key)) {
        chart.destroy();
        book.charts.delete(key);
      }
    }
    const cards = [];
    for (const [key, { proof_class, offers: classOffers }] of [...byClass].sort(([a], [b]) => a.localeCompare(b))) {
      const levels = depth(classOffers);
      let card = root.querySelector(`.book-class[data-class="${CSS.escape(key)}"]`);
      if (!card) {
        card = el("div", { class: "book-class", "data-class": key },
          el("h3", { text: fmt.klass(proof_class) }),
          el("div", { class: "depth chart", "data-points": 0 }),
          el("table", { class: "grid levels" },
            el("thead", {}, el("tr", {}, el("th", { class: "num", text: "Price per proof" }), el("th", { class: "num", text: "Proofs / hour" }),
              el("th", { class: "num", text: "Cumulative" }), el("th", { class: "num", text: "Offers" }))),
            el("tbody")));
      }
      const container = card.querySelector(".depth");
      const data = [levels.map((l) => Number(l.price)), levels.map((l) => l.cumulative)];
      cards.push({ card, container, data, key });
      card.querySelector(".levels tbody").replaceChildren(...levels.map((l) =>
        el("tr", { "data-price": l.price },
          el("td", { class: "num", text: l.price }), el("td", { class: "num", text: l.capacity }),
          el("td", { class: "num", text: l.cumulative }), el("td", { class: "num", text: l.offers }))));
      container.dataset.capacity = String(levels.length ? levels[levels.length - 1].cumulative : 0);
    }
    root.replaceChildren(...cards.map((c) => c.card));
    // Charts are made once their card is in the page (uPlot measures its container).
    for (const { container, data, key } of cards) {
      let chart = book.charts.get(key);
      if (!chart) {
        chart = makeChart(container, {
          height: 180,
          legend: { show: false },
          scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
          series: [
            { label: "price", value: (u, v) => (v === null ? "—" : v.toFixed(6)) },
            { label: "proofs / hour at or below", stroke: COLORS.depth, fill: "rgba(53, 89, 224, 0.15)", width: 2,
              paths: uPlot.paths.stepped({ align: 1 }), points: { show: true, size: 6 } },
          ],
          axes: [{ values: (u, splits) => splits.map((v) => v.toFixed(4)) }, { size: 60 }],
        }, data);
        book.charts.set(key, chart);
      } else {
        chart.setData(data);
      }
      notePoints(container, data[1]);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Recent deliveries and misses

  /** What a settled or live slot came to, in the legend's words. */
  function outcome(slot) {
    if (slot.state === "delivered") {
      return slot.reason === "delivered_by_backup" || slot.reason === "delivered_by_open_market" ? "failed_over" : "delivered";
    }
    return slot.state;
  }
  const OUTCOME_TEXT = {
    delivered: "delivered",
    failed_over: "failed over",
    missed: "missed",
    unused: "unused",
    cancelled: "cancelled",
    scheduled: "scheduled",
    proving: "proving",
  };
  const REASON_TEXT = {
    delivered_by_primary: "by the primary",
    delivered_by_backup: "by a backup, after the primary failed",
    delivered_by_open_market: "by the open market, after every named prover failed",
    no_input: "no input posted before the slot opened (paid: take-or-pay)",
    no_valid_proof_by_deadline: "no valid proof by the deadline (refunded; the prover was slashed)",
    contract_suspended: "the contract was suspended (nothing paid)",
    exchange_late: "the exchange opened it too late (refunded, nobody slashed)",
    exchange_down: "the exchange was down (refunded, nobody slashed)",
  };
  const reasonText = (reason) => (reason ? REASON_TEXT[reason] ?? reason.replaceAll("_", " ") : "");

  async function loadRecent() {
    const { slots } = await get("/v1/slots/recent?limit=20");
    const body = $("#recent-body");
    if (slots.length === 0) {
      body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 6, text: "Nothing settled yet." })));
      return;
    }
    body.replaceChildren(...slots.map((s) => {
      const o = outcome(s);
      return el("tr", { "data-outcome": o, "data-reason": s.reason ?? "" },
        el("td", { text: fmt.time(s.settled_at) }),
        el("td", { text: fmt.klass(s.proof_class) }),
        el("td", {}, el("span", { class: "outcome", "data-outcome": o, text: OUTCOME_TEXT[o] })),
        el("td", { text: reasonText(s.reason) }),
        el("td", { class: "mono", title: s.delivered_by ?? s.primary, text: fmt.id(s.delivered_by ?? s.primary) }),
        el("td", { class: "num", text: s.latency_secs === null ? "—" : `${Number(s.latency_secs).toFixed(1)} s` }));
    }));
  }

  // ---------------------------------------------------------------------------------------------
  // Signing in, and a buyer's contracts with their slots

  const SESSION = "pcx.session";
  const account = { token: null, me: null, timer: null, pages: new Map() /* contract id -> first slot shown */ };
  const SLOTS_SHOWN = 60;

  function showSignInError(message) {
    $("#signin-error").textContent = message;
  }

  async function signedIn(token, expiresAt) {
    const me = await get("/v1/accounts/me", token);
    account.token = token;
    account.me = me;
    sessionStorage.setItem(SESSION, JSON.stringify({ token, expires_at: expiresAt }));
    $("#signin").hidden = true;
    $("#signed-in").hidden = false;
    $("#who").textContent = me.name;
    $("#who-role").textContent = me.role;
    $("#legend").hidden = false;
    showSignInError("");
    clearInterval(account.timer);
    account.timer = every(4000, loadContracts);
  }

  function signOut(message = "") {
    clearInterval(account.timer);
    account.token = null;
    account.me = null;
    account.pages.clear();
    sessionStorage.removeItem(SESSION);
    $("#signin").hidden = false;
    $("#signed-in").hidden = true;
    $("#legend").hidden = true;
    $("#contracts").replaceChildren();
    showSignInError(message);
  }

  async function signInWithKey(event) {
    event.preventDefault();
    const input = $("#api-key");
    const key = input.value.trim();
    if (!key) {
      showSignInError("Paste an API key (from POST /v1/accounts, or your account's keys).");
      return;
    }
    try {
      const issued = await api("POST", "/v1/auth/token", { body: { api_key: key } });
      input.value = "";
      await signedIn(issued.token, issued.expires_at);
    } catch (failure) {
      showSignInError(failure.message);
    }
  }

  const utf8Hex = (text) => `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;

  /** The nonce/sign flow: the wallet signs the exact EIP-4361 message the exchange issued. */
  async function signInWithWallet() {
    const wallet = window.ethereum;
    if (!wallet?.request) {
      showSignInError("No Ethereum wallet in this browser (an EIP-1193 provider, window.ethereum).");
      return;
    }
    try {
      const [address] = await wallet.request({ method: "eth_requestAccounts" });
      if (!address) throw new ApiFailure(0, "no_account", "the wallet shared no account");
      const challenge = await get(`/v1/auth/nonce?address=${encodeURIComponent(address)}&role=buyer`);
      const signature = await wallet.request({ method: "personal_sign", params: [utf8Hex(challenge.message), address] });
      const issued = await api("POST", "/v1/auth/wallet", { body: { message: challenge.message, signature } });
      await signedIn(issued.token, issued.expires_at);
    } catch (failure) {
      showSignInError(failure?.message ?? String(failure));
    }
  }

  /** The slot a contract's timeline starts at by default: a window around now. */
  function firstShown(contract) {
    const { start, every_secs } = contract.schedule;
    const now = Math.floor((Date.now() - Date.parse(start)) / 1000 / every_secs);
    const last = Math.max(0, contract.slot_count - SLOTS_SHOWN);
    return Math.min(Math.max(0, now - Math.floor(SLOTS_SHOWN / 2)), last);
  }

  async function loadContracts() {
    if (!account.token) return;
    const token = account.token;
    let contracts;
    try {
      ({ contracts } = await get("/v1/contracts?limit=20", token));
    } catch (failure) {
      if (failure.status === 401) signOut("Your session ended; sign in again.");
      else $("#contracts").replaceChildren(el("p", { class: "error", text: failure.message }));
      return;
    }
    const pages = await Promise.all(contracts.map((c) => {
      if (!account.pages.has(c.contract_id)) account.pages.set(c.contract_id, firstShown(c));
      const from = account.pages.get(c.contract_id);
      return get(`/v1/contracts/${c.contract_id}/slots?from=${from}&limit=${SLOTS_SHOWN}`, token).catch(() => ({ slots: [] }));
    }));
    if (account.token !== token) return;
    const root = $("#contracts");
    if (contracts.length === 0) {
      root.replaceChildren(el("p", { class: "note", text: "No contracts yet: get a quote (POST /v1/quotes) and accept it (POST /v1/contracts)." }));
      return;
    }
    [...root.children].filter((n) => !n.dataset.contract).forEach((n) => n.remove());
    contracts.forEach((contract, i) => {
      const card = contractCard(contract);
      renderTimeline(card, contract, pages[i].slots);
      if (root.children[i] !== card) root.insertBefore(card, root.children[i] ?? null);
    });
    while (root.children.length > contracts.length) root.lastChild.remove();
  }

  function contractCard(contract) {
    let card = $(`#contracts .contract[data-contract="${CSS.escape(contract.contract_id)}"]`);
    if (!card) {
      card = el("div", { class: "contract", "data-contract": contract.contract_id },
        el("div", { class: "contract-head" }, el("strong", { class: "klass" }), el("span", { class: "status" }), el("span", { class: "id" }), el("span", { class: "facts" })),
        el("div", { class: "timeline-axis" }, el("span", { class: "from" }), el("span", { class: "to" })),
        el("ol", { class: "timeline", "aria-label": "slots" }),
        el("div", { class: "slot-detail", "aria-live": "polite" }),
        el("div", { class: "timeline-pager" },
          el("button", { type: "button", class: "earlier", text: "‹ earlier" }),
          el("button", { type: "button", class: "later", text: "later ›" })));
      const page = (delta) => {
        const from = Math.max(0, Math.min((account.pages.get(contract.contract_id) ?? 0) + delta, Math.max(0, contract.slot_count - SLOTS_SHOWN)));
        account.pages.set(contract.contract_id, from);
        loadContracts().catch(console.warn);
      };
      card.querySelector(".earlier").addEventListener("click", () => page(-SLOTS_SHOWN));
      card.querySelector(".later").addEventListener("click", () => page(SLOTS_SHOWN));
    }
    card.querySelector(".klass").textContent = fmt.klass(contract.proof_class);
    const status = card.querySelector(".status");
    status.dataset.status = contract.status === "active" ? "ok" : contract.status === "suspended" ? "halted" : "";
    status.textContent = contract.status + (contract.status_reason ? ` (${contract.status_reason.replaceAll("_", " ")})` : "");
    card.querySelector(".id").textContent = contract.contract_id;
    card.querySelector(".facts").textContent =
      `${contract.slot_count} slots every ${contract.schedule.every_secs} s from ${fmt.dateTime(contract.schedule.start)} · ` +
      `${contract.price_per_proof} per proof · total ${contract.total} · escrow ${contract.escrow_locked} · ` +
      `${contract.redundancy} backup${contract.redundancy === 1 ? "" : "s"}`;
    return card;
  }

  function slotText(slot) {
    const o = outcome(slot);
    const parts = [`Slot ${slot.n}: ${OUTCOME_TEXT[o]}`, `opens ${fmt.dateTime(slot.opens_at)}`, `deadline ${fmt.time(slot.deadline)}`];
    if (slot.reason) parts.push(reasonText(slot.reason));
    if (slot.delivered_by) parts.push(`delivered by ${fmt.id(slot.delivered_by)}`);
    else parts.push(`primary ${fmt.id(slot.primary)}`);
    if (slot.primary_replaced) parts.push(`primary replaced (${slot.primary_replaced.reason.replaceAll("_", " ")})`);
    if (slot.failed_attempts) parts.push(`${slot.failed_attempts} failed attempt${slot.failed_attempts === 1 ? "" : "s"}`);
    if (!slot.input_posted && (o === "scheduled" || o === "proving")) parts.push("no input posted yet");
    return parts.join(" · ");
  }

  function renderTimeline(card, contract, slots) {
    const list = card.querySelector(".timeline");
    const detail = card.querySelector(".slot-detail");
    const byN = new Map([...list.children].map((node) => [node.dataset.n, node]));
    const nodes = slots.map((slot) => {
      let node = byN.get(String(slot.n));
      if (!node) {
        node = el("li", { class: "slot", tabindex: 0, "data-n": slot.n });
        const show = () => {
          list.querySelectorAll('[aria-selected="true"]').forEach((n) => n.removeAttribute("aria-selected"));
          node.setAttribute("aria-selected", "true");
          detail.textContent = node.title;
        };
        node.addEventListener("click", show);
        node.addEventListener("focus", show);
      }
      node.dataset.state = slot.state;
      node.dataset.reason = slot.reason ?? "";
      node.dataset.outcome = outcome(slot);
      node.title = slotText(slot);
      if (node.getAttribute("aria-selected") === "true") detail.textContent = node.title;
      return node;
    });
    list.replaceChildren(...nodes);
    card.querySelector(".from").textContent = slots.length ? `slot ${slots[0].n} · ${fmt.dateTime(slots[0].opens_at)}` : "";
    card.querySelector(".to").textContent = slots.length ? `slot ${slots[slots.length - 1].n} · ${fmt.dateTime(slots[slots.length - 1].opens_at)}` : "";
    const from = account.pages.get(contract.contract_id) ?? 0;
    card.querySelector(".earlier").disabled = from === 0;
    card.querySelector(".later").disabled = from + SLOTS_SHOWN >= contract.slot_count;
    if (!detail.textContent) {
      const settled = slots.filter((s) => s.state !== "scheduled");
      detail.textContent = settled.length ? slotText(settled[settled.length - 1]) : "No slot has opened yet.";
    }
  }

  async function restoreSession() {
    const saved = JSON.parse(sessionStorage.getItem(SESSION) ?? "null");
    if (!saved?.token || Date.parse(saved.expires_at) <= Date.now()) {
      sessionStorage.removeItem(SESSION);
      return;
    }
    try {
      await signedIn(saved.token, saved.expires_at);
    } catch {
      signOut("Your session ended; sign in again.");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  async function start() {
    $("#signin").addEventListener("submit", signInWithKey);
    $("#signin-wallet").addEventListener("click", signInWithWallet);
    $("#signout").addEventListener("click", () => signOut());
    $("#show-unpriced").addEventListener("click", () => {
      const prices = $("#prices");
      prices.dataset.showAll = prices.dataset.showAll === "true" ? "false" : "true";
      foldUnpriced();
    });
    get("/v1/oracle/signer").then((s) => {
      $("#signer").textContent = `signer ${s.address}`;
    }).catch(console.warn);
    connect();
    try {
      await loadFeeds();
      await select(defaultFeed());
    } catch (failure) {
      $("#feeds-body").replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 11, text: `Could not load the feeds: ${failure.message}` })));
    }
    every(10000, loadBook);
    every(5000, loadRecent);
    // Ages and the stale status move with the clock.
    setInterval(() => market.feeds.forEach((_, id) => renderFeed(id)), 1000);
    restoreSession();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
