// Talking to the server: the API key header, errors as readable messages, and the server's time.
// URLs are relative to the page, so the playground also works behind a path prefix.

const KEY = "fusionserve.apiKey";

/** The API key, kept in sessionStorage only: it lives as long as this tab and is never written to disk. */
export function apiKey() {
  return sessionStorage.getItem(KEY) ?? "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** An answer other than 2xx, or no answer: `status` is 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, message, requestId) {
    super(message);
    this.status = status;
    this.requestId = requestId;
  }

  /** One line a person can read: what went wrong and what to do. */
  describe() {
    const hint =
      this.status === 401
        ? " Enter the server's API key above."
        : this.status === 413
          ? " Send a smaller file or a shorter clip."
          : "";
    const code = this.status ? `${this.status}: ` : "";
    const id = this.requestId ? ` (request ${this.requestId})` : "";
    const stop = /[.!?]$/.test(this.message) ? "" : ".";
    return `${code}${this.message}${stop}${hint}${id}`;
  }
}

/**
 * Call the API. Returns the JSON body, the request id, and the time the server took: its own
 * `Server-Timing: app;dur=<ms>` header (`serverSource: "server"`), else the browser's Resource
 * Timing (request sent -> first byte of the answer, `serverSource: "first byte"`); null where
 * neither is available.
 * @param {string} path  relative, e.g. "v1/models"
 * @param {RequestInit} [init]
 */
export async function call(path, init = {}) {
  const headers = new Headers(init.headers);
  const key = apiKey();
  if (key) headers.set("X-API-Key", key);
  const url = new URL(path, document.baseURI).href;
  let body = init.body;
  if (body instanceof FormData) {
    // Sent as one buffer with its multipart boundary: in-memory blobs (the drawing, the
    // recording) inside a FormData are invisible to DevTools-protocol tools such as the browser
    // tests, which check the exact bytes the page sent.
    const encoded = new Response(body);
    headers.set("Content-Type", encoded.headers.get("Content-Type"));
    body = await encoded.arrayBuffer();
  }
  const sent = performance.now();
  let response;
  try {
    response = await fetch(url, { ...init, headers, body });
  } catch (err) {
    throw new ApiError(0, `the server did not answer (${err.message})`, null);
  }
  const text = await response.text();
  const roundTrip = performance.now() - sent;
  let answer = null;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = null;
  }
  const requestId = response.headers.get("x-request-id");
  if (!response.ok) {
    const message =
      answer && typeof answer.error === "string" ? answer.error : text.slice(0, 300) || response.statusText;
    throw new ApiError(response.status, message, requestId);
  }
  const own = appTime(response.headers.get("server-timing"));
  if (own !== null) return { body: answer, requestId, roundTrip, server: own, serverSource: "server" };
  return { body: answer, requestId, roundTrip, server: await serverTime(url, sent), serverSource: "first byte" };
}

/** The `app` entry's duration (ms) of a Server-Timing header, or null. */
export function appTime(header) {
  const match = /(?:^|,)\s*app;dur=([0-9.]+)/.exec(header || "");
  return match ? Number(match[1]) : null;
}

async function serverTime(url, sent) {
  await new Promise((resolve) => setTimeout(resolve, 0)); // the entry is queued after the body ends
  const entries = performance.getEntriesByName(url, "resource").filter((e) => e.startTime >= sent - 1);
  const entry = entries[entries.length - 1];
  if (performance.getEntriesByType("resource").length > 200) performance.clearResourceTimings();
  if (!entry || !entry.requestStart || !entry.responseStart) return null;
  return entry.responseStart - entry.requestStart;
}
