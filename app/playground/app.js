// The playground: gathers the inputs (drawing or image file, recording or audio file, text),
// sends them to the friendly API as multipart, and shows the answer or every model's answer.

import { ApiError, apiKey, call, setApiKey } from "./api.js";
import { DrawingPad } from "./pad.js";
import { MAX_SECONDS, Recorder } from "./recorder.js";
import { kHz, renderAnswer, renderComparison, specLine } from "./render.js";
import { DEFAULT_RATE } from "./wav.js";

const MODALITIES = ["image", "audio", "text"];
const $ = (id) => document.getElementById(id);
const ui = Object.fromEntries(
  [
    "model", "model-spec", "top-k", "min-confidence", "abstain-conflict", "api-key", "notice", "pad", "pen",
    "image-preview", "clear-pad", "image-file", "image-state", "record", "audio-file", "audio-state",
    "playback", "text", "text-count", "predict", "compare", "error", "result", "comparison",
    "use-image", "use-audio", "use-text",
  ].map((id) => [id, $(id)]),
);

const state = {
  models: [], // GET v1/models entries that are ready
  meta: new Map(), // name -> GET v1/models/{name}
  imageFile: null, // an uploaded image replaces the drawing until Clear
  audio: null, // {blob, name}
  last: null, // "predict" or "compare": re-run when an input changes
  seq: 0, // only the newest action's answer is shown
};

const pad = new DrawingPad(ui.pad, ui.pen, () => inputChanged("Drawn."));
const recorder = new Recorder(
  (s) => {
    ui["audio-state"].textContent = `Recording… ${s.toFixed(1)} s`;
    ui["audio-state"].dataset.seconds = s.toFixed(2);
  },
  () => stopRecording(),
);

function notice(text) {
  ui.notice.textContent = text ?? "";
  ui.notice.hidden = !text;
}

function showError(err) {
  ui.error.textContent = err instanceof ApiError ? err.describe() : String(err.message ?? err);
  ui.error.dataset.status = err instanceof ApiError ? err.status : "";
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

async function loadModels() {
  ui.model.disabled = true;
  try {
    const { body } = await call("v1/models");
    state.models = body.models.filter((m) => m.ready);
    notice(state.models.length ? "" : "No model is ready on this server yet.");
  } catch (err) {
    state.models = [];
    if (err instanceof ApiError && err.status === 401) {
      notice(apiKey() ? "That API key was refused: check it." : "This server needs an API key: enter it above.");
      ui["api-key"].focus();
    } else {
      notice(err instanceof ApiError ? err.describe() : String(err));
    }
  }
  const previous = ui.model.value;
  ui.model.replaceChildren(
    ...state.models.map((m) => new Option(`${m.name} (${m.fusion}: ${m.modalities.join(", ")})`, m.name)),
  );
  const names = state.models.map((m) => m.name);
  ui.model.value = names.includes(previous) ? previous : names.includes("late") ? "late" : names[0] ?? "";
  const ok = state.models.length > 0;
  ui.model.disabled = ui.predict.disabled = ui.compare.disabled = !ok;
  modelChanged(false);
}

function currentModel() {
  return state.models.find((m) => m.name === ui.model.value);
}

/** The selected model's input spec (its card's `spec`), or null: not fetched yet, or a server older than specs. */
function currentSpec() {
  const model = currentModel();
  return (model && state.meta.get(model.name)?.spec) || null;
}

function modelChanged(rerun = true) {
  const model = currentModel();
  for (const m of MODALITIES) {
    const takes = !model || model.modalities.includes(m);
    ui[`use-${m}`].disabled = !takes;
    ui[`use-${m}`].title = takes ? "" : `${model.name} does not take ${m}`;
  }
  showSpec();
  if (model && !state.meta.has(model.name)) {
    describe(model.name)
      .then(() => {
        if (currentModel() === model) showSpec();
      })
      .catch(() => {}); // the line stays hidden; predicting says what is wrong
  }
  if (rerun) inputChanged();
}

/** The spec line by the model picker, and what follows the spec: the text counter. */
function showSpec() {
  const model = currentModel();
  const spec = currentSpec();
  ui["model-spec"].textContent = spec ? specLine(spec, model.modalities) : "";
  ui["model-spec"].title = spec ? `input spec: ${spec.summary}` : "";
  ui["model-spec"].hidden = !spec;
  // room to type past the limit, so the cut can be seen in the answer
  ui.text.maxLength = Math.max(200, 2 * (spec?.text_bytes ?? 0));
  countText();
}

/** The audio rate recordings are made at: the selected model's, else the digits' 16 kHz. */
function recordingRate() {
  return currentSpec()?.sample_rate ?? DEFAULT_RATE;
}

/** UTF-8 bytes of the text as the server counts them (NFC, trimmed), against the model's limit. */
function countText() {
  const bytes = new TextEncoder().encode(ui.text.value.normalize("NFC").trim()).length;
  const limit = currentModel()?.modalities.includes("text") ? currentSpec()?.text_bytes : undefined;
  const over = limit !== undefined && bytes > limit;
  ui["text-count"].textContent =
    limit === undefined
      ? `${bytes} bytes (UTF-8)`
      : over
        ? `${bytes} of ${limit} bytes (UTF-8): the model reads the first ${limit}, the rest is cut`
        : `${bytes} of ${limit} bytes (UTF-8); longer text is cut`;
  ui["text-count"].classList.toggle("over", over);
  ui["text-count"].dataset.bytes = String(bytes);
}

/** The inputs to send to a model taking `modalities`: multipart parts and the modalities sent. */
async function gather(modalities) {
  const parts = [];
  const sent = [];
  const wanted = (m) => modalities.includes(m) && ui[`use-${m}`].checked;
  if (wanted("image") && (state.imageFile || pad.drawn)) {
    const file = state.imageFile ?? new File([await pad.toBlob()], "drawing.png", { type: "image/png" });
    parts.push(["image", file, file.name]);
    sent.push("image");
  }
  if (wanted("audio") && state.audio) {
    parts.push(["audio", state.audio.blob, state.audio.name]);
    sent.push("audio");
  }
  const text = ui.text.value.trim();
  if (wanted("text") && text) {
    parts.push(["text", text]);
    sent.push("text");
  }
  return { parts, sent };
}

function form(parts) {
  const fd = new FormData();
  for (const [name, value, filename] of parts) {
    if (filename) fd.append(name, value, filename);
    else fd.append(name, value);
  }
  const k = Math.max(1, Math.min(10, Number(ui["top-k"].value) || 5));
  fd.append("top_k", String(k));
  fd.append("explain", "true");
  if (ui["min-confidence"].value !== "") fd.append("min_confidence", ui["min-confidence"].value);
  if (ui["abstain-conflict"].checked) fd.append("abstain_on_conflict", "true");
  return fd;
}

const predictPath = (name) => `v1/models/${encodeURIComponent(name)}/predict`;

async function predict() {
  const model = currentModel();
  if (!model) return;
  state.last = "predict";
  const seq = ++state.seq;
  clearError();
  ui.comparison.hidden = true;
  const { parts, sent } = await gather(model.modalities);
  if (!sent.length) {
    ui.result.hidden = true;
    showError(new Error("Nothing to send: draw or upload an image, record or upload audio, or type a word (and keep it switched on)."));
    return;
  }
  ui.result.setAttribute("aria-busy", "true");
  try {
    const answer = await call(predictPath(model.name), { method: "POST", body: form(parts) });
    if (seq === state.seq) renderAnswer(ui.result, answer.body, answer);
  } catch (err) {
    if (seq !== state.seq) return;
    ui.result.hidden = true;
    showError(err);
  } finally {
    ui.result.removeAttribute("aria-busy");
  }
}

async function describe(name) {
  if (!state.meta.has(name)) state.meta.set(name, (await call(`v1/models/${encodeURIComponent(name)}`)).body);
  return state.meta.get(name);
}

async function compare() {
  state.last = "compare";
  const seq = ++state.seq;
  clearError();
  ui.result.hidden = true;
  ui.comparison.setAttribute("aria-busy", "true");
  const rows = [];
  try {
    for (const model of state.models) {
      // one at a time, so each server time is the model's own, not a queue behind the others
      const row = { name: model.name, sent: [] };
      rows.push(row);
      try {
        row.meta = await describe(model.name);
        const { parts, sent } = await gather(model.modalities);
        row.sent = sent;
        if (!sent.length) {
          row.error = `nothing it takes (${model.modalities.join(", ")}) is switched on and given`;
          continue;
        }
        const answer = await call(predictPath(model.name), { method: "POST", body: form(parts) });
        row.answer = answer.body;
        row.call = answer;
      } catch (err) {
        row.error = err instanceof ApiError ? err.describe() : String(err);
      }
      if (seq !== state.seq) return;
    }
    renderComparison(ui.comparison, rows);
    ui.comparison.dataset.seq = String(seq);
  } finally {
    ui.comparison.removeAttribute("aria-busy");
  }
}

let rerunTimer = 0;
function inputChanged(message) {
  if (message) ui["image-state"].textContent = message;
  clearTimeout(rerunTimer);
  if (state.last === "predict") rerunTimer = setTimeout(predict, 150);
  else if (state.last === "compare") rerunTimer = setTimeout(compare, 150);
}

function setAudio(blob, name, description) {
  if (ui.playback.src) URL.revokeObjectURL(ui.playback.src);
  state.audio = { blob, name };
  ui.playback.src = URL.createObjectURL(blob);
  ui.playback.hidden = false;
  ui["audio-state"].textContent = description;
  inputChanged();
}

async function startRecording() {
  clearError();
  try {
    await recorder.start();
  } catch (err) {
    showError(err);
    return;
  }
  ui.record.textContent = "Stop";
  ui.record.setAttribute("aria-pressed", "true");
  ui["audio-state"].textContent = `Recording… (at most ${MAX_SECONDS} s)`;
}

async function stopRecording() {
  if (!recorder.recording) return;
  ui.record.textContent = "Record";
  ui.record.setAttribute("aria-pressed", "false");
  const { blob, seconds, rate } = await recorder.stop(recordingRate());
  ui["audio-state"].dataset.seconds = seconds.toFixed(2);
  ui["audio-state"].dataset.rate = String(rate);
  setAudio(blob, "recording.wav", `Recorded ${seconds.toFixed(1)} s at ${kHz(rate)} (mono WAV, ${Math.round(blob.size / 1024)} KB).`);
}

function clearImage() {
  state.imageFile = null;
  if (ui["image-preview"].src) URL.revokeObjectURL(ui["image-preview"].src);
  ui["image-preview"].removeAttribute("src");
  ui["image-preview"].hidden = true;
  ui.pad.hidden = false;
  ui["image-file"].value = "";
  pad.clear();
  inputChanged("Nothing drawn yet.");
}

ui.record.addEventListener("click", () => (recorder.recording ? stopRecording() : startRecording()));
ui["clear-pad"].addEventListener("click", clearImage);
ui["image-file"].addEventListener("change", () => {
  const file = ui["image-file"].files[0];
  if (!file) return;
  state.imageFile = file;
  ui["image-preview"].src = URL.createObjectURL(file);
  ui["image-preview"].hidden = false;
  ui.pad.hidden = true;
  inputChanged(`Uploaded ${file.name} (${Math.ceil(file.size / 1024)} KB). Clear to draw again.`);
});
ui["audio-file"].addEventListener("change", () => {
  const file = ui["audio-file"].files[0];
  if (file) setAudio(file, file.name, `Uploaded ${file.name} (${Math.ceil(file.size / 1024)} KB).`);
});
ui.text.addEventListener("input", () => {
  countText();
  clearTimeout(rerunTimer);
  if (state.last) rerunTimer = setTimeout(state.last === "predict" ? predict : compare, 400);
});
ui.text.addEventListener("keydown", (e) => {
  if (e.key === "Enter") predict();
});
for (const id of ["use-image", "use-audio", "use-text", "top-k", "min-confidence", "abstain-conflict"]) {
  ui[id].addEventListener("change", () => inputChanged());
}
ui.model.addEventListener("change", () => modelChanged());
ui.predict.addEventListener("click", predict);
ui.compare.addEventListener("click", compare);
ui["api-key"].value = apiKey();
ui["api-key"].addEventListener("change", () => {
  setApiKey(ui["api-key"].value.trim());
  state.meta.clear();
  loadModels();
});

loadModels();
