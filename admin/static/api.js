// The one door to the server's /api: adds the bearer token, sends JSON actions the way
// docs/admin-api.md asks (Content-Type: application/json, always a body), and turns
// every failure into an ApiError carrying the server's JSON `detail`.

const TOKEN_KEY = "acp-admin-token";

export class ApiError extends Error {
  constructor(status, detail, body = null, headers = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.body = body;
    this.headers = headers;
  }
}

/** Called with no argument when the server answers 401 (set by the page). */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives only as long as this page */
  }
}

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

// Content types a cross-site form can send: the server answers 415 to them on actions.
const FORM_TYPES = new Set(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]);

/** The server's error text: {"detail": ...} (+ "errors" on 422), or the status line. */
async function errorFrom(response) {
  let body = null;
  let detail = `${response.status} ${response.statusText || "error"}`.trim();
  try {
    const text = await response.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
        detail = `${response.status}: ${text.slice(0, 200)}`;
      }
    }
  } catch {
    /* body unreadable: keep the status line */
  }
  if (body && typeof body === "object") {
    if (typeof body.detail === "string") detail = body.detail;
    else if (body.detail !== undefined) detail = JSON.stringify(body.detail);
    if (Array.isArray(body.errors) && body.errors.length) {
      const fields = body.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
      if (!detail.includes(fields)) detail = `${detail} (${fields})`;
    }
  }
  return new ApiError(response.status, detail, body, response.headers);
}

/**
 * fetch() an /api path. Resolves to {status, data, headers}; rejects with ApiError on
 * any non-2xx answer (after telling the page on 401) or a network failure (status 0).
 */
export async function api(path, { method = "GET", json, body, contentType, signal } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  let payload = body;
  if (method !== "GET" && method !== "HEAD") {
    if (body === undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json === undefined ? {} : json);
    } else {
      const type = (contentType || "").split(";")[0].trim().toLowerCase();
      headers["Content-Type"] = type && !FORM_TYPES.has(type) ? contentType : "application/octet-stream";
    }
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal, cache: "no-store", credentials: "same-origin" });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the server (${err && err.message ? err.message : err})`);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
  }
  return { status: response.status, data, headers: response.headers };
}

export const get = (path, opts) => api(path, { ...opts, method: "GET" });
export const post = (path, json = {}, opts) => api(path, { ...opts, method: "POST", json });
export const put = (path, json = {}, opts) => api(path, { ...opts, method: "PUT", json });
// DELETE too carries `{}` as JSON: the server treats every non-GET as an action.
export const del = (path, opts) => api(path, { ...opts, method: "DELETE", json: {} });

export const enc = encodeURIComponent;
