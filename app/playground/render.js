// Turning answers into DOM: one answer in detail, and the side-by-side comparison of models.

const MODALITIES = ["image", "audio", "text"];

/** Create an element: h("p", {class: "x"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return el;
}

export const pct = (p) => `${(100 * p).toFixed(1)}%`;
const ms = (t) => (t === null || t === undefined ? "n/a" : `${t.toFixed(1)} ms`);
const signed = (x) => `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(3)}`;

/** 16000 -> "16 kHz", 22050 -> "22.05 kHz". */
export const kHz = (rate) => `${Number((rate / 1000).toFixed(3))} kHz`;
/** 1 -> "1 s", 3.2 -> "3.2 s", 0.125 -> "0.13 s". */
const secs = (s) => `${Number(s.toFixed(2))} s`;
const side = (d) => `${d.width}×${d.height}`;

/**
 * The model's input spec (its card's `spec`) in a few words, for the modalities it takes:
 * "takes 28×28 grey · 1 s at 16 kHz · 64 bytes of text".
 * @param {object} spec
 * @param {string[]} modalities
 */
export function specLine(spec, modalities) {
  const parts = {
    image: () => `${spec.image_size}×${spec.image_size} ${spec.image_channels === 3 ? "RGB" : "grey"}`,
    audio: () => `${secs(spec.audio_seconds)} at ${kHz(spec.sample_rate)}`,
    text: () => `${spec.text_bytes} bytes of text`,
  };
  return `takes ${MODALITIES.filter((m) => modalities.includes(m)).map((m) => parts[m]()).join(" · ")}`;
}

/** What the server did to one modality's payload (an `adjusted` entry), as clauses. */
function fitted(modality, entry) {
  const from = entry.from ?? {};
  const to = entry.to ?? {};
  const clauses = {
    image: {
      resized: () => `resized the image ${side(from)} → ${side(to)}`,
      greyscaled: () => `made the ${from.mode} image grey`,
    },
    audio: {
      mixed_down: () => `mixed ${from.channels} channels of audio down to one`,
      resampled: () => `resampled the audio ${kHz(from.sample_rate)} → ${kHz(to.sample_rate)}`,
      cut: () => `kept ${secs(to.seconds)} of ${secs(from.seconds)} of audio (the loudest part)`,
      padded: () => `padded ${secs(from.seconds)} of audio to ${secs(to.seconds)} with silence`,
    },
    text: {
      cut: () => `cut the text ${from.bytes} → ${to.bytes} bytes (${from.characters} → ${to.characters} characters)`,
    },
  }[modality] ?? {};
  const known = (entry.actions ?? []).every((a) => a in clauses);
  // an action this page does not know yet: the server's own sentence says it
  return known ? entry.actions.map((a) => clauses[a]()) : [entry.message];
}

/** "a, b and c" */
const listed = (items) => (items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`);

/** What the server changed to fit the model's spec, in one sentence; null when nothing. */
function adjustedNote(a) {
  const entries = MODALITIES.filter((m) => a.adjusted && m in a.adjusted).map((m) => [m, a.adjusted[m]]);
  if (!entries.length) return null;
  const clauses = entries.flatMap(([m, e]) => fitted(m, e));
  return h(
    "p",
    {
      class: "note adjusted",
      "data-testid": "adjusted",
      "data-modalities": entries.map(([m]) => m).join(" "),
      title: entries.map(([, e]) => e.message).join("; "),
    },
    `To fit the model's input spec, the server ${listed(clauses)}.`,
  );
}

/** The comparison's short form, a line per modality: "image → 28×28 grey", "audio 3.2 → 1 s". */
function adjustedShort(adjusted) {
  if (!adjusted) return "–";
  const num = (x) => Number(x.toFixed(2));
  const words = {
    resized: (f, t) => `→ ${side(t)}`,
    greyscaled: () => "grey",
    mixed_down: () => "mono",
    resampled: (f, t) => `${num(f.sample_rate / 1000)} → ${kHz(t.sample_rate)}`,
    cut: (f, t) => (f.bytes !== undefined ? `${f.bytes} → ${t.bytes} bytes` : `${num(f.seconds)} → ${secs(t.seconds)}`),
    padded: (f, t) => `${num(f.seconds)} → ${secs(t.seconds)}`,
  };
  return MODALITIES.filter((m) => m in adjusted).map((m) => {
    const { actions = [], from = {}, to = {} } = adjusted[m];
    const what = actions.map((a) => (a in words ? words[a](from, to) : a));
    return h("span", { class: "line", "data-modality": m }, `${m} ${what.join(m === "image" ? " " : ", ")}`);
  });
}

function bar(fraction, cls = "") {
  const fill = h("span", { class: `fill ${cls}` });
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return h("span", { class: "track", "aria-hidden": "true" }, fill);
}

function headline(a) {
  if (a.status === "uncertain") {
    const ab = a.abstention;
    return h(
      "div",
      { class: "headline uncertain" },
      h("span", { class: "label", "data-testid": "answer-label" }, "uncertain"),
      h("span", { class: "why" }, `${ab.message}; best guess ${ab.label} (${pct(ab.confidence)})`),
    );
  }
  return h(
    "div",
    { class: "headline" },
    h("span", { class: "label", "data-testid": "answer-label" }, a.label),
    h("span", { class: "why" }, `${pct(a.probabilities[0].probability)} sure`),
  );
}

function probabilities(a) {
  return h(
    "ol",
    { class: "bars", "aria-label": "Most probable labels" },
    a.probabilities.map((p) =>
      h(
        "li",
        { "data-label": p.label, "data-probability": p.probability },
        h("span", { class: "name" }, p.label),
        bar(p.probability),
        h("span", { class: "value" }, pct(p.probability)),
      ),
    ),
  );
}

function agreement(a) {
  if (!a.agreement) return null;
  const g = a.agreement;
  if (g.agree) {
    return h("p", { class: "flag agree", "data-testid": "agreement" }, "✓ The modalities agree");
  }
  const who = g.dissenters
    .filter((d) => d.rules_out)
    .map((d) => `${d.modality} says ${d.label} (${pct(d.probability)}) and rules ${a.probabilities[0].label} out`);
  return h("p", { class: "flag conflict", "data-testid": "agreement" }, `⚠ Conflict: ${who.join("; ")}`);
}

function opinions(a) {
  if (!a.opinions) return null;
  const rows = MODALITIES.filter((m) => m in a.opinions).map((m) => {
    const o = a.opinions[m];
    return h(
      "tr",
      { "data-modality": m },
      h("th", { scope: "row" }, m),
      h("td", {}, o.label),
      h("td", {}, pct(o.probability)),
      h("td", {}, pct(o.fused_label_probability)),
    );
  });
  const fused = a.label ?? a.abstention?.label ?? "";
  return h(
    "table",
    { class: "opinions" },
    h("caption", {}, "What each modality alone says"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "modality"),
        h("th", { scope: "col" }, "label"),
        h("th", { scope: "col" }, "its probability"),
        h("th", { scope: "col" }, `p(${fused})`),
      ),
    ),
    h("tbody", {}, rows),
  );
}

function contributions(a) {
  if (!a.contributions) return null;
  const entries = MODALITIES.filter((m) => m in a.contributions).map((m) => [m, a.contributions[m]]);
  const scale = Math.max(1e-9, ...entries.map(([, c]) => Math.abs(c)));
  const ex = a.explanation;
  const unit = ex?.target === "log_probability" ? `log p(${ex.label})` : `p(${ex?.label ?? ""})`;
  const note = ex?.empty !== null && ex?.empty !== undefined
    ? `${a.explain_method}: ${unit} goes from ${ex.empty.toFixed(3)} with no input to ${ex.full.toFixed(3)}`
    : `${a.explain_method}: change of ${unit} when the modality is left out`;
  return h(
    "div",
    { class: "contributions" },
    h("h3", {}, "How much each modality moved the answer"),
    h(
      "ul",
      { class: "diverging" },
      entries.map(([m, c]) => {
        const half = (side) => (side === (c >= 0 ? "pos" : "neg") ? bar(Math.abs(c) / scale, side) : bar(0));
        return h(
          "li",
          { "data-modality": m, "data-contribution": c },
          h("span", { class: "name" }, m),
          h("span", { class: "neg-side" }, half("neg")),
          h("span", { class: "pos-side" }, half("pos")),
          h("span", { class: "value" }, signed(c)),
        );
      }),
    ),
    h("p", { class: "note" }, note),
    ex?.gate_weights
      ? h(
          "p",
          { class: "note" },
          `gate weights: ${Object.entries(ex.gate_weights).map(([m, w]) => `${m} ${pct(w)}`).join(", ")}`,
        )
      : null,
  );
}

/**
 * Show one answer.
 * @param {HTMLElement} el
 * @param {object} answer  the predict response
 * @param {{server: number|null, roundTrip: number, requestId: string}} call
 */
export function renderAnswer(el, answer, call) {
  const missing = answer.modalities_missing.length ? answer.modalities_missing.join(", ") : "none";
  el.replaceChildren(
    h("h2", {}, `${answer.model} v${answer.version}`),
    headline(answer),
    agreement(answer),
    probabilities(answer),
    h(
      "p",
      { class: "meta" },
      h("span", { "data-testid": "used" }, `used: ${answer.modalities_used.join(", ")}`),
      " · ",
      h("span", { "data-testid": "missing" }, `missing: ${missing}`),
    ),
    adjustedNote(answer),
    opinions(answer),
    contributions(answer),
    h(
      "p",
      { class: "meta", "data-testid": "latency" },
      `server ${ms(call.server)} (${call.serverSource === "server" ? "its own time" : "request sent → first byte"}) · round trip ${ms(call.roundTrip)}`,
      h("span", { class: "rid" }, ` · request ${call.requestId}`),
    ),
  );
  el.dataset.requestId = call.requestId;
  el.dataset.status = answer.status;
  el.hidden = false;
}

/**
 * The comparison table: one row per model, with its report figures from the manifest.
 * @param {HTMLElement} el
 * @param {Array<{name: string, meta: object, sent: string[], answer?: object, call?: object, error?: string}>} rows
 */
export function renderComparison(el, rows) {
  const head = [
    "model",
    "fusion",
    "sent",
    "answer",
    "p",
    "agree",
    "server",
    "benchmark acc.",
    "acc. on this subset",
    "ECE",
    "model ms (b=1)",
    "server fitted",
  ];
  const body = rows.map((r) => {
    const m = r.meta?.metrics ?? {};
    const subset = m.subset_accuracy?.[r.sent.join("+")];
    const fig = (x, f) => (x === undefined || x === null ? "–" : f(x));
    const a = r.answer;
    const answerCells = a
      ? [
          a.status === "uncertain" ? `uncertain (${a.abstention.label}?)` : a.label,
          pct(a.probabilities[0].probability),
          a.agreement ? (a.agreement.agree ? "yes" : "conflict") : "–",
          ms(r.call.server),
        ]
      : [h("span", { class: "error" }, r.error), "", "", ""];
    return h(
      "tr",
      { "data-model": r.name, "data-label": a ? (a.label ?? "uncertain") : "" },
      h("th", { scope: "row", title: r.meta?.spec?.summary ?? null }, r.name),
      h("td", {}, r.meta?.fusion ?? "–"),
      h("td", {}, r.sent.join(" + ") || "–"),
      answerCells.map((c, i) => h("td", i === 0 && !a ? { colspan: 4 } : {}, c)).slice(0, a ? 4 : 1),
      h("td", {}, fig(m.test_accuracy, pct)),
      h("td", {}, fig(subset, pct)),
      h("td", {}, fig(m.calibration?.test_ece, pct)),
      h("td", {}, fig(m.latency_ms?.batch_1, (x) => x.toFixed(2))),
      h(
        "td",
        { class: "fitted", title: a?.adjusted ? Object.values(a.adjusted).map((e) => e.message).join("; ") : null },
        a ? adjustedShort(a.adjusted) : "",
      ),
    );
  });
  el.replaceChildren(
    h("h2", {}, "Every model, the same inputs"),
    h(
      "div",
      { class: "scroll", tabindex: "0", role: "region", "aria-label": "Comparison table" },
      h(
        "table",
        {},
        h("caption", {}, "Answers now, and each model's figures from models/REPORT.md (noisy benchmark test split)"),
        h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, body),
      ),
    ),
  );
  el.hidden = false;
}
